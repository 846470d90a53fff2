"""The knowledge read paths other than the vector adapters, probed in a seeded random world.

``test_acl_randomized.py`` probes the vector adapters directly. This file covers
the rest, end to end on the real services:

- Postgres metadata reads (``KnowledgeRepository.readable_documents``,
  ``readable_document``, ``readable_kbs`` and ``any_readable_ready``) over a world of 24 users in 7
  groups and 320 documents written with ``insert_document``, then again after
  random ``change_shares``, ``delete_document`` and ``set_status('deleting')``;
- the chat's knowledge search (``ChatActivities.retrieve``) over a real
  ``EdgeIndex``, the real repositories and the real turn event stream in Redis;
  only the embedding model is faked (a deterministic word-hash embedder).

Every probe is compared with a brute-force oracle written here from docs/knowledge.md's read rule
(it calls neither ``can_read`` nor ``acl_filter``; ``acl_filter`` only builds
the input a caller hands to the path under test, as the API and the activity
do): a user reads a document when it is org-owned, when the user owns it, or
when ``shared_with`` names the user or one of the user's groups. Department
ownership grants nothing by itself (phase 2). A document whose status is
``deleting`` is gone from metadata reads for everyone. A knowledge base is
listed when it is org-owned, the caller's own, or holds a document the caller
may read through a share.

Results must equal the oracle exactly: nothing unreadable returned, nothing
readable missing (top_k covers every chunk, so the chat search is exhaustive).
The world holds adversarial ids: a group whose id equals a user's id, a user
principal carrying a group's id, ids differing only in case, a user id with
quotes, commas and braces, and shares naming nobody.

The seed is ``SEED`` (``KEEL_TEST_ACL_SEED`` overrides it); every assertion
message starts with it, so a failure can be replayed.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.chat import ChatActivities, PromptConfig
from core.models.chat import RetrieveInput
from core.models.knowledge import ChunkPayload, IndexPoint, OwnerType, point_id
from core.models.principal import Principal
from core.names import turn_stream_key
from core.policy.acl import AclFilter, acl_filter
from infra.agents import AgentRegistry
from infra.audit.log import AuditLog
from infra.blobstore import FilesystemBlobStore
from infra.db.chat_repo import ChatRepository
from infra.db.knowledge_repo import DocumentRecord, KnowledgeRepository
from infra.db.pool import create_pool
from infra.db.tools_repo import ToolsRepository
from infra.knowledge import KnowledgeServices
from infra.llm import ChatModel
from infra.redis_client import create_redis
from infra.settings import Settings
from infra.turn_events import TurnEventStream
from infra.vector.edge_index import EdgeIndex
from tests.support.embedders import DIM, HashEmbedder

SEED = int(os.environ.get("KEEL_TEST_ACL_SEED", "20250612"))
N_PLAIN_USERS = 22  # plus two adversarial ids: 24 users
N_PLAIN_GROUPS = 6  # plus one whose id is also a user's id: 7 groups
N_ORG_KBS = 4
N_DEPT_KBS = 2
N_DOCS = 320
OWNER_KINDS: tuple[OwnerType, ...] = ("org", "user", "department")
STATUSES = {"ready": 85, "processing": 5, "failed": 5, "deleting": 5}
EXHAUSTIVE = 100_000  # list limit far above the world (truncation is not what is tested here)

LIST_PROBES = 700
DOC_PROBES = 2000
KB_PROBES = 300
ANY_PROBES = 600
MUTATIONS = 60
PROBES_AFTER_MUTATIONS = {"lists": 400, "docs": 800, "kbs": 100, "anys": 200}

RETRIEVE_DOCS = 40
RETRIEVE_PROBES = 240
VOCAB = [f"w{i:02d}" for i in range(60)]

# BUG found by this file (infra/db/knowledge_repo.py, KnowledgeRepository.readable_kbs): a share on a
# document whose status is 'deleting' still lists the knowledge base holding it, although the
# document itself is gone from every other metadata read. The random probes tolerate exactly that
# difference while this is True; test_readable_kbs_ignores_shares_on_documents_being_deleted pins it
# (strict xfail). Once readable_kbs is fixed that test passes unexpectedly: set this to False.
READABLE_KBS_COUNTS_DELETING_DOCUMENTS = False


# ---------------------------------------------------------------- the oracle
def rule_allows(
    user: str, groups: Sequence[str], *, owner_type: str, owner_id: str, shared_with: Sequence[str]
) -> bool:
    """docs/knowledge.md's read rule by hand: org-owned, the user's, or shared with the user or a group."""
    me = "user:" + user
    if owner_type == "org":
        return True
    if owner_type == "user" and owner_id == me:
        return True
    for entry in shared_with:
        if entry == me:
            return True
        if entry.startswith("group:") and entry[len("group:") :] in groups:
            return True
    return False


def shared_with_caller(user: str, groups: Sequence[str], shared_with: Sequence[str]) -> bool:
    return any(
        entry == "user:" + user or (entry.startswith("group:") and entry[len("group:") :] in groups)
        for entry in shared_with
    )


@dataclass
class Kb:
    id: str
    owner_type: str
    owner_id: str


@dataclass
class Doc:
    id: str
    kb_id: str
    owner_type: OwnerType
    owner_id: str
    shared_with: list[str]
    status: str


@dataclass
class World:
    seed: int
    tag: str
    users: list[str]
    groups: list[str]
    groups_of: dict[str, list[str]]
    share_pool: list[str]
    kbs: dict[str, Kb] = field(default_factory=dict)
    docs: dict[str, Doc] = field(default_factory=dict)

    def principal(self, user: str) -> Principal:
        return Principal(user_id=user, groups=tuple(self.groups_of[user]))

    def may_read(self, user: str, doc: Doc, *, metadata: bool = True) -> bool:
        if metadata and doc.status == "deleting":
            return False
        return rule_allows(
            user,
            self.groups_of[user],
            owner_type=doc.owner_type,
            owner_id=doc.owner_id,
            shared_with=doc.shared_with,
        )

    def readable_docs(self, user: str, kbs: Sequence[str] | None) -> set[str]:
        return {
            d.id for d in self.docs.values() if (kbs is None or d.kb_id in kbs) and self.may_read(user, d)
        }

    def readable_kbs(self, user: str) -> set[str]:
        me = "user:" + user
        listed = {k.id for k in self.kbs.values() if k.owner_type == "org"}
        listed |= {k.id for k in self.kbs.values() if k.owner_type == "user" and k.owner_id == me}
        listed |= {
            d.kb_id
            for d in self.docs.values()
            if d.status != "deleting" and shared_with_caller(user, self.groups_of[user], d.shared_with)
        }
        return listed

    def kbs_via_deleting_shares(self, user: str) -> set[str]:
        """KBs listed only through a share on a document being deleted (the reported bug)."""
        return {
            d.kb_id
            for d in self.docs.values()
            if d.status == "deleting" and shared_with_caller(user, self.groups_of[user], d.shared_with)
        } - self.readable_kbs(user)

    def msg(self, *parts: object) -> str:
        return " | ".join([f"seed={self.seed} (KEEL_TEST_ACL_SEED)", *map(repr, parts)])


# ---------------------------------------------------------------- the world
def _people(rng: random.Random, tag: str) -> tuple[list[str], list[str], dict[str, list[str]]]:
    users = [f"{tag}-u{i}" for i in range(N_PLAIN_USERS)]
    users += [f"{tag}-U1", f"{tag}-o'brien,{{x}}\"y"]  # case twin of u1; quotes, comma, braces
    collide = f"{tag}-u2"  # a group id that is also a user id: group:<id> must not grant user:<id>
    groups = [f"{tag}-g{i}" for i in range(N_PLAIN_GROUPS)] + [collide]
    groups_of = {u: sorted(rng.sample(groups, rng.choice([0, 1, 1, 2, 2, 3]))) for u in users}
    groups_of[collide] = [g for g in groups_of[collide] if g != collide]
    for g in groups:  # every group has a member (never the user named like the group)
        if not any(g in gs for gs in groups_of.values()):
            member = rng.choice([u for u in users if u != g])
            groups_of[member] = sorted({*groups_of[member], g})
    return users, groups, groups_of


async def build_world(repo: KnowledgeRepository, seed: int, tag: str) -> World:
    rng = random.Random(seed)
    users, groups, groups_of = _people(rng, tag)
    ghost = f"{tag}-ghost"  # owns documents and a personal KB, never probes
    share_pool = [f"user:{u}" for u in users] + [f"group:{g}" for g in groups]
    share_pool += [f"user:{ghost}", f"group:{tag}-nobody", f"user:{tag}-g0", f"group:{tag}-u5"]
    world = World(seed, tag, users, groups, groups_of, share_pool)

    for i in range(N_ORG_KBS):
        kb = await repo.create_kb(
            name=f"Org {i}", description="", owner_type="org", owner_id="org", created_by="admin"
        )
        world.kbs[kb.id] = Kb(kb.id, "org", "org")
    dept_kbs = []
    for i in range(N_DEPT_KBS):
        dept = f"dept:{tag}-d{i}"
        kb = await repo.create_kb(
            name=f"Dept {i}", description="", owner_type="department", owner_id=dept, created_by="admin"
        )
        world.kbs[kb.id] = Kb(kb.id, "department", dept)
        dept_kbs.append(kb.id)
    personal: dict[str, str] = {}
    for user in [*users, ghost]:
        kb = await repo.ensure_personal_kb(user)
        assert (kb.owner_type, kb.owner_id) == ("user", f"user:{user}"), world.msg(kb)
        world.kbs[kb.id] = Kb(kb.id, "user", f"user:{user}")
        personal[user] = kb.id
    org_kbs = [k.id for k in world.kbs.values() if k.owner_type == "org"]

    for n in range(N_DOCS):
        kind = rng.choices(OWNER_KINDS, weights=[2, 6, 1])[0]
        if kind == "org":
            kb_id, owner = rng.choice(org_kbs), "org"
        elif kind == "user":
            who = rng.choice([*users, ghost])
            kb_id, owner = personal[who], f"user:{who}"
        else:
            kb_id = rng.choice(dept_kbs)
            owner = world.kbs[kb_id].owner_id
        shared = rng.sample(world.share_pool, rng.choice([0, 0, 0, 1, 1, 2, 3]))
        status = rng.choices(list(STATUSES), weights=list(STATUSES.values()))[0]
        doc_id = f"{tag}-doc-{n:04d}"
        await repo.insert_document(
            id=doc_id,
            kb_id=kb_id,
            title=f"Document {n}",
            filename=f"doc-{n}.txt",
            content_type="text/plain",
            doc_type="txt",
            size_bytes=100 + n,
            sha256=hashlib.sha256(doc_id.encode()).hexdigest(),
            blob_key=f"documents/{doc_id}",
            source=rng.choice(["manual", "upload", "sync"]),
            owner_type=kind,
            owner_id=owner,
            visibility="shared" if shared else "private",
            shared_with=shared,
            status=status,
            created_by=owner.removeprefix("user:"),
        )
        world.docs[doc_id] = Doc(doc_id, kb_id, kind, owner, list(shared), status)
    return world


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    db = await create_pool(database_url, max_size=4)
    yield db
    await db.close()


@pytest.fixture(scope="module")
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    repo = KnowledgeRepository(pool)
    built = await build_world(repo, SEED, "rp" + uuid.uuid4().hex[:6])
    yield built
    # the session's database is shared by later tests: leave no org KBs or documents behind
    await pool.execute("DELETE FROM knowledge_bases WHERE id = ANY($1::text[])", list(built.kbs))
    await pool.execute("DELETE FROM chat_sessions WHERE id LIKE $1", f"{built.tag}-%")


# ---------------------------------------------------------------- Postgres probes
def _check_record(world: World, user: str, rec: DocumentRecord, kbs: Sequence[str] | None) -> None:
    """A returned row: ours must match the model; another test's row must still satisfy the rule."""
    doc = world.docs.get(rec.id)
    if doc is None:
        assert rec.status != "deleting" and (kbs is None or rec.kb_id in kbs), world.msg("foreign row", rec)
        assert rule_allows(
            user,
            world.groups_of[user],
            owner_type=rec.owner_type,
            owner_id=rec.owner_id,
            shared_with=rec.shared_with,
        ), world.msg("unreadable foreign row returned", user, rec.id)
        return
    seen = (rec.kb_id, rec.owner_type, rec.owner_id, sorted(rec.shared_with), rec.status, rec.visibility)
    want = (
        doc.kb_id,
        doc.owner_type,
        doc.owner_id,
        sorted(doc.shared_with),
        doc.status,
        "shared" if doc.shared_with else "private",
    )
    assert seen == want, world.msg("stale row", user, rec.id, seen, want)


