"""Who may learn what from an answer in a Slack channel: retrieval uses only documents
that every human member may read (docs/slack.md, "Visibility"), against the real chat
turn (API, workers, Temporal, Postgres, Redis, the embedded vector engine, the local
embedding model). Slack is the local FakeSlack; the model is the fake OpenAI server,
which records every request, so "the model never saw it" is checked on the prompts.

Alice owns three documents about the same question, each with its own codeword: one
only she may read, one she shared with Bob, and an org document. Every test asks the
same question and looks at (a) the codewords in every model request of the turn and
(b) every Slack call of the turn (the footer's sources, and any trace of a document
the audience may not read).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_api import FakeSlack, Message
from tests.knowledge.test_documents_api import _kb_ids, upload, wait_settled
from tests.slack.conftest import SlackBot
from tests.slack.test_slack_turns import answers

pytestmark = pytest.mark.slow

QUESTION = "What is the travel expense limit per trip?"
ANSWER = "It depends on your team; see the sources."
CHANNEL_RULE = "Searched only documents every member of this channel may read."
DM_RULE = "Searched with your own access."
NO_SEARCH = "No documents were searched"
PUBLIC_RULE = "Searched only documents everyone in the organisation may read"


@dataclass(frozen=True)
class Doc:
    name: str
    id: str
    title: str
    codeword: str


@dataclass
class Library:
    """Alice's private and shared documents and the org document, ingested and ready."""

    private: Doc
    shared: Doc
    org: Doc
    org_kb: str

    @property
    def docs(self) -> tuple[Doc, ...]:
        return (self.private, self.shared, self.org)


@dataclass
class People:
    """Slack ids (unique per test: the profile and member caches live in Redis, which
    outlives a test) and the Alice-Bob DM."""

    alice: str
    bob: str
    alice_dm: str


TEXTS = {
    "private": (
        "falcon-limits.txt",
        "Falcon team travel\n\nFor the Falcon acquisition team the travel expense limit per trip "
        "is 4,700 euros. Codeword FALCONPRIVATE.",
        "FALCONPRIVATE",
    ),
    "shared": (
        "heron-limits.txt",
        "Heron team travel\n\nFor the Heron partner team the travel expense limit per trip "
        "is 2,300 euros. Codeword HERONSHARED.",
        "HERONSHARED",
    ),
    "org": (
        "company-travel.txt",
        "Company travel\n\nFor all employees the standard travel expense limit per trip "
        "is 1,200 euros. Codeword ORGPUBLIC.",
        "ORGPUBLIC",
    ),
}


def _email(bot: SlackBot, name: str) -> str:
    return f"{name}-{bot.suffix}@example.com"


async def _people(bot: SlackBot) -> People:
    tag = bot.suffix.upper()
    people = People(alice=f"UALICE{tag}", bob=f"UBOB{tag}", alice_dm=f"DALICE{tag}")
    bot.slack.add_user(people.alice, email=_email(bot, "alice"), real_name="Alice")
    bot.slack.add_user(people.bob, email=_email(bot, "bob"), real_name="Bob")
    bot.slack.add_channel(people.alice_dm, is_im=True, user=people.alice)
    await bot.keel_user("alice", _email(bot, "alice"))
    await bot.keel_user("bob", _email(bot, "bob"))
    return people


async def _library(bot: SlackBot) -> Library:
    api = bot.api
    alice = {"Authorization": f"Bearer {await bot.keel_user('alice', _email(bot, 'alice'))}"}
    admin = {"Authorization": f"Bearer {await api.token(bot.user_id('admin'), roles=['OrgAdmin'])}"}
    personal = (await _kb_ids(api, alice))["personal"]
    created = await api.http.post(
        "/api/v1/admin/knowledge-bases", json={"name": f"Slack travel {bot.suffix}"}, headers=admin
    )
    assert created.status_code == 201, created.text
    org_kb = str(created.json()["id"])
    docs: dict[str, Doc] = {}
    for name, (filename, text, codeword) in TEXTS.items():
        who, kb = (admin, org_kb) if name == "org" else (alice, personal)
        doc_id = await upload(api, who, kb, filename, text.encode())
        view = await wait_settled(api, who, kb, doc_id)
        assert view["status"] == "ready", view
        docs[name] = Doc(name, doc_id, str(view["title"]), codeword)
    shared = await api.http.post(
        f"/api/v1/knowledge-bases/{personal}/documents/{docs['shared'].id}/shares",
        json={"user_ids": [bot.user_id("bob")]},
        headers=alice,
    )
    assert shared.status_code == 200, shared.text
    return Library(private=docs["private"], shared=docs["shared"], org=docs["org"], org_kb=org_kb)


