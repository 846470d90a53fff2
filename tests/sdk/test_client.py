"""keel_sdk against the running platform: chat, sessions, streams and their resume,
knowledge bases, API keys, errors, admin calls."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from keel_sdk import (
    AsyncKeelClient,
    AuthenticationError,
    KeelClient,
    MessageDelta,
    NotFoundError,
    PermissionDeniedError,
    TurnCompleted,
    TurnStarted,
    UploadProgress,
)

from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.sdk.conftest import ClientFactory
from tests.sdk.proxy import CuttingProxy

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_chat_follow_up_and_sessions(client_for: ClientFactory) -> None:
    keel = await client_for("sdk-alice")
    first = await keel.chat("my name is Alice")
    assert first.status == "completed" and first.message.content == "Echo: my name is Alice"
    assert first.message.citations == [] and first.error is None and first.usage is not None
    second = await keel.chat("what is my name?", session_id=first.session_id)
    assert second.session_id == first.session_id and second.turn_id != first.turn_id

    listing = await keel.sessions.list(limit=10)
    assert [s.id for s in listing.sessions] == [first.session_id]
    detail = await keel.sessions.get(first.session_id)
    assert [m.content for m in detail.messages] == [
        "my name is Alice",
        "Echo: my name is Alice",
        "what is my name?",
        "Echo: what is my name?",
    ]
    renamed = await keel.sessions.rename(first.session_id, "About Alice")
    assert renamed.title == "About Alice"
    await keel.sessions.delete(first.session_id)
    with pytest.raises(NotFoundError) as caught:
        await keel.sessions.get(first.session_id)
    assert caught.value.status == 404 and caught.value.code == "session_not_found"
    assert caught.value.request_id and REQUEST_ID.match(caught.value.request_id)


async def test_errors_carry_status_code_and_request_id(
    platform: RunningApi, client_for: ClientFactory
) -> None:
    keel = await client_for("sdk-errors")
    with pytest.raises(NotFoundError) as caught:
        await keel.chat("hi", session_id="no-such-session")
    err = caught.value
    assert (err.status, err.code, err.message) == (404, "session_not_found", "session not found")
    assert err.request_id and REQUEST_ID.match(err.request_id)
    assert err.response is not None and err.response.headers["x-request-id"] == err.request_id
    async with AsyncKeelClient(base_url=platform.base_url, api_key="keel_not-a-key") as stranger:
        with pytest.raises(AuthenticationError) as bad:
            await stranger.sessions.list()
    assert bad.value.code == "invalid_token" and bad.value.status == 401


async def test_the_sync_client_chats_too(platform: RunningApi) -> None:
    token = await platform.token("sdk-sync")

    def run() -> tuple[str, list[str]]:
        with KeelClient(base_url=platform.base_url, token=token) as keel:
            answer = keel.chat("hello sync")
            with keel.chat_stream("and streamed", session_id=answer.session_id) as stream:
                names = [event.event for event in stream]
            return answer.message.content, names

    content, names = await asyncio.to_thread(run)
    assert content == "Echo: hello sync"
    assert names[0] == "turn.started" and names[-1] == "turn.completed"


async def test_stream_deltas_then_resume_after_closing(client_for: ClientFactory, llm: FakeOpenAI) -> None:
    keel = await client_for("sdk-stream")
    llm.enqueue(Reply("one two three four five six", chunk_delay_s=0.05))
    stream = keel.chat_stream("count")
    seen = []
    async for event in stream:
        seen.append(event)
        if len(seen) == 3:
            break
    await stream.close()
    assert isinstance(seen[0], TurnStarted) and isinstance(seen[1], MessageDelta)
    assert stream.session_id and stream.turn_id and stream.last_event_id == seen[-1].event_id

    rest = [
        e async for e in keel.turns.events(stream.session_id, stream.turn_id, last_event_id=seen[-1].event_id)
    ]
    events = seen + rest
    assert isinstance(events[-1], TurnCompleted)
    text = "".join(e.text for e in events if isinstance(e, MessageDelta))
    assert text == "one two three four five six" == events[-1].response.message.content
    assert [e.event_id for e in rest] == sorted({e.event_id for e in rest if e.event_id})  # nothing twice


async def test_a_dropped_stream_resumes_by_itself(platform: RunningApi, llm: FakeOpenAI) -> None:
    llm.enqueue(Reply("alpha beta gamma delta epsilon zeta eta theta", chunk_delay_s=0.05))
    async with CuttingProxy(platform.base_url, cut_after=b"message.delta", occurrences=2) as proxy:
        token = await platform.token("sdk-drop")
        async with AsyncKeelClient(base_url=proxy.url, token=token) as keel:
            stream = keel.chat_stream("greek")
            events = [e async for e in stream]
    assert proxy.cuts == 1 and proxy.connections >= 2
    assert isinstance(events[-1], TurnCompleted)
    text = "".join(e.text for e in events if isinstance(e, MessageDelta))
    assert text == "alpha beta gamma delta epsilon zeta eta theta"
    ids = [e.event_id for e in events if e.event_id]
    assert len(ids) == len(set(ids))  # no event twice


async def test_kb_upload_with_progress_then_query(client_for: ClientFactory, tmp_path: Path) -> None:
    keel = await client_for("sdk-kb")
    doc = tmp_path / "handbook.txt"
    doc.write_text("The VPN password rotates every ninety days. " * 200)
    progress: list[UploadProgress] = []
    kb_id = await keel.kb.personal_id()
    accepted = await keel.kb.upload(kb_id, doc, on_progress=progress.append)
    assert progress and progress[-1].sent_bytes == progress[-1].total_bytes == doc.stat().st_size
    assert [p.sent_bytes for p in progress] == sorted(p.sent_bytes for p in progress)
    ready = await keel.kb.documents.wait(kb_id, accepted.document_id, timeout_s=120)
    assert ready.status == "ready" and ready.filename == "handbook.txt"
    listed = await keel.kb.documents.list(kb_id)
    assert [d.id for d in listed.documents] == [accepted.document_id]
    hits = await keel.kb.query(kb_id, "how often does the VPN password rotate?", top_k=2)
    assert hits.results and "ninety days" in hits.results[0].text

    other = tmp_path / "travel.md"
    other.write_text("# Travel\n\nTrains are booked through the travel desk.\n")
    batch = await keel.kb.ingest(kb_id, [other], on_progress=progress.append)
    assert len(batch.document_ids) == 1 and progress[-1].filename == "travel.md"
    for _ in range(240):
        status = await keel.kb.ingestion(batch.batch_id)
        if status.done:
            break
        await asyncio.sleep(0.5)
    assert status.batch_id == batch.batch_id and (status.total, status.ready) == (1, 1)


async def test_api_key_create_use_rotate_revoke(platform: RunningApi, client_for: ClientFactory) -> None:
    keel = await client_for("sdk-keys")
    created = await keel.api_keys.create("nightly", ["use_agent"])
    assert created.key.startswith("keel_") and created.scopes == ["use_agent"]
    async with AsyncKeelClient(base_url=platform.base_url, api_key=created.key) as scripted:
        assert (await scripted.chat("from a script")).message.content == "Echo: from a script"
        with pytest.raises(PermissionDeniedError) as caught:
            await scripted.kb.list()
        assert caught.value.code == "insufficient_scope"
    assert [k.id for k in (await keel.api_keys.list()).api_keys] == [created.id]
    rotated = await keel.api_keys.rotate(created.id)
    assert rotated.id == created.id and rotated.key != created.key
    async with AsyncKeelClient(base_url=platform.base_url, api_key=created.key) as old:
        with pytest.raises(AuthenticationError):
            await old.sessions.list()
    await keel.api_keys.revoke(created.id)
    async with AsyncKeelClient(base_url=platform.base_url, api_key=rotated.key) as revoked:
        with pytest.raises(AuthenticationError):
            await revoked.sessions.list()


async def test_admin_calls_as_org_admin_and_refused_for_a_user(client_for: ClientFactory) -> None:
    admin = await client_for("sdk-admin", roles=["OrgAdmin"])
    user = await client_for("sdk-plain")
    assert (await admin.admin.tools.list()).model_dump() is not None
    chain = await admin.admin.audit.verify()
    assert chain.ok
    budget = await admin.admin.budgets.set("sdk-plain", daily_tokens=1000, monthly_tokens=None)
    assert budget.user_id == "sdk-plain"
    await admin.admin.budgets.clear("sdk-plain")
    assert (await admin.admin.failed_operations.list()).model_dump() is not None
    org_kb = await admin.admin.knowledge_bases.create("Policies", "company policies")
    assert org_kb.name == "Policies"
    events = await admin.admin.audit.list(event="admin.budget_set", limit=5)
    assert events.events and events.events[0].event == "admin.budget_set"
    with pytest.raises(PermissionDeniedError) as caught:
        await user.admin.tools.list()
    assert caught.value.status == 403 and caught.value.code == "forbidden" and caught.value.request_id
    with pytest.raises(PermissionDeniedError):
        await user.admin.budgets.set("sdk-plain", daily_tokens=1)