def _acl(world: World, user: str, kbs: Sequence[str] | None) -> AclFilter:
    return acl_filter(world.principal(user), knowledge_base_ids=kbs)


async def probe_list(repo: KnowledgeRepository, world: World, user: str, kbs: list[str] | None) -> None:
    rows = await repo.readable_documents(_acl(world, user, kbs), limit=EXHAUSTIVE)
    for rec in rows:
        _check_record(world, user, rec, kbs)
    got = [r.id for r in rows if r.id in world.docs]
    expected = world.readable_docs(user, kbs)
    ctx = (user, world.groups_of[user], kbs)
    assert len(got) == len(set(got)), world.msg("duplicate rows", ctx)
    leaked, missing = set(got) - expected, expected - set(got)
    assert not leaked, world.msg("readable_documents returned unreadable documents", sorted(leaked), ctx)
    assert not missing, world.msg("readable_documents is missing readable documents", sorted(missing), ctx)
    stamps = [r.created_at for r in rows]
    assert stamps == sorted(stamps, reverse=True), world.msg("not newest first", ctx)


async def probe_doc(
    repo: KnowledgeRepository, world: World, user: str, doc_id: str, kbs: list[str] | None
) -> bool:
    rec = await repo.readable_document(doc_id, _acl(world, user, kbs))
    doc = world.docs.get(doc_id)
    expected = doc is not None and (kbs is None or doc.kb_id in kbs) and world.may_read(user, doc)
    ctx = (user, world.groups_of[user], doc_id, kbs, doc)
    if rec is None:
        assert not expected, world.msg("readable_document hid a readable document", ctx)
        return False
    assert expected, world.msg("readable_document returned an unreadable document", ctx)
    assert rec.id == doc_id, world.msg(ctx, rec.id)
    _check_record(world, user, rec, kbs)
    return True


