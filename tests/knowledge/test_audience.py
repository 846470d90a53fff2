"""The audience rule (docs/knowledge.md, "Audience rule (Slack channels)"): an answer several
people will see is grounded only on chunks *every* one of them may read; anyone present whom
Keel could not resolve reads org chunks only.

Written to break it: the expected sets below are spelled out by hand (not computed with
``can_read``), and the same matrix of chunks x audiences is checked in Python
(``can_read``/``AclFilter.allows``), in both vector engines (dense and hybrid) and in
Postgres. The engines must filter *inside* the search: with a small ``top_k`` and many
chunks only the asker may read ranked above the audience's, they must still return
``top_k`` audience-readable chunks (an over-fetch-then-drop would return none). A seeded
random world (``tests/knowledge/test_acl_randomized.py``'s) is probed with random
audiences against an oracle written from the rule, and a stale vector payload is shown to
be caught by the Postgres re-check of ``search_readable``.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from pydantic import ValidationError

from core.models.chat import Audience, AudienceMember
from core.models.knowledge import ChunkPayload, IndexPoint, point_id
from core.models.principal import Principal
from core.policy.acl import (
    UNRESOLVED_READER,
    AclFilter,
    AclReader,
    ChunkAcl,
    acl_filter,
    acl_filter_for_audience,
    can_read,
)
from core.ports import VectorIndex
from infra.db.knowledge_repo import KnowledgeRepository
from infra.db.pool import create_pool
from infra.knowledge import search_readable
from infra.vector.edge_index import EdgeIndex, acl_to_edge
from infra.vector.qdrant_index import QdrantIndex, acl_to_qdrant
from tests.knowledge import test_acl_randomized as randomized

ALICE = Principal(user_id="aud-alice", groups=("aud-eng",))
BOB = Principal(user_id="aud-bob", groups=("aud-sales",))
A = AudienceMember(user_id="aud-alice", groups=["aud-eng"])
B = AudienceMember(user_id="aud-bob", groups=["aud-sales"])

#: name -> (owner_type, owner_id, shared_with)
CHUNKS: dict[str, tuple[str, str, list[str]]] = {
    "org": ("org", "org", []),
    "a_own": ("user", "user:aud-alice", []),
    "a_shared_with_b": ("user", "user:aud-alice", ["user:aud-bob"]),
    "a_shared_with_b_group": ("user", "user:aud-alice", ["group:aud-sales"]),
    "a_shared_with_a_group": ("user", "user:aud-alice", ["group:aud-eng"]),
    "b_own": ("user", "user:aud-bob", []),
    "b_shared_with_a": ("user", "user:aud-bob", ["user:aud-alice"]),
    "carol_shared_with_a_group_only": ("user", "user:aud-carol", ["group:aud-eng"]),
    "carol_shared_with_both": ("user", "user:aud-carol", ["group:aud-eng", "user:aud-bob"]),
    "carol_own": ("user", "user:aud-carol", []),
    "dept_shared_with_both": ("department", "dept:aud", ["user:aud-alice", "group:aud-sales"]),
    "dept_unshared": ("department", "dept:aud", []),
}
ONLY_A = {
    "org",
    "a_own",
    "a_shared_with_b",
    "a_shared_with_b_group",
    "a_shared_with_a_group",
    "b_shared_with_a",
    "carol_shared_with_a_group_only",
    "carol_shared_with_both",
    "dept_shared_with_both",
}
A_AND_B = {
    "org",
    "a_shared_with_b",
    "a_shared_with_b_group",
    "b_shared_with_a",
    "carol_shared_with_both",
    "dept_shared_with_both",
}
ORG_ONLY = {"org"}

#: (audience, what the answer to Alice's question may use)
AUDIENCES: dict[str, tuple[Audience | None, set[str]]] = {
    "dm": (None, ONLY_A),
    "empty": (Audience(), ONLY_A),
    "[A]": (Audience(members=[A]), ONLY_A),
    "[B] (asker unlisted)": (Audience(members=[B]), A_AND_B),
    "[A,B]": (Audience(members=[A, B]), A_AND_B),
    "[B,A,B]": (Audience(members=[B, A, B]), A_AND_B),
    "[A]+unresolved": (Audience(members=[A], unresolved_members=1), ORG_ONLY),
    "[A,B]+unresolved": (Audience(members=[A, B], unresolved_members=1), ORG_ONLY),
    "[B]+3 unresolved": (Audience(members=[B], unresolved_members=3), ORG_ONLY),
    # the asker listed with fewer groups than the token carries: the narrower reading wins
    "[A without groups, B]": (
        Audience(members=[AudienceMember(user_id="aud-alice"), B]),
        A_AND_B - {"carol_shared_with_both"},
    ),
    "[A without groups]": (
        Audience(members=[AudienceMember(user_id="aud-alice")]),
        ONLY_A - {"carol_shared_with_a_group_only", "carol_shared_with_both"},
    ),
}


def chunk_acl(name: str, kb_id: str = "kb-aud") -> ChunkAcl:
    owner_type, owner_id, shared = CHUNKS[name]
    return ChunkAcl.model_validate(
        {"owner_type": owner_type, "owner_id": owner_id, "shared_with": shared, "kb_id": kb_id}
    )


# ---------------------------------------------------------------- the rule in Python
@pytest.mark.parametrize("case", list(AUDIENCES))
def test_can_read_for_an_audience_matches_the_hand_written_matrix(case: str) -> None:
    audience, expected = AUDIENCES[case]
    allowed = {name for name in CHUNKS if can_read(ALICE, chunk_acl(name), audience=audience)}
    assert allowed == expected, (case, allowed ^ expected)
    flt = acl_filter_for_audience(ALICE, audience)
    assert {name for name in CHUNKS if flt.allows(chunk_acl(name))} == expected


def test_the_rule_is_the_same_whoever_asks() -> None:
    bob_asks = {n for n in CHUNKS if can_read(BOB, chunk_acl(n), audience=Audience(members=[A]))}
    assert bob_asks == A_AND_B
    bobs_dm = {n for n in CHUNKS if can_read(BOB, chunk_acl(n))}
    assert bobs_dm == {
        "org",
        "a_shared_with_b",
        "a_shared_with_b_group",
        "b_own",
        "b_shared_with_a",
        "carol_shared_with_both",
        "dept_shared_with_both",
    }


def test_an_audience_only_ever_narrows_the_askers_reading() -> None:
    mine = {n for n in CHUNKS if can_read(ALICE, chunk_acl(n))}
    for audience, _ in AUDIENCES.values():
        assert {n for n in CHUNKS if can_read(ALICE, chunk_acl(n), audience=audience)} <= mine


def test_the_audience_filter_shape() -> None:
    assert acl_filter_for_audience(ALICE, None) == acl_filter(ALICE)
    assert acl_filter_for_audience(ALICE, Audience(members=[A, A])) == acl_filter(
        ALICE
    )  # the asker adds nothing
    two = acl_filter_for_audience(ALICE, Audience(members=[B, A, B]), knowledge_base_ids=["kb1", "kb1"])
    assert two.knowledge_base_ids == ("kb1",)
    assert two.also_readable_by == (
        AclReader(user_principal="user:aud-bob", shared_principals=("user:aud-bob", "group:aud-sales")),
    )
    assert [r.user_principal for r in two.readers] == ["user:aud-alice", "user:aud-bob"]
    unresolved = acl_filter_for_audience(ALICE, Audience(members=[B], unresolved_members=2))
    assert unresolved.also_readable_by == (UNRESOLVED_READER,)
    # it crosses Temporal inside KnowledgeQueryInput: the conjunction survives a round trip
    for flt in (two, unresolved):
        assert AclFilter.model_validate_json(flt.model_dump_json()) == flt


def test_malformed_readers_and_audiences_are_refused() -> None:
    with pytest.raises(ValidationError):
        AclReader(user_principal=None, shared_principals=("user:x",))  # "unresolved" but with a share
    with pytest.raises(ValidationError):
        AclReader(user_principal="user:x")  # resolved but cannot read its own shares
    with pytest.raises(ValidationError):
        AclReader(user_principal="x", shared_principals=("user:x",))
    with pytest.raises(ValidationError):
        AudienceMember(user_id="")
    with pytest.raises(ValidationError):
        Audience(unresolved_members=-1)


def test_an_unresolved_reader_without_org_matches_nothing() -> None:
    flt = acl_filter(ALICE).model_copy(
        update={"include_org": False, "also_readable_by": (UNRESOLVED_READER,)}
    )
    assert flt.matches_nothing
    assert not any(flt.allows(chunk_acl(n)) for n in CHUNKS)
    with pytest.raises(ValueError, match="matches nothing"):  # an empty ``should`` would match all
        acl_to_edge(flt)
    with pytest.raises(ValueError, match="matches nothing"):
        acl_to_qdrant(flt)


# ---------------------------------------------------------------- both vector engines
def _payload(name: str, doc_id: str, kb_id: str, text: str, shared: list[str] | None = None) -> ChunkPayload:
    owner_type, owner_id, default_shared = CHUNKS[name]
    return ChunkPayload(
        doc_id=doc_id,
        kb_id=kb_id,
        source="upload",
        owner_type=owner_type,
        owner_id=owner_id,
        shared_with=default_shared if shared is None else shared,
        created_at="2026-01-01T00:00:00+00:00",
        doc_type="txt",
        chunk_index=0,
        title=name,
        text=text,
        strategy="fixed",
    )


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    vec = rng.standard_normal(dim)
    return vec / np.linalg.norm(vec)


@pytest.fixture(params=list(randomized.ADAPTERS))
async def empty_index(request: pytest.FixtureRequest) -> AsyncIterator[VectorIndex]:
    with tempfile.TemporaryDirectory() as tmp:
        idx = randomized.ADAPTERS[request.param](Path(tmp))
        await idx.ensure_collection(randomized.DIM)
        yield idx
        await idx.close()


async def test_both_engines_return_exactly_what_the_rule_allows(empty_index: VectorIndex) -> None:
    rng = np.random.default_rng(11)
    points = [
        IndexPoint(
            id=point_id(name, 0),
            vector=_unit(rng, randomized.DIM).tolist(),
            payload=_payload(name, name, "kb-aud", f"travel policy {name}"),
        )
        for name in CHUNKS
    ]
    await empty_index.upsert(points)
    for case, (audience, expected) in AUDIENCES.items():
        for kbs in (None, ["kb-aud"]):
            flt = acl_filter_for_audience(ALICE, audience, knowledge_base_ids=kbs)
            rule = {name for name in CHUNKS if flt.allows(chunk_acl(name))}
            assert rule == expected, case
            for text in (None, "travel policy"):
                hits = await empty_index.search(
                    _unit(rng, randomized.DIM).tolist(), acl=flt, top_k=50, query_text=text
                )
                assert {h.doc_id for h in hits} == expected, (case, kbs, text)
        other_kb = acl_filter_for_audience(ALICE, audience, knowledge_base_ids=["kb-other"])
        assert await empty_index.search(_unit(rng, randomized.DIM).tolist(), acl=other_kb, top_k=50) == []


async def test_the_engines_filter_inside_the_search_so_no_recall_is_lost(empty_index: VectorIndex) -> None:
    """30 chunks only Alice may read sit right at the query; 8 chunks Alice shared with Bob sit
    further away. For the audience [A, B] a top 5 must still be 5 of the shared ones."""
    rng = np.random.default_rng(12)
    query = _unit(rng, randomized.DIM)
    points = []
    for i in range(30):
        near = query + 0.05 * _unit(rng, randomized.DIM)
        points.append(
            IndexPoint(
                id=point_id(f"private-{i}", 0),
                vector=(near / np.linalg.norm(near)).tolist(),
                payload=_payload("a_own", f"private-{i}", "kb-aud", "travel policy secret"),
            )
        )
    for i in range(8):
        far = query + 1.5 * _unit(rng, randomized.DIM)
        points.append(
            IndexPoint(
                id=point_id(f"shared-{i}", 0),
                vector=(far / np.linalg.norm(far)).tolist(),
                payload=_payload("a_shared_with_b", f"shared-{i}", "kb-aud", "travel policy shared"),
            )
        )
    await empty_index.upsert(points)
    flt = acl_filter_for_audience(ALICE, Audience(members=[B]))
    for text in (None, "travel policy"):
        hits = await empty_index.search(query.tolist(), acl=flt, top_k=5, query_text=text)
        assert len(hits) == 5 and all(h.doc_id.startswith("shared-") for h in hits), [h.doc_id for h in hits]
    mine = await empty_index.search(query.tolist(), acl=acl_filter(ALICE), top_k=5)
    assert all(h.doc_id.startswith("private-") for h in mine)  # the DM sees her own first


async def test_random_world_with_random_audiences_never_leaks(empty_index: VectorIndex) -> None:
    world = randomized.build_world()
    await empty_index.upsert(world.points)
    rng = random.Random(f"{randomized.SEED}-audience")
    local = isinstance(empty_index, QdrantIndex)
    for _ in range(60 if local else 400):
        asker, *others = rng.sample(world.users, rng.randint(1, 5))
        unresolved = rng.choice([0, 0, 0, 0, 1, 2])
        members = [AudienceMember(user_id=u, groups=sorted(world.groups_of[u])) for u in others]
        if rng.random() < 0.5:
            members.append(AudienceMember(user_id=asker, groups=sorted(world.groups_of[asker])))
        rng.shuffle(members)
        audience = Audience(members=members, unresolved_members=unresolved)
        kbs = (
            sorted(rng.sample([f"kb{i}" for i in range(randomized.N_KBS)], 2)) if rng.random() < 0.3 else None
        )
        # the oracle: every person present reads the doc; an unresolved person reads org only
        expected = {
            pid
            for doc in world.docs.values()
            if (kbs is None or doc.kb_id in kbs)
            and all(world.may_read(u, doc) for u in (asker, *others))
            and (unresolved == 0 or doc.owner_type == "org")
            for pid in doc.chunks
        }
        flt = acl_filter_for_audience(randomized.principal(world, asker), audience, knowledge_base_ids=kbs)
        top_k = rng.choice([5, 20, len(expected) + 3])
        query = [rng.gauss(0.0, 1.0) for _ in range(randomized.DIM)]
        text = " ".join(rng.sample(randomized.VOCAB, 3)) if rng.random() < 0.3 else None
        got = [h.chunk_id for h in await empty_index.search(query, acl=flt, top_k=top_k, query_text=text)]
        context = (asker, others, unresolved, kbs, top_k, text)
        assert set(got) <= expected, ("leaked", set(got) - expected, context)
        assert len(got) == min(top_k, len(expected)), ("recall lost", context)


# ---------------------------------------------------------------- Postgres
@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    db = await create_pool(database_url, max_size=2)
    yield db
    await db.close()


@pytest.fixture
async def matrix_in_postgres(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The matrix as documents in one knowledge base: (kb id, chunk name -> document id)."""
    repo = KnowledgeRepository(pool)
    tag = "aud" + uuid.uuid4().hex[:8]
    kb = await repo.create_kb(name=tag, description="", owner_type="org", owner_id="org", created_by="admin")
    ids = {}
    for name, (owner_type, owner_id, shared) in CHUNKS.items():
        ids[name] = f"{tag}-{name}"
        await repo.insert_document(
            id=ids[name],
            kb_id=kb.id,
            title=name,
            filename=f"{name}.txt",
            content_type="text/plain",
            doc_type="txt",
            size_bytes=10,
            sha256=uuid.uuid4().hex * 2,
            blob_key=f"documents/{ids[name]}",
            source="upload",
            owner_type=owner_type,
            owner_id=owner_id,
            visibility="shared" if shared else "private",
            shared_with=shared,
            status="ready",
            created_by="admin",
        )
    try:
        yield kb.id, ids
    finally:
        await pool.execute("DELETE FROM knowledge_bases WHERE id = $1", kb.id)


