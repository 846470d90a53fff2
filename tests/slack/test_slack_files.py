"""A file shared with the bot in a DM becomes a document of the sharer's personal
knowledge base (SlackFileWorkflow → IngestDocumentWorkflow as its child), with the
upload route's rules: identical bytes answer the existing document, files over
``KEEL_INGEST_MAX_FILE_BYTES`` are refused, and only Keel users may add files. Nobody
else can search what one person shared. Real Temporal, Postgres, Redis, vector engine
and embedding model; Slack's Web API is the local fake."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from core.names import ingest_workflow_id, slack_file_workflow_id
from infra.db.knowledge_repo import personal_kb_id
from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_payloads import message_event
from tests.slack.conftest import SlackBot
from tests.slack.test_slack_turns import wait_answer

pytestmark = pytest.mark.slow

ALICE, ALICE_DM = "UALICE", "DALICE"
BOB, BOB_DM = "UBOB", "DBOB"

NOTES = (
    b"# Project Heron\n\n"
    b"The Heron launch code is TANGERINE-42. The launch happens on the third Tuesday of May "
    b"from the north harbour.\n\n"
    b"## Budget\n\nHeron's budget is capped at four hundred thousand euros.\n"
)


def email(bot: SlackBot, name: str) -> str:
    """Emails are unique per test: the user directory outlives a test, and an email one test
    signs in with must stay unknown to the others (test_slack_turns' stranger is bob@)."""
    return f"{name}-{bot.suffix}@example.com"


def bot_replies(slack: FakeSlack, channel: str, thread_ts: str) -> list[Message]:
    return [m for m in slack.messages(channel, thread_ts=thread_ts) if m.user == slack.bot_user_id]


async def share(
    bot: SlackBot,
    user: str,
    channel: str,
    file_id: str,
    *,
    name: str = "heron.md",
    content: bytes = NOTES,
    mimetype: str = "text/markdown",
    filetype: str = "markdown",
) -> str:
    """``user`` shares a file in the DM ``channel`` (Slack's ``message``/``file_share``
    event, the file named by id); returns the file message's ts. File ids are unique per
    test, as Slack's are (the workflow id comes from it, and Temporal outlives a test)."""
    file_id = f"{file_id}-{bot.suffix}"
    bot.slack.add_file(
        file_id,
        name=name,
        content=content,
        mimetype=mimetype,
        filetype=filetype,
        user=user,
        channels=[channel],
    )
    ts = f"{time.time():.6f}"
    event = message_event(
        user, channel, "", ts, channel_type="im", subtype="file_share", files=[{"id": file_id}]
    )
    resp = await bot.event(event)
    assert resp.status_code == 200, resp.text
    return ts


async def reply_to(bot: SlackBot, channel: str, ts: str, timeout_s: float = 120) -> str:
    await bot.slack.wait_for_async(lambda s: bool(bot_replies(s, channel, ts)), timeout_s=timeout_s)
    replies = bot_replies(bot.slack, channel, ts)
    assert len(replies) == 1, replies
    return replies[0].text


async def documents(bot: SlackBot, headers: dict[str, str], kb_id: str) -> list[dict[str, Any]]:
    resp = await bot.api.http.get(f"/api/v1/knowledge-bases/{kb_id}/documents", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["documents"])


async def query(bot: SlackBot, headers: dict[str, str], kb_id: str, text: str) -> list[dict[str, Any]]:
    resp = await bot.api.http.post(
        f"/api/v1/knowledge-bases/{kb_id}/query", json={"query": text, "top_k": 5}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["results"])


async def person(bot: SlackBot, slack_id: str, dm: str, name: str) -> dict[str, str]:
    bot.slack.add_user(slack_id, email=email(bot, name), real_name=name.title())
    bot.slack.add_channel(dm, is_im=True, user=slack_id)
    return {"Authorization": f"Bearer {await bot.keel_user(name, email(bot, name))}"}


async def test_a_file_shared_in_a_dm_becomes_a_searchable_document_of_the_personal_kb(
    bot: SlackBot, temporal_client: Client
) -> None:
    alice = await person(bot, ALICE, ALICE_DM, "alice")
    kb = personal_kb_id(bot.user_id("alice"))
    ts = await share(bot, ALICE, ALICE_DM, "FHERON1")

    text = await reply_to(bot, ALICE_DM, ts)
    assert "*heron.md* is in your personal knowledge base" in text, text

    docs = await documents(bot, alice, kb)
    assert len(docs) == 1, docs
    doc = docs[0]
    assert doc["status"] == "ready" and doc["chunk_count"] >= 1, doc
    assert doc["filename"] == "heron.md" and doc["owner_id"] == f"user:{bot.user_id('alice')}"
    assert doc["size_bytes"] == len(NOTES)
    hits = await query(bot, alice, kb, "What is the Heron launch code?")
    assert hits and hits[0]["doc_id"] == doc["id"] and "TANGERINE-42" in hits[0]["text"]

    # The bot fetched the private URL with its own token, once.
    downloads = bot.slack.file_downloads
    assert [(d.file_id, d.served) for d in downloads] == [(f"FHERON1-{bot.suffix}", True)]
    assert downloads[0].authorization == f"Bearer {bot.slack.bot_token}"

    # Temporal: the file workflow ingested it through IngestDocumentWorkflow, as its child.
    file_wf = slack_file_workflow_id(bot.team, f"FHERON1-{bot.suffix}")
    assert await temporal_client.get_workflow_handle(file_wf).result() == "ready"
    child = await temporal_client.get_workflow_handle(ingest_workflow_id(doc["id"])).describe()
    assert child.workflow_type == "IngestDocumentWorkflow"
    assert child.parent_id == file_wf


async def test_the_same_bytes_shared_again_answer_the_existing_document(bot: SlackBot) -> None:
    alice = await person(bot, ALICE, ALICE_DM, "alice")
    kb = personal_kb_id(bot.user_id("alice"))
    first = await share(bot, ALICE, ALICE_DM, "FHERON1")
    assert "is in your personal knowledge base" in await reply_to(bot, ALICE_DM, first)
    [doc] = await documents(bot, alice, kb)

    # Another Slack file (new id, another name), the same bytes.
    again = await share(bot, ALICE, ALICE_DM, "FHERON2", name="heron-copy.md")
    text = await reply_to(bot, ALICE_DM, again)
    assert "already in your personal knowledge base" in text, text
    assert [(d["id"], d["version"]) for d in await documents(bot, alice, kb)] == [(doc["id"], 1)]
    assert len(bot.slack.file_downloads) == 2, "the bytes decide, so the copy was fetched too"

    # The same name with other bytes is the document's next version, searchable in its place.
    changed = await share(bot, ALICE, ALICE_DM, "FHERON3", content=NOTES.replace(b"TANGERINE", b"PERSIMMON"))
    assert "is in your personal knowledge base" in await reply_to(bot, ALICE_DM, changed)
    [now] = await documents(bot, alice, kb)
    assert (now["id"], now["version"], now["status"]) == (doc["id"], 2, "ready")
    hits = await query(bot, alice, kb, "What is the Heron launch code?")
    assert "PERSIMMON-42" in hits[0]["text"] and all("TANGERINE" not in h["text"] for h in hits)


@pytest.fixture
async def small_limit_bot(
    slack_settings: Settings, slack: FakeSlack, temporal_client: Client
) -> AsyncIterator[SlackBot]:
    settings = slack_settings.model_copy(update={"ingest_max_file_bytes": 64})
    async with running_platform(settings, temporal_client) as running:
        yield SlackBot(api=running, slack=slack, settings=settings)


async def test_a_file_over_the_size_limit_is_refused_and_nothing_is_stored(small_limit_bot: SlackBot) -> None:
    bot = small_limit_bot
    alice = await person(bot, ALICE, ALICE_DM, "alice")
    assert len(NOTES) > 64
    ts = await share(bot, ALICE, ALICE_DM, "FBIG")
    text = await reply_to(bot, ALICE_DM, ts)
    assert "heron.md" in text and "larger than the limit of 64 bytes" in text, text
    assert await documents(bot, alice, personal_kb_id(bot.user_id("alice"))) == []
    assert bot.slack.file_downloads == [], "refused from files.info's size, before downloading"


async def test_a_file_from_someone_keel_does_not_know_is_refused_unread(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    bot.slack.add_user(BOB, email=email(bot, "bob"), real_name="Bob")  # never signed in to Keel
    bot.slack.add_channel(BOB_DM, is_im=True, user=BOB)
    ts = await share(bot, BOB, BOB_DM, "FBOB")
    text = await reply_to(bot, BOB_DM, ts, timeout_s=30)
    assert "I don't know you in Keel yet" in text, text
    assert "Sign in to Keel once at https://keel.example.test/" in text, text
    assert bot.slack.file_downloads == []
    assert not bot.slack.calls_to("files.info"), "nothing about the file is read for a stranger"
    # Nothing stored: once Bob signs in, his personal knowledge base is empty.
    bob = {"Authorization": f"Bearer {await bot.keel_user('bob', email(bot, 'bob'))}"}
    assert await documents(bot, bob, personal_kb_id(bot.user_id("bob"))) == []
    assert llm.request_count == 0


async def test_bob_cannot_search_what_alice_shared(bot: SlackBot, llm: FakeOpenAI) -> None:
    alice = await person(bot, ALICE, ALICE_DM, "alice")
    bob = await person(bot, BOB, BOB_DM, "bob")
    alice_kb, bob_kb = personal_kb_id(bot.user_id("alice")), personal_kb_id(bot.user_id("bob"))
    ts = await share(bot, ALICE, ALICE_DM, "FHERON1")
    assert "is in your personal knowledge base" in await reply_to(bot, ALICE_DM, ts)
    [doc] = await documents(bot, alice, alice_kb)

    # Through the API: Alice's knowledge base, document and chunks are not there for Bob.
    for method, path, body in (
        ("POST", f"/api/v1/knowledge-bases/{alice_kb}/query", {"query": "Heron launch code"}),
        ("GET", f"/api/v1/knowledge-bases/{alice_kb}/documents", None),
        ("GET", f"/api/v1/knowledge-bases/{alice_kb}/documents/{doc['id']}", None),
        ("GET", f"/api/v1/knowledge-bases/{bob_kb}/documents/{doc['id']}", None),
    ):
        resp = await bot.api.http.request(method, path, json=body, headers=bob)
        assert resp.status_code == 404, (path, resp.text)
    assert alice_kb not in json.dumps((await bot.api.http.get("/api/v1/knowledge-bases", headers=bob)).json())
    assert all("TANGERINE" not in h["text"] for h in await query(bot, bob, bob_kb, "Heron launch code"))

    # Through Slack: Alice's question is grounded on her file, Bob's same question is not.
    llm.enqueue(Reply("It is TANGERINE-42."), Reply("I don't know."))
    _, ask = await bot.dm(ALICE, ALICE_DM, "What is the Heron launch code?")
    await wait_answer(bot.slack, ALICE_DM, ask)
    assert "TANGERINE-42" in json.dumps(llm.requests[-1]["messages"]), "positive control: Alice's own file"
    _, bob_ask = await bot.dm(BOB, BOB_DM, "What is the Heron launch code?")
    await wait_answer(bot.slack, BOB_DM, bob_ask)
    assert llm.request_count == 2
    assert "TANGERINE" not in json.dumps(llm.requests[-1]["messages"])
    # Bob sharing the same bytes makes his own copy; it never answers Alice's document.
    bob_ts = await share(bot, BOB, BOB_DM, "FHERON-BOB")
    assert "is in your personal knowledge base" in await reply_to(bot, BOB_DM, bob_ts)
    [bob_doc] = await documents(bot, bob, bob_kb)
    assert bob_doc["id"] != doc["id"] and bob_doc["owner_id"] == f"user:{bot.user_id('bob')}"