async def probe_any(repo: KnowledgeRepository, world: World, user: str, kbs: list[str] | None) -> None:
    """``any_readable_ready`` (the chat skips its search without): some ready document is readable."""
    got = await repo.any_readable_ready(_acl(world, user, kbs))
    expected = any(
        d.status == "ready" and (kbs is None or d.kb_id in kbs) and world.may_read(user, d)
        for d in world.docs.values()
    )
    # Unnarrowed, another test's org documents may answer too: only "nothing readable missing" holds.
    if kbs is not None or expected:
        assert got is expected, world.msg("any_readable_ready disagrees", user, world.groups_of[user], kbs)


async def probe_kbs(repo: KnowledgeRepository, world: World, user: str) -> None:
    rows = await repo.readable_kbs(_acl(world, user, None))
    got = [k.id for k in rows if k.id in world.kbs]
    # Another test's KB can only be org-owned here: our users' principals are unique to this world.
    foreign = [(k.id, k.owner_type) for k in rows if k.id not in world.kbs and k.owner_type != "org"]
    expected = world.readable_kbs(user)
    ctx = (user, world.groups_of[user])
    assert not foreign, world.msg("readable_kbs returned another test's non-org KB", foreign, ctx)
    assert len(got) == len(set(got)), world.msg("duplicate KBs", ctx)
    leaked, missing = set(got) - expected, expected - set(got)
    if READABLE_KBS_COUNTS_DELETING_DOCUMENTS:
        leaked -= world.kbs_via_deleting_shares(user)
    assert not leaked, world.msg("readable_kbs returned KBs the caller may not see", sorted(leaked), ctx)
    assert not missing, world.msg("readable_kbs is missing KBs", sorted(missing), ctx)