async def test_postgres_applies_the_same_audience_rule(
    pool: asyncpg.Pool, matrix_in_postgres: tuple[str, dict[str, str]]
) -> None:
    kb_id, ids = matrix_in_postgres
    repo = KnowledgeRepository(pool)
    names = {doc_id: name for name, doc_id in ids.items()}
    for case, (audience, expected) in AUDIENCES.items():
        flt = acl_filter_for_audience(ALICE, audience, knowledge_base_ids=[kb_id])
        listed = {names[d.id] for d in await repo.readable_documents(flt)}
        assert listed == expected, (case, listed ^ expected)
        versions = await repo.readable_document_versions(sorted(ids.values()), flt)
        assert {names[d] for d in versions} == expected, case
        assert await repo.any_readable_ready(flt)  # the org document
        for name, doc_id in ids.items():
            assert (await repo.readable_document(doc_id, flt) is not None) is (name in expected), (case, name)
    with pytest.raises(ValueError):  # a listing for one person never silently drops the audience
        await repo.readable_kbs(acl_filter_for_audience(ALICE, Audience(members=[B])))


async def test_search_readable_rechecks_the_whole_audience_in_postgres(
    pool: asyncpg.Pool, matrix_in_postgres: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """A stale payload says Alice's private document is shared with Bob (the vector write of
    an unshare failed, say): the engine returns it for [A, B], Postgres drops it."""
    kb_id, ids = matrix_in_postgres
    rng = np.random.default_rng(13)
    index = EdgeIndex(tmp_path / "keel_chunks")
    try:
        await index.ensure_collection(randomized.DIM)
        points = [
            IndexPoint(
                id=point_id(ids[name], 0),
                vector=_unit(rng, randomized.DIM).tolist(),
                payload=_payload(
                    name, ids[name], kb_id, "travel", shared=["user:aud-bob"] if name == "a_own" else None
                ),
            )
            for name in CHUNKS
        ]
        await index.upsert(points)
        flt = acl_filter_for_audience(ALICE, Audience(members=[B]), knowledge_base_ids=[kb_id])
        query = _unit(rng, randomized.DIM).tolist()
        engine = {h.doc_id for h in await index.search(query, acl=flt, top_k=50)}
        assert engine == {ids[n] for n in A_AND_B | {"a_own"}}  # the stale payload lets it through
        hits = await search_readable(index, KnowledgeRepository(pool), query, acl=flt, top_k=50)
        assert {h.doc_id for h in hits} == {ids[n] for n in A_AND_B}
    finally:
        await index.close()
