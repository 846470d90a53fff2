"""The audience rule through the real chat turn (API, workers, Temporal, Postgres, Redis,
the embedded vector engine, the local embedding model; the model is the fake OpenAI
server, which records the prompts it got).

Alice has a private document, a document she shared with Bob, and there is an org
document -- all three about the same thing, each with a codeword. The turn is delivered
the way the Slack front door will deliver it (``chat_gateway.start_turn`` /
``run_follow_up`` with ``audience=``; the public ``POST /chat`` has no audience field):

- Alice's DM (no audience): all three are cited and reach the prompt;
- a channel with Bob: the private one never reaches the model or a citation, the shared
  and org ones do;
- a channel with Bob and someone Keel cannot resolve: only the org document;
- a channel with Carol (who may read neither of Alice's): only the org document.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowUpdateStage

from api import chat_gateway
from core.models.chat import Audience, AudienceMember, TurnResult
from core.models.principal import Principal
from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI
from tests.knowledge.test_documents_api import _kb_ids, upload, wait_settled

pytestmark = pytest.mark.slow

QUESTION = "What is the travel expense limit per trip?"
TEXTS = {
    "private": "Travel expense limit\n\nFor the Falcon acquisition team the travel expense limit per trip "
    "is 4,700 euros. Codeword FALCONPRIVATE.",
    "shared": "Travel expense limit\n\nFor the Heron partner team the travel expense limit per trip "
    "is 2,300 euros. Codeword HERONSHARED.",
    "org": "Travel expense limit\n\nFor all employees the standard travel expense limit per trip "
    "is 1,200 euros. Codeword ORGPUBLIC.",
}
CODEWORDS = {"private": "FALCONPRIVATE", "shared": "HERONSHARED", "org": "ORGPUBLIC"}
ALICE = Principal(user_id="aud-chat-alice")
BOB = AudienceMember(user_id="aud-chat-bob")
CAROL = AudienceMember(user_id="aud-chat-carol", groups=["aud-chat-nobody"])


class Turns:
    def __init__(self, platform: RunningApi, client: Client, llm: FakeOpenAI, docs: dict[str, str]) -> None:
        self.platform, self.client, self.llm, self.docs = platform, client, llm, docs

    def _seen(self, result: TurnResult, prompts: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
        """(documents cited, documents whose text reached any prompt of the turn), by name."""
        assert result.status == "completed", result
        assert prompts, "the model got no request"
        names = {doc_id: name for name, doc_id in self.docs.items()}
        cited = {names.get(c.document_id, c.document_id) for c in result.message.citations}
        text = "\n".join(str(m.get("content")) for p in prompts for m in p["messages"])
        prompted = {name for name, word in CODEWORDS.items() if word in text}
        return cited, prompted

    async def ask(self, audience: Audience | None) -> tuple[set[str], set[str]]:
        before = len(self.llm.requests)
        handle = await chat_gateway.start_turn(
            self.client,
            self.platform.settings,
            principal=ALICE,
            session_id=chat_gateway.new_session_id(),
            message=QUESTION,
            turn_id=chat_gateway.new_turn_id(),
            audience=audience,
            wait_for_stage=WorkflowUpdateStage.COMPLETED,
        )
        return self._seen(await handle.result(), self.llm.requests[before:])

    async def follow_up(self, session_id: str, audience: Audience | None) -> tuple[set[str], set[str]]:
        before = len(self.llm.requests)
        result = await chat_gateway.run_follow_up(
            self.client,
            self.platform.settings,
            principal=ALICE,
            session_id=session_id,
            message=QUESTION,
            turn_id=chat_gateway.new_turn_id(),
            audience=audience,
            timeout_s=60,
        )
        return self._seen(result, self.llm.requests[before:])


async def test_a_channel_answer_uses_only_what_every_member_may_read(
    platform: RunningApi, llm: FakeOpenAI, temporal_client: Client, database_url: str
) -> None:
    alice = await platform.auth(ALICE.user_id)
    admin = {"Authorization": f"Bearer {await platform.token('aud-chat-admin', roles=['OrgAdmin'])}"}
    personal = (await _kb_ids(platform, alice))["personal"]
    created = await platform.http.post(
        "/api/v1/admin/knowledge-bases", json={"name": "Audience travel"}, headers=admin
    )
    assert created.status_code == 201, created.text
    org_kb = created.json()["id"]
    try:
        docs = {
            "private": await upload(platform, alice, personal, "falcon.txt", TEXTS["private"].encode()),
            "shared": await upload(platform, alice, personal, "heron.txt", TEXTS["shared"].encode()),
            "org": await upload(platform, admin, org_kb, "travel.txt", TEXTS["org"].encode()),
        }
        for name, doc_id in docs.items():
            who, kb = (admin, org_kb) if name == "org" else (alice, personal)
            assert (await wait_settled(platform, who, kb, doc_id))["status"] == "ready"
        shared = await platform.http.post(
            f"/api/v1/knowledge-bases/{personal}/documents/{docs['shared']}/shares",
            json={"user_ids": [BOB.user_id]},
            headers=alice,
        )
        assert shared.status_code == 200, shared.text
        turns = Turns(platform, temporal_client, llm, docs)

        everything = {"private", "shared", "org"}
        assert await turns.ask(None) == (everything, everything)  # Alice's DM: her own permissions
        assert await turns.ask(Audience(members=[AudienceMember(user_id=ALICE.user_id)])) == (
            everything,
            everything,
        )
        with_bob = Audience(members=[BOB])  # the asker counts whether listed or not
        assert await turns.ask(with_bob) == ({"shared", "org"}, {"shared", "org"})
        assert await turns.ask(Audience(members=[AudienceMember(user_id=ALICE.user_id), BOB])) == (
            {"shared", "org"},
            {"shared", "org"},
        )
        unresolved = Audience(members=[BOB], unresolved_members=1)
        assert await turns.ask(unresolved) == ({"org"}, {"org"})
        assert await turns.ask(Audience(members=[BOB, CAROL])) == ({"org"}, {"org"})

        # A follow-up carries its own audience (the Slack thread's members now).
        session_id = chat_gateway.new_session_id()
        handle = await chat_gateway.start_turn(
            temporal_client,
            platform.settings,
            principal=ALICE,
            session_id=session_id,
            message="hello",
            turn_id=chat_gateway.new_turn_id(),
            audience=unresolved,
            wait_for_stage=WorkflowUpdateStage.COMPLETED,
        )
        assert (await handle.result()).status == "completed"
        assert await turns.follow_up(session_id, unresolved) == ({"org"}, {"org"})
        assert await turns.follow_up(session_id, with_bob) == ({"shared", "org"}, {"shared", "org"})
    finally:
        conn = await asyncpg.connect(database_url)
        try:  # the session's database is shared by later tests: no org documents left behind
            await conn.execute("DELETE FROM knowledge_bases WHERE id = $1", org_kb)
        finally:
            await conn.close()