def _random_kbs(rng: random.Random, world: World, tag: str) -> list[str] | None:
    roll = rng.random()
    kb_ids = sorted(world.kbs)
    if roll < 0.35:
        return None
    if roll < 0.4:
        return []  # matches nothing
    picked = rng.sample(kb_ids, rng.randint(1, 3))
    if roll < 0.5:
        picked.append(f"{tag}-kb-missing")
    if roll > 0.95:
        picked.append(picked[0])  # a repeated id
    return picked


async def run_probes(
    repo: KnowledgeRepository,
    world: World,
    rng: random.Random,
    *,
    lists: int,
    docs: int,
    kbs: int,
    anys: int,
) -> dict[str, int]:
    """Random probes through the four metadata paths; returns counts (docs found readable too)."""
    counts = dict.fromkeys(
        ["readable_documents", "readable_document", "readable_document_hits", "readable_kbs", "any"], 0
    )
    jobs = ["list"] * lists + ["doc"] * docs + ["kbs"] * kbs + ["any"] * anys
    rng.shuffle(jobs)
    doc_ids = sorted(world.docs)
    for job in jobs:
        user = rng.choice(world.users)
        if job == "list":
            await probe_list(repo, world, user, _random_kbs(rng, world, world.tag))
            counts["readable_documents"] += 1
        elif job == "kbs":
            await probe_kbs(repo, world, user)
            counts["readable_kbs"] += 1
        elif job == "any":
            await probe_any(repo, world, user, _random_kbs(rng, world, world.tag))
            counts["any"] += 1
        else:
            roll = rng.random()
            readable = sorted(world.readable_docs(user, None))
            if roll < 0.45 and readable:
                doc_id = rng.choice(readable)
            elif roll < 0.93:
                doc_id = rng.choice(doc_ids)
            else:
                doc_id = rng.choice([f"{world.tag}-doc-9999", "", "%", f"{world.tag}-doc-%"])
            doc = world.docs.get(doc_id)
            narrowing = rng.random()
            scope: list[str] | None
            if doc is None or narrowing < 0.3:
                scope = None
            elif narrowing < 0.65:
                scope = [doc.kb_id]  # what the API passes
            elif narrowing < 0.85:
                scope = [rng.choice([k for k in world.kbs if k != doc.kb_id])]
            elif narrowing < 0.95:
                scope = [rng.choice(sorted(world.kbs)), doc.kb_id]
            else:
                scope = []
            hit = await probe_doc(repo, world, user, doc_id, scope)
            counts["readable_document"] += 1
            counts["readable_document_hits"] += hit
    return counts


