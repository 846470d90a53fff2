"""A seeded random world searched through both vector adapters, checked against a brute-force oracle.

The oracle below is written from the read rule of docs/knowledge.md directly (it does not call
``can_read``): a user reads a document when it is org-owned, when the user owns
it, or when it is shared with the user or one of the user's groups. Department
ownership grants nothing by itself (phase 2).

Every probe asserts that (1) no returned chunk is unreadable, (2) the returned
dense ranking is the exact filtered top-k (the engines search these small
stores exhaustively), (3) when top_k covers everything readable, nothing
readable is missing -- for hybrid (dense + keyword) probes too -- and (4) every
hit's ``similarity`` is its exact cosine similarity to the query, fused or not.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from core.models.knowledge import ChunkPayload, IndexPoint, point_id
from core.models.principal import Principal
from core.policy.acl import acl_filter
from core.ports import VectorIndex
from infra.vector.edge_index import EdgeIndex
from infra.vector.qdrant_index import QdrantIndex

SEED = 20250611
DIM = 32
N_USERS = 24
N_GROUPS = 6
N_DEPTS = 3
N_DOCS = 320
N_KBS = 8
# qdrant-client local mode evaluates filters in Python (~80 ms a probe here), so it gets fewer
PROBES = {"qdrant_local": 150, "edge": 2500}
MUTATION_PROBES = {"qdrant_local": 30, "edge": 200}
VOCAB = [f"w{i:03d}" for i in range(150)]
TIE = 1e-4  # float32 engines vs float64 oracle: scores this close may swap at the top-k boundary


@dataclass
class Doc:
    doc_id: str
    kb_id: str
    owner_type: str
    owner_id: str
    shared_with: list[str]
    chunks: list[str] = field(default_factory=list)  # point ids


@dataclass
class World:
    users: list[str]
    groups_of: dict[str, set[str]]
    docs: dict[str, Doc]
    vectors: dict[str, np.ndarray]  # point id -> unit vector
    doc_of: dict[str, str]  # point id -> doc id
    points: list[IndexPoint]

    def may_read(self, user: str, doc: Doc) -> bool:
        """The oracle, straight from docs/knowledge.md (independent of core.policy.acl)."""
        if doc.owner_type == "org":
            return True
        if doc.owner_type == "user" and doc.owner_id == f"user:{user}":
            return True
        mine = {f"user:{user}"} | {f"group:{g}" for g in self.groups_of[user]}
        return any(p in mine for p in doc.shared_with)

    def readable_chunks(self, user: str, kbs: set[str] | None) -> set[str]:
        return {
            pid
            for doc in self.docs.values()
            if (kbs is None or doc.kb_id in kbs) and self.may_read(user, doc)
            for pid in doc.chunks
        }


def build_world(seed: int = SEED) -> World:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    users = [f"u{i:02d}" for i in range(N_USERS)]
    groups = [f"g{i}" for i in range(N_GROUPS)]
    groups_of = {u: set(rng.sample(groups, rng.randint(0, 3))) for u in users}
    for g in groups:  # every group has at least one member
        if not any(g in gs for gs in groups_of.values()):
            groups_of[rng.choice(users)].add(g)
    share_pool = (
        [f"user:{u}" for u in users] + [f"group:{g}" for g in groups] + ["user:ghost", "group:ghosts"]
    )
    docs: dict[str, Doc] = {}
    vectors: dict[str, np.ndarray] = {}
    doc_of: dict[str, str] = {}
    points: list[IndexPoint] = []
    for d in range(N_DOCS):
        kind = rng.choices(["org", "user", "department"], weights=[1, 6, 2])[0]
        owner = {
            "org": "org",
            "user": f"user:{rng.choice(users)}",
            "department": f"dept:d{rng.randrange(N_DEPTS)}",
        }[kind]
        shared = rng.sample(share_pool, rng.choice([0, 0, 0, 1, 1, 2, 3]))
        doc = Doc(f"doc-{d:04d}", f"kb{rng.randrange(N_KBS)}", kind, owner, shared)
        docs[doc.doc_id] = doc
        for c in range(rng.randint(1, 5)):
            pid = point_id(doc.doc_id, c)
            vec = nprng.standard_normal(DIM)
            vec /= np.linalg.norm(vec)
            vectors[pid] = vec
            doc_of[pid] = doc.doc_id
            doc.chunks.append(pid)
            payload = ChunkPayload(
                doc_id=doc.doc_id,
                kb_id=doc.kb_id,
                source=rng.choice(["manual", "upload", "sync"]),
                owner_type=kind,
                owner_id=owner,
                visibility="shared" if shared else "private",
                shared_with=shared,
                created_at="2025-06-11T12:00:00+00:00",
                doc_type=rng.choice(["pdf", "docx", "md"]),
                chunk_index=c,
                title=f"Document {d}",
                text=" ".join(rng.choices(VOCAB, k=rng.randint(5, 40))),
                page=c + 1,
                strategy="fixed",
            )
            points.append(IndexPoint(id=pid, vector=vec.tolist(), payload=payload))
    return World(users, groups_of, docs, vectors, doc_of, points)


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


Factory = Callable[[Path], VectorIndex]
ADAPTERS: dict[str, Factory] = {
    "qdrant_local": lambda _: QdrantIndex(AsyncQdrantClient(":memory:"), "keel_chunks"),
    "edge": lambda tmp: EdgeIndex(tmp / "keel_chunks"),
}


@pytest.fixture(params=list(ADAPTERS))
async def index(request: pytest.FixtureRequest, world: World) -> AsyncIterator[VectorIndex]:
    with tempfile.TemporaryDirectory() as tmp:
        idx = ADAPTERS[request.param](Path(tmp))
        await idx.ensure_collection(DIM)
        await idx.upsert(world.points)
        yield idx
        await idx.close()


def principal(world: World, user: str) -> Principal:
    return Principal(user_id=user, groups=tuple(sorted(world.groups_of[user])))


async def probe(
    idx: VectorIndex,
    world: World,
    rng: random.Random,
    *,
    user: str,
    top_k: int,
    kbs: set[str] | None,
    query_text: str | None,
) -> None:
    query = np.asarray([rng.gauss(0.0, 1.0) for _ in range(DIM)])
    acl = acl_filter(principal(world, user), knowledge_base_ids=None if kbs is None else sorted(kbs))
    hits = await idx.search(query.tolist(), acl=acl, top_k=top_k, query_text=query_text)
    got = [h.chunk_id for h in hits]
    readable = world.readable_chunks(user, kbs)
    context = (user, sorted(world.groups_of[user]), top_k, kbs, query_text)

    leaked = [(pid, world.doc_of.get(pid)) for pid in got if pid not in readable]
    assert not leaked, ("unreadable chunks returned", leaked, context)
    assert len(got) == len(set(got)) == min(top_k, len(readable)), context
    unit = query / np.linalg.norm(query)
    for h in hits:
        assert h.doc_id == world.doc_of[h.chunk_id]
        assert h.kb_id == world.docs[h.doc_id].kb_id
        # Dense and hybrid alike: ``similarity`` is the chunk's cosine similarity to the query
        # (a fused hit's ``score`` is RRF's, rank-based), what a relevance floor compares.
        assert h.similarity is not None
        assert abs(h.similarity - float(world.vectors[h.chunk_id] @ unit)) < TIE, (h, context)
    if top_k >= len(readable):
        assert set(got) == readable, ("readable chunks missing", readable - set(got), context)
    elif query_text is None:  # exact dense top-k among readable chunks
        scored = sorted(((float(world.vectors[p] @ unit), p) for p in readable), reverse=True)
        kth = scored[top_k - 1][0]
        must = {p for s, p in scored if s > kth + TIE}
        assert must <= set(got), ("best readable chunks missing", must - set(got), context)
        exact = dict((p, s) for s, p in scored)
        assert all(exact[p] >= kth - TIE for p in got), context
        assert [h.chunk_id for h in sorted(hits, key=lambda h: -h.score)] == got  # ranked


async def run_probes(idx: VectorIndex, world: World, rng: random.Random, n: int) -> None:
    kb_ids = [f"kb{i}" for i in range(N_KBS)]
    for _ in range(n):
        kbs = set(rng.sample(kb_ids, rng.randint(1, 2))) if rng.random() < 0.5 else None
        text = " ".join(rng.sample(VOCAB, rng.randint(1, 4))) if rng.random() < 0.25 else None
        await probe(
            idx, world, rng, user=rng.choice(world.users), top_k=rng.randint(10, 50), kbs=kbs, query_text=text
        )


async def test_random_world_never_leaks_and_finds_everything(
    index: VectorIndex, world: World, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.params["index"]
    rng = random.Random(f"{SEED}-{name}")
    assert await index.count() == len(world.points)
    await index.upsert(world.points[:100])  # re-indexing overwrites (deterministic ids)
    assert await index.count() == len(world.points)

    # everyone, with top_k above everything they may read: exactly the readable set
    for user in world.users:
        total = len(world.readable_chunks(user, None))
        await probe(index, world, rng, user=user, top_k=total + 5, kbs=None, query_text=None)
        await probe(index, world, rng, user=user, top_k=total + 5, kbs=None, query_text="w001 w002")

    await run_probes(index, world, rng, PROBES[name])


async def test_share_unshare_delete_take_effect_on_next_query(
    index: VectorIndex, world: World, request: pytest.FixtureRequest
) -> None:
    name = request.node.callspec.params["index"]
    rng = random.Random(f"{SEED}-mutations-{name}")
    private = [d for d in world.docs.values() if d.owner_type == "user" and not d.shared_with]
    doc = rng.choice(private)
    owner = doc.owner_id.removeprefix("user:")
    outsider = next(u for u in world.users if f"user:{u}" != doc.owner_id and not world.may_read(u, doc))
    group = next(iter(sorted(world.groups_of[outsider])), None)
    target = f"group:{group}" if group else f"user:{outsider}"

    async def visible_to(user: str) -> bool:
        acl = acl_filter(principal(world, user), knowledge_base_ids=[doc.kb_id])
        hits = await index.search(world.vectors[doc.chunks[0]].tolist(), acl=acl, top_k=200)
        return any(h.doc_id == doc.doc_id for h in hits)

    assert await visible_to(owner) and not await visible_to(outsider)

    await index.set_document_acl(doc.doc_id, shared_with=[target], visibility="shared")
    doc.shared_with = [target]
    assert await visible_to(outsider)
    await run_probes(index, world, rng, MUTATION_PROBES[name])  # the oracle follows the change

    await index.set_document_acl(doc.doc_id, shared_with=[], visibility="private")
    doc.shared_with = []
    assert not await visible_to(outsider) and await visible_to(owner)
    await run_probes(index, world, rng, MUTATION_PROBES[name])

    org_doc = next(d for d in world.docs.values() if d.owner_type == "org")
    await index.delete_document(org_doc.doc_id)
    await index.delete_document("no-such-doc")
    assert await index.count(org_doc.doc_id) == 0
    saved = world.docs.pop(org_doc.doc_id)
    try:
        for user in world.users[: 8 if name == "qdrant_local" else None]:
            total = len(world.readable_chunks(user, None))
            await probe(index, world, rng, user=user, top_k=total + 1, kbs=None, query_text=None)
    finally:
        world.docs[saved.doc_id] = saved
        doc.shared_with = []


async def test_edge_store_reopens_from_disk_with_the_same_filtering(world: World, tmp_path: Path) -> None:
    idx = EdgeIndex(tmp_path / "keel_chunks", optimize_every=500)  # the optimiser runs once here
    await idx.ensure_collection(DIM)
    await idx.upsert(world.points)
    await idx.close()

    reopened = EdgeIndex(tmp_path / "keel_chunks")  # lazily loaded on first use
    try:
        assert await reopened.count() == len(world.points)
        await run_probes(reopened, world, random.Random(SEED), 100)
        with pytest.raises(ValueError):
            await reopened.ensure_collection(DIM + 1)
    finally:
        await reopened.close()


def test_factory_builds_the_adapters_tested_here(tmp_path: Path) -> None:
    from infra.settings import Settings
    from infra.vector import factory

    embedded = factory.create_vector_index(Settings(data_dir=tmp_path))
    assert isinstance(embedded, EdgeIndex)
    assert embedded.path == tmp_path / "qdrant" / "keel_chunks"
    assert isinstance(factory.create_vector_index(Settings(qdrant_path=tmp_path / "q")), EdgeIndex)

    # No server here: the client connects lazily, so its configured address can be read.
    server = factory.create_vector_index(Settings(qdrant_url="http://qdrant.internal:6333"))
    assert isinstance(server, QdrantIndex)
    assert server._client.init_options["url"] == "http://qdrant.internal:6333"