@pytest.fixture
async def library(bot: SlackBot, database_url: str) -> AsyncIterator[Library]:
    lib = await _library(bot)
    try:
        yield lib
    finally:
        conn = await asyncpg.connect(database_url)
        try:  # the session's database is shared by later tests: no org documents left behind
            await conn.execute("DELETE FROM knowledge_bases WHERE id = $1", lib.org_kb)
        finally:
            await conn.close()


@dataclass
class Seen:
    """What one turn let through."""

    #: documents whose text reached any model request of the turn
    prompted: set[str]
    #: documents in the answer's "Sources" (each link checked against the web UI's URL)
    cited: set[str]
    #: documents of which any trace (id, title, codeword) reached any Slack call of the turn
    in_slack: set[str]
    #: the answer's footer text (rule line and sources)
    footer: str
    answer: list[Message]


_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")


def _cited(lib: Library, bot: SlackBot, footer_json: str) -> set[str]:
    cited = set()
    base = bot.settings.web_base_url.rstrip("/")
    for url, title in _LINK.findall(footer_json):
        doc = next((d for d in lib.docs if url == f"{base}/documents?doc={d.id}"), None)
        assert doc is not None, f"a source links somewhere unexpected: {url}"
        assert title == doc.title, (title, doc.title)
        cited.add(doc.name)
    return cited


def _finished(slack: FakeSlack, channel: str, thread_ts: str) -> bool:
    """No stream open, and the last message of the answer carries the footer (a context block)."""
    msgs = answers(slack, channel, thread_ts)
    return (
        bool(msgs)
        and not any(m.streaming for m in msgs)
        and any(b.get("type") == "context" for b in msgs[-1].blocks or [])
    )


async def ask(
    bot: SlackBot, llm: FakeOpenAI, lib: Library, user: str, channel: str, *, dm: bool = False
) -> Seen:
    """``QUESTION`` as a new top-level DM or @mention; waits for the finished answer."""
    llm.set_default(Reply(ANSWER))
    before_llm, before_slack = len(llm.requests), len(bot.slack.calls)
    if dm:
        resp, ts = await bot.dm(user, channel, QUESTION)
    else:
        resp, ts = await bot.mention(user, channel, QUESTION)
    assert resp.status_code == 200, resp.text
    await bot.slack.wait_for_async(lambda s: _finished(s, channel, ts), timeout_s=40)
    answer = answers(bot.slack, channel, ts)
    prompts = llm.requests[before_llm:]
    assert prompts, "the model got no request"
    prompt_text = json.dumps([r["messages"] for r in prompts])
    slack_text = json.dumps([c.params for c in bot.slack.calls[before_slack:]])
    footer = json.dumps([b for b in answer[-1].blocks or [] if b.get("type") in ("section", "context")])
    return Seen(
        prompted={d.name for d in lib.docs if d.codeword in prompt_text},
        cited=_cited(lib, bot, footer),
        in_slack={d.name for d in lib.docs if any(x in slack_text for x in (d.id, d.codeword, d.title))},
        footer=footer,
        answer=answer,
    )


def _channel(
    bot: SlackBot, name: str, members: list[str], *, is_private: bool = True, is_ext_shared: bool = False
) -> str:
    """A channel with these members and the bot; private unless said otherwise (a public
    channel, readable by the whole workspace, is org documents only: see the test below)."""
    channel_id = f"C{name.upper()}{bot.suffix.upper()}"
    bot.slack.add_channel(
        channel_id,
        name=name,
        members=[*members, bot.slack.bot_user_id],
        is_private=is_private,
        is_ext_shared=is_ext_shared,
    )
    return channel_id