async def test_postgres_metadata_reads_match_the_oracle(pool: asyncpg.Pool, world: World) -> None:
    repo = KnowledgeRepository(pool)
    assert len(world.users) >= 20 and len(world.groups) >= 5 and len(world.docs) >= 300
    # The world is not trivial: every kind of grant and of refusal occurs.
    assert {d.owner_type for d in world.docs.values()} == {"org", "user", "department"}, world.msg()
    assert any(d.status == "deleting" for d in world.docs.values()), world.msg()
    assert any(any(p.startswith("group:") for p in d.shared_with) for d in world.docs.values())

    for user in world.users:  # everyone, exhaustively, with and without narrowing
        await probe_list(repo, world, user, None)
        await probe_kbs(repo, world, user)
        await probe_any(repo, world, user, None)
        for kb_id in sorted(world.kbs):
            await probe_list(repo, world, user, [kb_id])
            await probe_any(repo, world, user, [kb_id])
    for doc_id in sorted(world.docs):  # every document, for a few users (readable and not)
        for user in world.users[::6]:
            await probe_doc(repo, world, user, doc_id, None)

    counts = await run_probes(
        repo,
        world,
        random.Random(f"{SEED}-probes"),
        lists=LIST_PROBES,
        docs=DOC_PROBES,
        kbs=KB_PROBES,
        anys=ANY_PROBES,
    )
    # the random probes saw both answers of readable_document
    assert 0.2 < counts["readable_document_hits"] / counts["readable_document"] < 0.8, world.msg(counts)


