"""The read rule (docs/knowledge.md, Access control) as a pure function: acl_filter and can_read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.models.knowledge import ChunkPayload, IndexPoint, point_id
from core.models.principal import Principal
from core.policy.acl import AclFilter, ChunkAcl, acl_filter, can_read

ALICE = Principal(user_id="alice", groups=("eng", "ops"))
BOB = Principal(user_id="bob")


def acl(owner_type: str, owner_id: str, shared_with: list[str] | None = None, kb_id: str = "kb1") -> ChunkAcl:
    return ChunkAcl.model_validate(
        {"owner_type": owner_type, "owner_id": owner_id, "shared_with": shared_with or [], "kb_id": kb_id}
    )


def test_acl_filter_carries_user_and_group_principals_only() -> None:
    f = acl_filter(ALICE)
    assert f.user_principal == "user:alice"
    assert f.shared_principals == ("user:alice", "group:eng", "group:ops")
    assert "org" not in f.shared_principals
    assert f.include_org is True
    assert f.knowledge_base_ids is None


def test_acl_filter_is_deterministic_and_frozen() -> None:
    p = Principal(user_id="alice", groups=("ops", "eng", "eng"))
    assert acl_filter(p) == acl_filter(p) == acl_filter(ALICE)
    with pytest.raises(ValidationError):
        acl_filter(p).include_org = False  # type: ignore[misc]


def test_knowledge_base_restriction() -> None:
    f = acl_filter(ALICE, knowledge_base_ids=["kb1", "kb2", "kb1"])
    assert f.knowledge_base_ids == ("kb1", "kb2")
    assert f.allows(acl("org", "org", kb_id="kb2"))
    assert not f.allows(acl("org", "org", kb_id="kb3"))
    empty = acl_filter(ALICE, knowledge_base_ids=[])
    assert empty.matches_nothing
    assert not empty.allows(acl("org", "org"))
    with pytest.raises(TypeError):
        acl_filter(ALICE, knowledge_base_ids="kb1")


@pytest.mark.parametrize(
    ("chunk", "alice", "bob"),
    [
        (acl("org", "org"), True, True),
        (acl("user", "user:alice"), True, False),
        (acl("user", "user:bob"), False, True),
        (acl("user", "user:carol"), False, False),
        (acl("user", "user:carol", ["user:alice"]), True, False),
        (acl("user", "user:carol", ["group:eng"]), True, False),
        (acl("user", "user:carol", ["group:ops", "user:bob"]), True, True),
        (acl("user", "user:carol", ["group:finance"]), False, False),
        # department ownership is phase 2: readable only through an explicit share
        (acl("department", "dept:eng"), False, False),
        (acl("department", "dept:eng", ["group:eng"]), True, False),
        (acl("department", "dept:eng", ["user:bob"]), False, True),
    ],
)
def test_can_read(chunk: ChunkAcl, alice: bool, bob: bool) -> None:
    assert can_read(ALICE, chunk) is alice
    assert can_read(BOB, chunk) is bob


def test_names_that_collide_across_kinds_do_not_grant_access() -> None:
    # a group called "alice" is not the user alice, and a user called "eng" is not the group eng
    assert not can_read(ALICE, acl("user", "user:carol", ["group:alice"]))
    assert not can_read(ALICE, acl("user", "user:carol", ["user:eng"]))
    assert not can_read(Principal(user_id="eng"), acl("user", "user:carol", ["group:eng"]))
    # a user-owned chunk whose owner id is a group principal cannot exist
    with pytest.raises(ValidationError):
        acl("user", "group:eng")


@pytest.mark.parametrize(
    ("owner_type", "owner_id", "shared_with"),
    [
        ("user", "alice", []),  # bare id
        ("user", "user:", []),
        ("org", "org:acme", []),
        ("department", "eng", []),
        ("user", "user:alice", ["alice"]),
        ("user", "user:alice", ["org"]),
        ("user", "user:alice", ["dept:eng"]),
        ("team", "team:x", []),
    ],
)
def test_malformed_acls_are_refused(owner_type: str, owner_id: str, shared_with: list[str]) -> None:
    with pytest.raises(ValidationError):
        acl(owner_type, owner_id, shared_with)


def test_acl_filter_refuses_non_principals() -> None:
    with pytest.raises(ValidationError):
        AclFilter(user_principal="alice", shared_principals=("user:alice",))
    with pytest.raises(ValidationError):
        AclFilter(user_principal="user:alice", shared_principals=("user:alice", "org"))
    with pytest.raises(ValidationError):
        AclFilter(user_principal="user:alice", shared_principals=())


def test_chunk_payload_and_point_ids() -> None:
    payload = ChunkPayload(
        doc_id="d1",
        kb_id="kb1",
        source="upload",
        owner_type="user",
        owner_id="user:alice",
        shared_with=["group:eng", "group:eng"],
        created_at="2025-01-02T03:04:05+00:00",
        doc_type="pdf",
        chunk_index=0,
        title="T",
        text="hello",
        strategy="fixed",
    )
    assert payload.shared_with == ["group:eng"]
    assert can_read(ALICE, ChunkAcl.model_validate(payload.model_dump()))
    assert point_id("d1", 0) == point_id("d1", 0) != point_id("d1", 1) != point_id("d2", 1)
    point = IndexPoint(id=point_id("d1", 0).upper(), vector=[0.1], payload=payload)
    assert point.id == point_id("d1", 0)
    with pytest.raises(ValidationError):
        IndexPoint(id="d1-0", vector=[0.1], payload=payload)
    with pytest.raises(ValidationError):
        ChunkPayload.model_validate({**payload.model_dump(), "created_at": "yesterday"})
