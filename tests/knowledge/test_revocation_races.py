"""Share, unshare, delete and re-upload *while large documents are being indexed*.

The red-team pass found two holes: an unshare during indexing left the batches
indexed after it readable by the old reader (the indexer stamped the ACL it read
once at the start on every batch), and a delete during indexing left orphan
vectors behind that stayed retrievable and could no longer be revoked.

This test runs the real platform (API, workers, Temporal, Postgres, Redis and the
embedded Qdrant engine). Only the embedding model is a stand-in: every batch of
a document waits at a gate (``GatedEmbedder``), so the seeded random script below
decides how far each ingestion has got when the next operation runs. After every
step all four users are probed on every read path and compared with an oracle
written here from the access rule (owner, or shared with the user or one of the
user's groups, and not deleted):

- the vector engine itself, with the user's ACL filter (so a stale payload is
  caught even where the read paths' Postgres check would hide it);
- ``POST /knowledge-bases/{id}/query`` on every knowledge base the user lists;
- ``POST /chat``: the citations, and the prompt the model received;
- ``GET /knowledge-bases/{id}/documents/{doc_id}`` (200 exactly when readable).

A re-upload of ``handbook.txt`` is that document's next version (same id, same
shares): no text of a replaced version may reach a query result or a prompt.

At the end every live document is fully indexed, and no vector of a deleted
document exists, also after the vector store is closed and opened again.
``KEEL_TEST_RACE_SEED`` replays a run; the probe count is printed (``-s``).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from core.models.principal import Principal
from core.policy.acl import acl_filter
from infra.blobstore import FilesystemBlobStore
from infra.knowledge import KnowledgeServices
from infra.settings import Settings
from infra.vector.edge_index import EdgeIndex
from tests.conftest import RunningApi, running_api
from tests.fakes.openai_server import FakeOpenAI
from tests.support.embedders import GatedEmbedder
from workers.runtime import running_workers

SEED = int(os.environ.get("KEEL_TEST_RACE_SEED", "20261201"))
STEPS = 28
PARAGRAPHS = 16  # each ~200 characters: at least 16 chunks, 4+ gated batches of 4
QUERY = "travel expense policy approval section"
WORDS = ["travel", "expense", "policy", "approval", "section", "receipts", "manager", "budget", "claim"]


@dataclass
class Doc:
    id: str
    token: str  # a word in every chunk of this document and nowhere else
    shared_with: set[str] = field(default_factory=set)  # "user:<id>", "group:<id>"
    deleted: bool = False
    old_tokens: list[str] = field(default_factory=list)  # of versions a re-upload replaced


@dataclass
class World:
    tag: str
    owner: str
    reader: str  # gets direct shares
    member: str  # in the group that gets shares
    outsider: str
    group: str
    docs: list[Doc] = field(default_factory=list)
    probes: int = 0

    def groups_of(self, user: str) -> tuple[str, ...]:
        return (self.group,) if user == self.member else ()

    def users(self) -> list[str]:
        return [self.owner, self.reader, self.member, self.outsider]

    def may_read(self, user: str, doc: Doc) -> bool:
        """The oracle: the access rule, written out here independently of core.policy.acl."""
        if doc.deleted:
            return False
        if user == self.owner:
            return True
        mine = {f"user:{user}"} | {f"group:{g}" for g in self.groups_of(user)}
        return bool(mine & doc.shared_with)

    def live(self) -> list[Doc]:
        return [d for d in self.docs if not d.deleted]

    def by_id(self, doc_id: str) -> Doc | None:
        return next((d for d in self.docs if d.id == doc_id), None)


def _text(token: str) -> bytes:
    rng = random.Random(token)
    paragraphs = [
        f"{token} section {i}: " + " ".join(rng.choices(WORDS, k=24)) + "." for i in range(PARAGRAPHS)
    ]
    return "\n\n".join(paragraphs).encode()


class Script:
    def __init__(
        self,
        api: RunningApi,
        world: World,
        embedder: GatedEmbedder,
        knowledge: KnowledgeServices,
        llm: FakeOpenAI,
    ) -> None:
        self.api = api
        self.world = world
        self.embedder = embedder
        self.knowledge = knowledge
        self.llm = llm
        self.headers: dict[str, dict[str, str]] = {}
        self.sessions: dict[str, str] = {}
        self.kb = ""
        self.ops: Counter[str] = Counter()

    async def start(self) -> None:
        for user in self.world.users():
            token = await self.api.token(user, groups=list(self.world.groups_of(user)))
            self.headers[user] = {"Authorization": f"Bearer {token}"}
        kbs = (
            await self.api.http.get("/api/v1/knowledge-bases", headers=self.headers[self.world.owner])
        ).json()
        self.kb = next(kb["id"] for kb in kbs["knowledge_bases"] if kb["personal"])

    # ------------------------------------------------------------ operations
    async def upload(self, name: str) -> None:
        token = f"tok{uuid.uuid4().hex[:10]}"
        resp = await self.api.http.post(
            f"/api/v1/knowledge-bases/{self.kb}/documents",
            files={"file": (name, _text(token), "text/plain")},
            headers=self.headers[self.world.owner],
        )
        assert resp.status_code == 202, resp.text
        same = self.world.by_id(resp.json()["document_id"])
        if same is not None and not same.deleted:  # the file's next version: same id, same shares
            assert resp.json()["version"] == len(same.old_tokens) + 2, resp.text
            same.old_tokens.append(same.token)
            same.token = token
        else:
            self.world.docs.append(Doc(id=resp.json()["document_id"], token=token))

    async def change_shares(self, doc: Doc, principals: set[str], *, add: bool) -> None:
        body = {
            "user_ids": [p.removeprefix("user:") for p in principals if p.startswith("user:")],
            "group_ids": [p.removeprefix("group:") for p in principals if p.startswith("group:")],
        }
        resp = await self.api.http.request(
            "POST" if add else "DELETE",
            f"/api/v1/knowledge-bases/{self.kb}/documents/{doc.id}/shares",
            json=body,
            headers=self.headers[self.world.owner],
        )
        assert resp.status_code == 200, resp.text
        doc.shared_with = doc.shared_with | principals if add else doc.shared_with - principals
        assert set(resp.json()["shared_with"]) == doc.shared_with

    async def delete(self, doc: Doc) -> None:
        resp = await self.api.http.delete(
            f"/api/v1/knowledge-bases/{self.kb}/documents/{doc.id}", headers=self.headers[self.world.owner]
        )
        assert resp.status_code == 204, resp.text
        doc.deleted = True

    async def processing(self) -> int:
        docs = (
            await self.api.http.get(
                f"/api/v1/knowledge-bases/{self.kb}/documents", headers=self.headers[self.world.owner]
            )
        ).json()["documents"]
        return sum(1 for d in docs if d["status"] == "processing")

    async def settle(self) -> None:
        """Wait (best effort, 10 s) until every running ingestion is blocked at the gate."""
        for _ in range(100):
            if self.embedder.tokens == 0 and self.embedder.waiting == await self.processing():
                return
            await asyncio.sleep(0.1)

    # ---------------------------------------------------------------- probes
    def _check_docs(self, user: str, doc_ids: list[str], path: str, step: str) -> None:
        self.world.probes += 1
        for doc_id in doc_ids:
            doc = self.world.by_id(doc_id)
            assert doc is not None and self.world.may_read(user, doc), (
                f"seed {SEED}, {step}: {path} gave {user} a chunk of {doc_id}",
                doc,
            )

    async def probe(self, step: str) -> None:
        vector = await self.embedder.embed_query(QUERY)
        for user in self.world.users():
            principal = Principal(user_id=user, groups=self.world.groups_of(user))
            hits = await self.knowledge.index.search(
                vector, acl=acl_filter(principal), top_k=100, query_text=QUERY
            )
            self._check_docs(user, [h.doc_id for h in hits], "the vector engine", step)
            await self._probe_query(user, step)
            await self._probe_chat(user, step)
            await self._probe_documents(user, step)

    async def _probe_query(self, user: str, step: str) -> None:
        kbs = (await self.api.http.get("/api/v1/knowledge-bases", headers=self.headers[user])).json()
        for kb_id in {kb["id"] for kb in kbs["knowledge_bases"]} | {self.kb}:
            resp = await self.api.http.post(
                f"/api/v1/knowledge-bases/{kb_id}/query",
                json={"query": QUERY, "top_k": 100},
                headers=self.headers[user],
            )
            if resp.status_code == 404:  # a knowledge base with nothing this user may read
                assert not any(self.world.may_read(user, d) for d in self.world.docs) or kb_id != self.kb
                self.world.probes += 1
                continue
            assert resp.status_code == 200, resp.text
            self._check_docs(user, [r["doc_id"] for r in resp.json()["results"]], "query", step)
            for result in resp.json()["results"]:
                for old in self._old_tokens():
                    assert old not in result["text"], f"seed {SEED}, {step}: an old version answered"

    def _old_tokens(self) -> list[str]:
        return [t for d in self.world.docs for t in d.old_tokens]

    async def _probe_chat(self, user: str, step: str) -> None:
        body: dict[str, Any] = {"message": QUERY}
        if user in self.sessions:
            body["session_id"] = self.sessions[user]
        resp = await self.api.http.post("/api/v1/chat", json=body, headers=self.headers[user])
        assert resp.status_code == 200, resp.text
        turn = resp.json()
        self.sessions[user] = turn["session_id"]
        cited = [c["document_id"] for c in turn["message"]["citations"]]
        self._check_docs(user, cited, "chat citations", step)
        prompt = str(self.llm.requests[-1]["messages"])
        readable_tokens = {d.token for d in self.world.docs if self.world.may_read(user, d)}
        for doc in self.world.docs:
            if doc.token not in readable_tokens:
                assert doc.token not in prompt, f"seed {SEED}, {step}: {user}'s prompt held {doc.id}"
        for old in self._old_tokens():
            assert old not in prompt, f"seed {SEED}, {step}: {user}'s prompt held an old version"
        self.world.probes += 1

    async def _probe_documents(self, user: str, step: str) -> None:
        for doc in self.world.docs:
            resp = await self.api.http.get(
                f"/api/v1/knowledge-bases/{self.kb}/documents/{doc.id}", headers=self.headers[user]
            )
            expected = 200 if self.world.may_read(user, doc) else 404
            assert resp.status_code == expected, (f"seed {SEED}, {step}: GET {doc.id} as {user}", doc)
            self.world.probes += 1


async def _run_script(script: Script, rng: random.Random) -> None:
    world = script.world
    await script.upload("handbook.txt")
    await script.settle()
    for step_no in range(STEPS):
        live = world.live()
        ops = ["progress", "progress", "progress", "share", "share", "unshare", "unshare"]
        ops += ["upload", "reupload"] if len(live) < 3 else []
        ops += ["delete"] if live else []
        op = rng.choice(ops) if live else "upload"
        principals = {f"user:{world.reader}", f"group:{world.group}"}
        if op == "progress":
            script.embedder.release(rng.randint(1, 3))
        elif op == "share":
            doc = rng.choice(live)
            await script.change_shares(doc, set(rng.sample(sorted(principals), rng.randint(1, 2))), add=True)
        elif op == "unshare":
            doc = rng.choice([d for d in live if d.shared_with] or live)
            chosen = (
                set(rng.sample(sorted(doc.shared_with), len(doc.shared_with))) if doc.shared_with else set()
            )
            await script.change_shares(doc, chosen or principals, add=False)
        elif op == "delete":
            await script.delete(rng.choice(live))
        elif op == "upload":
            await script.upload(f"notes-{step_no}.txt")
        else:  # a new version of a document, uploaded while the old one is still indexing
            await script.upload("handbook.txt")
        script.ops[op] += 1
        await script.settle()
        await script.probe(f"step {step_no} ({op})")


@asynccontextmanager
async def racing_platform(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[Script]:
    """The platform with gated embeddings; on exit, checks the final state (see the module doc)."""
    tag = uuid.uuid4().hex[:6]
    world = World(
        tag=tag,
        owner=f"race-owner-{tag}",
        reader=f"race-reader-{tag}",
        member=f"race-member-{tag}",
        outsider=f"race-outsider-{tag}",
        group=f"race-team-{tag}",
    )
    embedder = GatedEmbedder()
    index_path = tmp_path / "vectors"
    knowledge = KnowledgeServices(
        embedder=embedder, index=EdgeIndex(index_path), blobs=FilesystemBlobStore(tmp_path / "blobs")
    )
    racy = settings.model_copy(
        update={
            "embedding_batch_size": 4,
            "ingest_chunk_chars": 200,
            "ingest_chunk_overlap": 0,
            "retrieval_top_k": 50,
        }
    )
    chunk_counts: dict[str, int] = {}
    try:
        async with running_workers(temporal_client, racy, knowledge), running_api(racy) as api:
            script = Script(api, world, embedder, knowledge, llm)
            await script.start()
            yield script

            # Let everything finish: every live document is complete, no deleted one left a vector.
            embedder.open()
            for _ in range(300):
                if await script.processing() == 0:
                    break
                await asyncio.sleep(0.1)
            assert await script.processing() == 0
            await script.probe("after indexing finished")
            listed = (
                await api.http.get(
                    f"/api/v1/knowledge-bases/{script.kb}/documents", headers=script.headers[world.owner]
                )
            ).json()["documents"]
            docs = {d["id"]: d for d in listed}
            for doc in world.docs:
                count = await knowledge.index.count(doc.id)
                if doc.deleted:
                    assert doc.id not in docs and count == 0, (f"seed {SEED}: orphan vectors", doc, count)
                else:
                    assert docs[doc.id]["status"] == "ready", docs[doc.id]
                    assert count == docs[doc.id]["chunk_count"] >= PARAGRAPHS, (doc, count)
                    chunk_counts[doc.id] = count
    finally:
        await knowledge.index.close()

    reopened = EdgeIndex(index_path)  # the store as the next process start finds it
    try:
        for doc in world.docs:
            expected = 0 if doc.deleted else chunk_counts[doc.id]
            assert await reopened.count(doc.id) == expected, (f"seed {SEED}: after reopening", doc)
    finally:
        await reopened.close()


async def test_an_unshare_during_indexing_covers_the_batches_indexed_after_it(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> None:
    async with racing_platform(settings, temporal_client, llm, tmp_path) as script:
        world = script.world
        await script.upload("handbook.txt")
        doc = world.docs[0]
        await script.change_shares(doc, {f"user:{world.reader}", f"group:{world.group}"}, add=True)
        script.embedder.release(1)  # one batch indexed while shared
        await script.settle()
        await script.probe("shared, one batch indexed")
        await script.change_shares(doc, {f"user:{world.reader}", f"group:{world.group}"}, add=False)
        script.embedder.release(2)  # two more batches after the unshare
        await script.settle()
        await script.probe("unshared, three batches indexed")
        assert script.embedder.batches == 3


async def test_a_delete_during_indexing_stops_it_and_leaves_no_vector(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> None:
    async with racing_platform(settings, temporal_client, llm, tmp_path) as script:
        await script.upload("handbook.txt")
        doc = script.world.docs[0]
        await script.change_shares(doc, {f"user:{script.world.reader}"}, add=True)
        script.embedder.release(2)
        await script.settle()
        await script.delete(doc)
        await script.probe("deleted after two batches")
        # The ingestion workflow was cancelled. Its activity learns that at its next heartbeat
        # or, sooner, when its next batch finds the document gone under the lock: it then
        # writes nothing and stops (here the third batch was embedded, and thrown away).
        script.embedder.release(1)
        for _ in range(100):
            if script.embedder.waiting == 0:
                break
            await asyncio.sleep(0.1)
        assert script.embedder.waiting == 0 and script.embedder.batches == 3
        assert await script.knowledge.index.count(doc.id) == 0


async def test_share_unshare_delete_and_reupload_during_indexing_never_leak(
    settings: Settings, temporal_client: Client, llm: FakeOpenAI, tmp_path: Path
) -> None:
    async with racing_platform(settings, temporal_client, llm, tmp_path) as script:
        await _run_script(script, random.Random(SEED))
    world = script.world
    assert all(script.ops[op] for op in ("share", "unshare", "delete", "progress")), script.ops
    print(f"\nrevocation races: seed {SEED}, {len(world.docs)} documents, operations {dict(script.ops)}")
    print(f"revocation races: {world.probes} probes, none leaked")