async def test_postgres_reads_follow_shares_unshares_and_deletes(pool: asyncpg.Pool, world: World) -> None:
    repo = KnowledgeRepository(pool)
    rng = random.Random(f"{SEED}-mutations")
    assert await repo.change_shares(f"{world.tag}-doc-9999", add=["user:x"], remove=[]) == [], world.msg()

    async def everyone_sees(doc_id: str) -> None:
        """The change takes effect on the next query, for every user."""
        for user in world.users:
            await probe_doc(repo, world, user, doc_id, None)
        for user in rng.sample(world.users, 3):
            await probe_kbs(repo, world, user)

    for step in range(MUTATIONS):
        doc = world.docs[rng.choice(sorted(world.docs))]
        op = rng.choices(["share", "unshare", "reshare", "deleting", "delete"], weights=[4, 3, 2, 1, 1])[0]
        if op in ("share", "unshare", "reshare"):
            add = rng.sample(world.share_pool, rng.randint(1, 2)) if op != "unshare" else []
            remove = rng.sample(doc.shared_with, min(len(doc.shared_with), rng.randint(1, 2)))
            if op == "share":
                remove = []
            remove.append(rng.choice(world.share_pool))  # may or may not be there
            result = await repo.change_shares(doc.id, add=add, remove=remove)
            doc.shared_with = sorted((set(doc.shared_with) | set(add)) - set(remove))
            assert result == doc.shared_with, world.msg(step, op, doc.id, add, remove, result)
        elif op == "deleting":
            await repo.set_status(doc.id, "deleting")
            doc.status = "deleting"
        else:
            await repo.delete_document(doc.id)
            del world.docs[doc.id]
        await everyone_sees(doc.id)

    await run_probes(repo, world, rng, **PROBES_AFTER_MUTATIONS)
    for user in world.users:
        await probe_list(repo, world, user, None)
        await probe_kbs(repo, world, user)
        for kb_id in sorted(world.kbs):
            await probe_any(repo, world, user, [kb_id])


@pytest.mark.xfail(
    READABLE_KBS_COUNTS_DELETING_DOCUMENTS,
    strict=True,
    reason="KnowledgeRepository.readable_kbs counts shares on documents whose status is 'deleting'",
)
async def test_readable_kbs_ignores_shares_on_documents_being_deleted(pool: asyncpg.Pool) -> None:
    repo = KnowledgeRepository(pool)
    tag = "rpdel" + uuid.uuid4().hex[:6]
    owner, reader = f"{tag}-owner", f"{tag}-reader"
    kb = await repo.ensure_personal_kb(owner)
    acl = acl_filter(Principal(user_id=reader))
    try:
        doc = await repo.insert_document(
            id=f"{tag}-doc",
            kb_id=kb.id,
            title="t",
            filename="t.txt",
            size_bytes=1,
            sha256="0" * 64,
            blob_key=f"documents/{tag}-doc",
            owner_type="user",
            owner_id=f"user:{owner}",
            visibility="shared",
            shared_with=[f"user:{reader}"],
            status="ready",
            created_by=owner,
        )
        assert kb.id in {k.id for k in await repo.readable_kbs(acl)}  # listed through the share
        await repo.set_status(doc.id, "deleting")
        assert await repo.readable_document(doc.id, acl) is None
        assert (
            await repo.readable_documents(acl_filter(Principal(user_id=reader), knowledge_base_ids=[kb.id]))
            == []
        )
        listed = {k.id for k in await repo.readable_kbs(acl)}
        assert kb.id not in listed, "the reader still sees the owner's KB through a document being deleted"
    finally:
        await pool.execute("DELETE FROM knowledge_bases WHERE id = $1", kb.id)


# ---------------------------------------------------------------- chat retrieval
def chat_activities(pool: asyncpg.Pool, **wiring: Any) -> ChatActivities:
    """``ChatActivities`` as the chat worker wires them (the tools repository and agent
    registry are not used by ``retrieve`` but are part of the wiring)."""
    return ChatActivities(
        **wiring,
        tools_repo=ToolsRepository(pool),
        agents=AgentRegistry.load(None),
        audit=AuditLog(pool, hmac_key=b"test-audit-key"),
    )