async def test_a_document_only_alice_may_read_never_reaches_a_channel_with_bob(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    p = await _people(bot)
    team = _channel(bot, "team", [p.alice, p.bob])

    seen = await ask(bot, llm, library, p.alice, team)
    assert "private" not in seen.prompted, "the model saw a passage Bob may not read"
    assert "private" not in seen.cited and "private" not in seen.in_slack
    # ... while what Bob may read is used: the document Alice shared with him, and the org's.
    assert seen.prompted == {"shared", "org"} == seen.cited
    assert CHANNEL_RULE in seen.footer

    # The same question in Alice's DM: her own access, so her private document is used.
    dm = await ask(bot, llm, library, p.alice, p.alice_dm, dm=True)
    assert dm.prompted == {"private", "shared", "org"} == dm.cited
    assert DM_RULE in dm.footer
    link = f"<{bot.settings.web_base_url}/documents?doc={library.private.id}|{library.private.title}>"
    assert link in dm.footer, dm.footer

    # Asked again in the channel (a session of its own, after the DM one): still not used.
    again = await ask(bot, llm, library, p.alice, team)
    assert "private" not in again.prompted and "private" not in again.in_slack


async def test_a_document_alice_shared_with_bob_is_used_in_their_channel(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    p = await _people(bot)
    team = _channel(bot, "pair", [p.alice, p.bob], is_private=True)
    seen = await ask(bot, llm, library, p.alice, team)
    assert "shared" in seen.prompted and "shared" in seen.cited
    assert "private" not in seen.prompted | seen.in_slack
    # Bob asking in the same channel gets the same documents (his own and the audience's rule).
    by_bob = await ask(bot, llm, library, p.bob, team)
    assert by_bob.prompted == {"shared", "org"} == by_bob.cited


async def test_a_member_keel_cannot_resolve_limits_the_channel_to_org_documents(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    p = await _people(bot)
    stranger, no_email, gone = (f"U{x}{bot.suffix.upper()}" for x in ("NOBODY", "NOEMAIL", "GONE"))
    bot.slack.add_user(stranger, email=f"nobody-{bot.suffix}@example.com")  # never signed in to Keel
    bot.slack.add_user(no_email)  # a profile without an email
    bot.slack.add_user(gone, email=_email(bot, "bob"), deleted=True)  # a deactivated account
    for who in (stranger, no_email, gone):
        channel = _channel(bot, f"with{who[1:5]}", [p.alice, p.bob, who])
        seen = await ask(bot, llm, library, p.alice, channel)
        assert seen.prompted == {"org"} == seen.cited, who
        assert seen.in_slack == {"org"}, who
        assert CHANNEL_RULE in seen.footer


async def test_a_guest_in_the_channel_means_no_document_is_searched(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    p = await _people(bot)
    for flag in ("is_restricted", "is_ultra_restricted"):
        guest = f"UGUEST{flag[3:8].upper()}{bot.suffix.upper()}"
        bot.slack.add_user(
            guest,
            email=_email(bot, f"guest{flag}"),
            is_restricted=flag == "is_restricted",
            is_ultra_restricted=flag == "is_ultra_restricted",
        )
        await bot.keel_user(f"guest{flag}", _email(bot, f"guest{flag}"))  # even one Keel knows
        channel = _channel(bot, f"guest{flag[3:6]}", [p.alice, p.bob, guest])
        seen = await ask(bot, llm, library, p.alice, channel)
        assert seen.prompted == set() == seen.cited == seen.in_slack, flag
        assert NO_SEARCH in seen.footer and "Sources" not in seen.footer, seen.footer


async def test_a_person_who_authorized_the_app_still_counts_as_a_member(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    """Slack's ``is_app_user`` means "an authorized user of the calling app" (a human who
    installed or signed in to it), not a bot: Carol, who may read neither of Alice's
    documents, is in the audience like anyone else -- and may ask herself."""
    p = await _people(bot)
    carol = f"UCAROL{bot.suffix.upper()}"
    bot.slack.add_user(carol, email=_email(bot, "carol"), real_name="Carol", is_app_user=True)
    await bot.keel_user("carol", _email(bot, "carol"))
    channel = _channel(bot, "carol", [p.alice, p.bob, carol])
    seen = await ask(bot, llm, library, p.alice, channel)
    assert seen.prompted == {"org"} == seen.cited
    assert not seen.in_slack - {"org"}
    by_carol = await ask(bot, llm, library, carol, channel)
    assert by_carol.prompted == {"org"} == by_carol.cited


async def test_the_audience_follows_the_members_from_one_question_to_the_next(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    """Bob leaves: the next answer is for Alice alone (the channel rule with an audience of
    one), so her own document may be used; he comes back: it may not, at once. (A private
    channel: its members are exactly who can read it.)"""
    p = await _people(bot)
    channel = _channel(bot, "moving", [p.alice, p.bob], is_private=True)
    before = await ask(bot, llm, library, p.alice, channel)
    assert "private" not in before.prompted | before.in_slack

    bot.slack.set_members(channel, [p.alice, bot.slack.bot_user_id])
    alone = await ask(bot, llm, library, p.alice, channel)
    assert alone.prompted == {"private", "shared", "org"} == alone.cited
    assert CHANNEL_RULE in alone.footer, "still the channel rule: the audience is the members now"

    bot.slack.set_members(channel, [p.alice, p.bob, bot.slack.bot_user_id])
    back = await ask(bot, llm, library, p.alice, channel)
    assert "private" not in back.prompted | back.in_slack
    assert back.prompted == {"shared", "org"}


async def test_someone_who_just_joined_counts_even_with_the_caches_on(
    slack_settings: Settings, slack: FakeSlack, temporal_client: Client, llm: FakeOpenAI, database_url: str
) -> None:
    """Profiles are cached (``KEEL_SLACK_CACHE_S``); who is in the channel is not: a person
    who joined a minute ago reads the next answer."""
    settings = slack_settings.model_copy(update={"slack_cache_s": 300})
    async with running_platform(settings, temporal_client) as running:
        bot = SlackBot(api=running, slack=slack, settings=settings)
        p = await _people(bot)
        lib = await _library(bot)
        try:
            channel = _channel(bot, "cached", [p.alice], is_private=True)
            alone = await ask(bot, llm, lib, p.alice, channel)
            assert "private" in alone.prompted

            slack.set_members(channel, [p.alice, p.bob, slack.bot_user_id])
            joined = await ask(bot, llm, lib, p.alice, channel)
            assert "private" not in joined.prompted | joined.in_slack, "Bob joined: Alice's own document"
            assert joined.prompted == {"shared", "org"}
        finally:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("DELETE FROM knowledge_bases WHERE id = $1", lib.org_kb)
            finally:
                await conn.close()


async def test_a_public_channel_gets_org_documents_only_and_a_shared_one_none(
    bot: SlackBot, llm: FakeOpenAI, library: Library
) -> None:
    """Anyone in the workspace can read a public channel without joining it, so its answers
    use only what everyone may read (KEEL_SLACK_PUBLIC_CHANNELS=org, the default), even
    though its two members could both read the shared document. A channel shared with
    another organisation (Slack Connect) searches nothing."""
    p = await _people(bot)
    public = _channel(bot, "public", [p.alice, p.bob], is_private=False)
    seen = await ask(bot, llm, library, p.alice, public)
    assert seen.prompted == {"org"} == seen.cited
    assert PUBLIC_RULE in seen.footer
    connect = _channel(bot, "connect", [p.alice, p.bob], is_ext_shared=True)
    seen = await ask(bot, llm, library, p.alice, connect)
    assert seen.prompted == set() == seen.cited == seen.in_slack
    assert "shared with another organisation" in seen.footer