async def test_chat_retrieve_returns_exactly_what_the_caller_may_read(
    pool: asyncpg.Pool, world: World, redis_url: str, tmp_path: Path
) -> None:
    rng = random.Random(f"{SEED}-retrieve")
    embedder = HashEmbedder()
    live = [d for _, d in sorted(world.docs.items()) if d.status != "deleting"]
    chosen = rng.sample(live, RETRIEVE_DOCS)
    chunk_doc: dict[str, str] = {}
    points: list[IndexPoint] = []
    for doc in chosen:
        for c in range(rng.randint(1, 2)):
            text = " ".join(rng.choices(VOCAB, k=rng.randint(4, 12)))
            payload = ChunkPayload(
                doc_id=doc.id,
                kb_id=doc.kb_id,
                source="upload",
                owner_type=doc.owner_type,
                owner_id=doc.owner_id,
                visibility="shared" if doc.shared_with else "private",
                shared_with=doc.shared_with,
                created_at="2025-06-12T12:00:00+00:00",
                doc_type="txt",
                chunk_index=c,
                title=f"Title of {doc.id}",
                text=text,
                page=c + 1,
                strategy="fixed",
            )
            pid = point_id(doc.id, c)
            chunk_doc[pid] = doc.id
            points.append(
                IndexPoint(id=pid, vector=(await embedder.embed_documents([text]))[0], payload=payload)
            )
    by_id = {d.id: d for d in chosen}
    kb_pool = sorted({d.kb_id for d in chosen})

    def expected_chunks(user: str, kbs: list[str]) -> set[str]:
        return {
            pid
            for pid, doc_id in chunk_doc.items()
            if (not kbs or by_id[doc_id].kb_id in kbs) and world.may_read(user, by_id[doc_id], metadata=False)
        }

    index = EdgeIndex(tmp_path / "keel_chunks")
    redis = create_redis(redis_url)
    model = ChatModel(Settings(data_dir=tmp_path, llm_base_url=None, llm_model=None, llm_api_key=None))
    turn_ids: list[str] = []
    try:
        await index.ensure_collection(DIM)
        await index.upsert(points)
        top_k = len(points) + 3  # exhaustive: more than every chunk in the index
        events = TurnEventStream(redis, ttl_s=600)
        activities = chat_activities(
            pool,
            repo=ChatRepository(pool),
            events=events,
            model=model,
            prompt=PromptConfig(system_prompt="test", history_max_messages=4, retrieval_top_k=top_k),
            knowledge=KnowledgeServices(
                embedder=embedder, index=index, blobs=FilesystemBlobStore(tmp_path / "blobs")
            ),
            knowledge_repo=KnowledgeRepository(pool),
        )
        env = ActivityEnvironment()
        chat = ChatRepository(pool)
        found = 0
        users = [u for u in world.users for _ in range(2)] + [
            rng.choice(world.users) for _ in range(RETRIEVE_PROBES - 2 * len(world.users))
        ]
        for n, user in enumerate(users):
            roll = rng.random()
            kbs = [] if roll < 0.5 else rng.sample(kb_pool, rng.randint(1, 3))
            if roll > 0.9:
                kbs.append(f"{world.tag}-kb-missing")
            message = " ".join(rng.sample(VOCAB, rng.randint(1, 5)))
            turn_id = f"{world.tag}-turn-{n}"
            session_id = f"{world.tag}-session-{world.users.index(user)}"
            turn_ids.append(turn_id)
            inline = n % 2 == 1  # the workflow passes the query inline; else the stored message is read
            if not inline:
                await chat.begin_turn(
                    session_id=session_id, user_id=user, turn_id=turn_id, message=message, agent="default"
                )
            result = await env.run(
                activities.retrieve,
                RetrieveInput(
                    session_id=session_id,
                    turn_id=turn_id,
                    user_id=user,
                    query=message if inline else "",
                    groups=world.groups_of[user],
                    knowledge_base_ids=kbs,
                ),
            )
            got = [c.chunk_id for c in result.citations]
            expected = expected_chunks(user, kbs)
            ctx = (n, user, world.groups_of[user], kbs, message)
            leaked = [(c.chunk_id, c.document_id) for c in result.citations if c.chunk_id not in expected]
            assert not leaked, world.msg("retrieve cited chunks the caller may not read", leaked, ctx)
            assert len(got) == len(set(got)), world.msg("duplicate citations", ctx)
            assert set(got) == expected, world.msg(
                "retrieve missed readable chunks", expected - set(got), ctx
            )
            for cite in result.citations:
                doc = by_id[cite.document_id]
                assert chunk_doc[cite.chunk_id] == cite.document_id, world.msg(cite, ctx)
                assert world.may_read(user, doc, metadata=False), world.msg("unreadable document", cite, ctx)
            streamed = [e.data["chunk_id"] for e in await events.read(turn_id) if e.event == "citation"]
            assert set(streamed) <= expected, world.msg("a citation event names an unreadable chunk", ctx)
            found += len(got)
        assert found > RETRIEVE_PROBES, world.msg("the probes should cite many chunks", found)
    finally:
        if turn_ids:
            await redis.delete(*(turn_stream_key(t) for t in turn_ids))
        await redis.aclose()
        await model.aclose()
        await index.close()
