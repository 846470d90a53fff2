"""Tests for the fake Slack Web API, driven through the real slack_sdk ``AsyncWebClient``
(and slack-bolt for the sender-side payloads); raw HTTP only where a client would hide
what is on the wire."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import (
    FakeSlack,
    app_mention_event,
    block_actions_form,
    event_callback,
    message_event,
    sign_request,
    slash_command_form,
    url_verification,
)

TOKEN = "xoxb-test"
SECRET = "test-signing-secret"
TS_RE = re.compile(r"^\d{10}\.\d{6}$")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack(server: FakeSlack) -> Iterator[FakeSlack]:
    """A fresh workspace: Ada (DM D1), Bob, public channel C1 with the bot, C2 without it."""
    server.reset()
    server.add_user("U1", email="ada@example.com", name="ada", real_name="Ada Lovelace")
    server.add_user("U2", email="bob@example.com", name="bob")
    server.add_channel("D1", is_im=True, user="U1")
    server.add_channel("C1", name="general", members=["U1", "U2", "UBOT"])
    server.add_channel("C2", name="random", members=["U1"])
    yield server
    server.reset()


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[], timeout=10)


async def slack_error(coro: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await coro
    return info.value


# --------------------------------------------------------------------------- #
# auth, unknown methods, parameter encodings
# --------------------------------------------------------------------------- #


async def test_auth_test_names_the_bot(client: AsyncWebClient) -> None:
    resp = await client.auth_test()

    assert resp["ok"] is True
    assert (resp["team_id"], resp["user_id"], resp["bot_id"]) == ("T0KEEL", "UBOT", "BBOT")
    assert resp["url"].startswith("https://") and resp["team"] and resp["user"] == "keel"


async def test_wrong_token_is_invalid_auth_and_no_token_not_authed(slack: FakeSlack) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url, retry_handlers=[])
    err = await slack_error(bad.auth_test())
    assert err.response["error"] == "invalid_auth" and err.response.status_code == 200

    async with httpx.AsyncClient() as http:
        resp = await http.post(slack.api_url + "auth.test")
    assert (resp.status_code, resp.json()) == (200, {"ok": False, "error": "not_authed"})


async def test_unknown_method(client: AsyncWebClient, slack: FakeSlack) -> None:
    err = await slack_error(client.api_call("reactions.add", params={"name": "eyes"}))

    assert err.response["error"] == "unknown_method"
    assert slack.calls[-1].method == "reactions.add" and not slack.calls[-1].ok


def test_form_and_query_parameters_are_read_like_json(slack: FakeSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    with httpx.Client() as http:
        resp = http.post(
            slack.api_url + "chat.postMessage",
            params={"channel": "C1"},
            data={"token": TOKEN, "text": "hi", "blocks": json.dumps(blocks), "unfurl_links": "false"},
        )

    assert resp.json()["ok"] is True
    (msg,) = slack.messages("C1")
    assert (msg.text, msg.blocks, msg.unfurl_links) == ("hi", blocks, False)
    assert slack.calls[-1].params["channel"] == "C1"


async def test_calls_record_params_headers_and_time(client: AsyncWebClient, slack: FakeSlack) -> None:
    before = time.monotonic()
    await client.chat_postMessage(channel="C1", text="hello")

    (call,) = slack.calls_to("chat.postMessage")
    assert call.params == {"channel": "C1", "text": "hello"}
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["content-type"].startswith("application/json")
    assert before <= call.at <= time.monotonic() and call.http_status == 200


async def test_fail_next_answers_the_scripted_error_then_recovers(
    client: AsyncWebClient, slack: FakeSlack
) -> None:
    slack.fail_next("chat.postMessage", "fatal_error", times=2)

    for _ in range(2):
        assert (await slack_error(client.chat_postMessage(channel="C1", text="x"))).response[
            "error"
        ] == "fatal_error"
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"] is True
    assert [c.error for c in slack.calls_to("chat.postMessage")] == ["fatal_error", "fatal_error", None]


# --------------------------------------------------------------------------- #
# users and conversations
# --------------------------------------------------------------------------- #


async def test_users_info_and_lookup_by_email(client: AsyncWebClient, slack: FakeSlack) -> None:
    slack.add_user("U3", email="guest@example.com", is_restricted=True)

    user = (await client.users_info(user="U1"))["user"]
    assert user["id"] == "U1" and user["team_id"] == "T0KEEL"
    assert (user["name"], user["real_name"], user["profile"]["email"]) == (
        "ada",
        "Ada Lovelace",
        "ada@example.com",
    )
    assert user["profile"]["real_name"] == "Ada Lovelace" and user["profile"]["display_name"] == "ada"
    assert (user["deleted"], user["is_bot"], user["is_app_user"]) == (False, False, False)

    found = (await client.users_lookupByEmail(email="GUEST@example.com"))["user"]
    assert found["id"] == "U3" and found["is_restricted"] is True and found["is_ultra_restricted"] is False

    assert (await slack_error(client.users_info(user="U404"))).response["error"] == "user_not_found"
    err = await slack_error(client.users_lookupByEmail(email="nobody@example.com"))
    assert err.response["error"] == "users_not_found"


async def test_the_bot_is_a_user(client: AsyncWebClient) -> None:
    bot = (await client.users_info(user="UBOT"))["user"]

    assert bot["is_bot"] is True and bot["profile"]["bot_id"] == "BBOT"


async def test_conversations_info(client: AsyncWebClient, slack: FakeSlack) -> None:
    slack.add_channel("G1", name="secret", members=["U1", "UBOT"], is_private=True)
    slack.add_channel("G2", name="hidden", members=["U1"], is_private=True)

    im = (await client.conversations_info(channel="D1"))["channel"]
    assert (im["is_im"], im["user"], im["is_channel"], im["num_members"]) == (True, "U1", False, 2)
    public = (await client.conversations_info(channel="C1"))["channel"]
    assert (public["name"], public["is_channel"], public["is_private"], public["is_im"]) == (
        "general",
        True,
        False,
        False,
    )
    private = (await client.conversations_info(channel="G1"))["channel"]
    assert (private["is_private"], private["is_group"], private["is_channel"], private["is_mpim"]) == (
        True,
        True,
        False,
        False,
    )
    for unknown in ("C404", "G2"):  # a private channel the bot is not in does not exist for it
        err = await slack_error(client.conversations_info(channel=unknown))
        assert err.response["error"] == "channel_not_found"


async def test_conversations_members_paginates(client: AsyncWebClient, slack: FakeSlack) -> None:
    people = [f"U{i:04d}" for i in range(249)] + ["UBOT"]
    slack.add_channel("C9", name="big", members=people)

    pages: list[list[str]] = []
    cursor = ""
    while True:
        resp = await client.conversations_members(channel="C9", limit=100, cursor=cursor or None)
        pages.append(resp["members"])
        cursor = resp["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert [len(p) for p in pages] == [100, 100, 50]
    assert [m for p in pages for m in p] == people
    assert len((await client.conversations_members(channel="C9"))["members"]) == 100  # default limit
    err = await slack_error(client.conversations_members(channel="C9", cursor="bm9wZQ=="))
    assert err.response["error"] == "invalid_cursor"

    slack.set_members("C9", ["U0001", "UBOT"])
    assert (await client.conversations_members(channel="C9"))["members"] == ["U0001", "UBOT"]


# --------------------------------------------------------------------------- #
# chat.postMessage, postEphemeral, update
# --------------------------------------------------------------------------- #


async def test_post_message_stores_what_was_sent(client: AsyncWebClient, slack: FakeSlack) -> None:
    metadata = {"event_type": "keel_answer", "event_payload": {"turn": "t1"}}
    first = await client.chat_postMessage(channel="D1", text="question?")
    reply = await client.chat_postMessage(
        channel="D1",
        text="answer",
        blocks=[{"type": "markdown", "text": "**answer**"}],
        thread_ts=first["ts"],
        unfurl_links=False,
        unfurl_media=False,
        metadata=metadata,
    )

    assert TS_RE.match(first["ts"]) and TS_RE.match(reply["ts"])
    assert float(reply["ts"]) > float(first["ts"])
    assert reply["channel"] == "D1" and reply["message"]["text"] == "answer"
    assert reply["message"]["thread_ts"] == first["ts"] and reply["message"]["bot_id"] == "BBOT"
    top, threaded = slack.messages("D1")
    assert top.thread_ts is None and top.user == "UBOT"
    assert (threaded.text, threaded.thread_ts, threaded.metadata) == ("answer", first["ts"], metadata)
    assert (threaded.unfurl_links, threaded.unfurl_media, threaded.ephemeral) == (False, False, False)
    assert threaded.blocks == [{"type": "markdown", "text": "**answer**"}]
    assert slack.messages("D1", thread_ts=first["ts"]) == [threaded]


async def test_ts_are_unique_and_increasing(client: AsyncWebClient, slack: FakeSlack) -> None:
    tss = [(await client.chat_postMessage(channel="C1", text=str(i)))["ts"] for i in range(20)]

    assert len(set(tss)) == 20 and tss == sorted(tss, key=float)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C1"}, "no_text"),
        ({"channel": "C1", "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": "C404", "text": "x"}, "channel_not_found"),
        ({"channel": "C2", "text": "x"}, "not_in_channel"),
    ],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_post_message_errors(client: AsyncWebClient, slack: FakeSlack, kwargs: Any, error: str) -> None:
    err = await slack_error(client.chat_postMessage(**kwargs))

    assert err.response["error"] == error and err.response.status_code == 200
    assert slack.messages(kwargs["channel"]) == []


def section(n: int) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": "s" * n}}


async def test_block_limits(client: AsyncWebClient, slack: FakeSlack) -> None:
    ok = [section(3_000), {"type": "markdown", "text": "m" * 12_000}] + [{"type": "divider"}] * 48
    assert (await client.chat_postMessage(channel="C1", text="fits", blocks=ok))["ok"] is True

    too_many = [{"type": "divider"}] * 51
    err = await slack_error(client.chat_postMessage(channel="C1", text="x", blocks=too_many))
    assert err.response["error"] == "invalid_blocks"
    assert (
        "no more than 50 items allowed [json-pointer:/blocks]"
        in err.response["response_metadata"]["messages"][0]
    )

    err = await slack_error(client.chat_postMessage(channel="C1", text="x", blocks=[section(3_001)]))
    assert err.response["error"] == "invalid_blocks"
    assert err.response["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]

    markdown = [{"type": "divider"}, {"type": "markdown", "text": "m" * 12_001}]
    err = await slack_error(client.chat_postMessage(channel="C1", text="x", blocks=markdown))
    assert err.response["error"] == "invalid_blocks"
    assert err.response["response_metadata"]["messages"] == [
        "[ERROR] must be less than 12001 characters [json-pointer:/blocks/1/text]"
    ]
    assert len(slack.messages("C1")) == 1


async def test_blocks_that_are_not_json_are_invalid_blocks_format(slack: FakeSlack) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            slack.api_url + "chat.postMessage",
            headers={"Authorization": f"Bearer {TOKEN}"},
            data={"channel": "C1", "text": "x", "blocks": "[{nope"},
        )

    assert resp.json() == {"ok": False, "error": "invalid_blocks_format"}


async def test_post_ephemeral_is_kept_apart(client: AsyncWebClient, slack: FakeSlack) -> None:
    resp = await client.chat_postEphemeral(
        channel="C1", user="U2", text="only you", thread_ts="1700000000.000100"
    )

    assert TS_RE.match(resp["message_ts"])
    assert slack.messages("C1") == []
    (eph,) = slack.ephemerals("C1")
    assert (eph.text, eph.recipient, eph.ephemeral, eph.thread_ts) == (
        "only you",
        "U2",
        True,
        "1700000000.000100",
    )
    assert slack.ephemerals("C1", user="U1") == []
    err = await slack_error(client.chat_postEphemeral(channel="C1", user="U404", text="x"))
    assert err.response["error"] == "user_not_found"
    slack.add_user("U5")
    err = await slack_error(client.chat_postEphemeral(channel="C1", user="U5", text="x"))
    assert err.response["error"] == "user_not_in_channel"


async def test_update_keeps_the_edit_history(client: AsyncWebClient, slack: FakeSlack) -> None:
    posted = await client.chat_postMessage(channel="C1", text="working…")
    resp = await client.chat_update(
        channel="C1", ts=posted["ts"], text="done", blocks=[{"type": "markdown", "text": "**done**"}]
    )

    assert (resp["ts"], resp["channel"], resp["text"]) == (posted["ts"], "C1", "done")
    (msg,) = slack.messages("C1")
    assert (msg.text, msg.blocks) == ("done", [{"type": "markdown", "text": "**done**"}])
    assert [(e.text, e.blocks) for e in msg.edits] == [("working…", None)]

    err = await slack_error(client.chat_update(channel="C1", ts="1700000000.000100", text="x"))
    assert err.response["error"] == "message_not_found"
    err = await slack_error(
        client.chat_update(channel="C1", ts=posted["ts"], text="x", blocks=[section(3_001)])
    )
    assert err.response["error"] == "invalid_blocks"
    assert slack.messages("C1")[0].text == "done"


async def test_delete_removes_a_bot_message(client: AsyncWebClient, slack: FakeSlack) -> None:
    posted = await client.chat_postMessage(channel="C1", text="gone soon")
    resp = await client.chat_delete(channel="C1", ts=posted["ts"])
    assert (resp["channel"], resp["ts"]) == ("C1", posted["ts"])
    assert slack.messages("C1") == [] and [m.text for m in slack.deleted("C1")] == ["gone soon"]
    err = await slack_error(client.chat_delete(channel="C1", ts=posted["ts"]))
    assert err.response["error"] == "message_not_found"


# --------------------------------------------------------------------------- #
# streams and assistant status
# --------------------------------------------------------------------------- #


async def test_chat_stream_start_append_stop(client: AsyncWebClient, slack: FakeSlack) -> None:
    stream = await client.chat_stream(
        channel="C1",
        thread_ts="1700000000.000100",
        recipient_team_id="T0KEEL",
        recipient_user_id="U1",
        buffer_size=10,
    )
    await stream.append(markdown_text="Hello, ")  # buffered
    assert slack.calls_to("chat.startStream") == []
    await stream.append(markdown_text="world! ")  # flushes: startStream
    await stream.append(markdown_text="More text here.")  # flushes: appendStream
    (live,) = slack.messages("C1", thread_ts="1700000000.000100")
    assert (live.streaming, live.stream, live.text) == (True, True, "Hello, world! More text here.")
    assert (live.recipient_user_id, live.recipient_team_id) == ("U1", "T0KEEL")

    stopped = await stream.stop(markdown_text=" Bye.", blocks=[{"type": "context", "elements": []}])

    assert stopped["ts"] == stream.ts == live.ts
    (msg,) = slack.messages("C1")
    assert (msg.text, msg.streaming, msg.blocks) == (
        "Hello, world! More text here. Bye.",
        False,
        [{"type": "context", "elements": []}],
    )
    assert [c.method for c in slack.calls] == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    err = await slack_error(client.chat_appendStream(channel="C1", ts=msg.ts, markdown_text="late"))
    assert err.response["error"] == "message_not_in_streaming_state"


async def test_start_stream_arguments(client: AsyncWebClient, slack: FakeSlack) -> None:
    err = await slack_error(client.chat_startStream(channel="C1", thread_ts="1700000000.000100"))
    assert err.response["error"] == "invalid_arguments"
    assert "recipient_user_id" in err.response["response_metadata"]["messages"][0]

    err = await slack_error(client.chat_startStream(channel="D1", thread_ts=""))
    assert err.response["error"] == "invalid_arguments"

    long = "x" * 12_001
    err = await slack_error(client.chat_startStream(channel="D1", thread_ts="1.000001", markdown_text=long))
    assert err.response["error"] == "invalid_arguments"
    assert "12001" in err.response["response_metadata"]["messages"][0]

    started = await client.chat_startStream(channel="D1", thread_ts="1.000001", markdown_text="in a DM")
    assert started["channel"] == "D1" and TS_RE.match(started["ts"])


async def test_expired_stream_refuses_append_and_stop_but_update_works(
    client: AsyncWebClient, slack: FakeSlack
) -> None:
    stream = await client.chat_stream(channel="D1", thread_ts="1700000000.000100", buffer_size=1)
    await stream.append(markdown_text="partial answer")
    assert stream.ts is not None

    slack.expire_stream(stream.ts)

    err = await slack_error(stream.append(markdown_text=" more"))
    assert err.response["error"] == "message_not_in_streaming_state"
    err = await slack_error(client.chat_stopStream(channel="D1", ts=stream.ts, markdown_text="end"))
    assert err.response["error"] == "message_not_in_streaming_state"
    await client.chat_update(channel="D1", ts=stream.ts, text="partial answer more end")
    (msg,) = slack.messages("D1")
    assert (msg.text, msg.expired, msg.streaming) == ("partial answer more end", True, False)


async def test_assistant_thread_status(client: AsyncWebClient, slack: FakeSlack) -> None:
    await client.assistant_threads_setStatus(
        channel_id="D1",
        thread_ts="1.000001",
        status="is searching…",
        loading_messages=["Reading", "Thinking"],
    )
    assert slack.assistant_status("D1", "1.000001") == "is searching…"
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.000001", status="")

    assert slack.assistant_status("D1", "1.000001") == ""
    assert slack.assistant_status("D1", "2.000002") is None
    assert slack.assistant_statuses[0].loading_messages == ["Reading", "Thinking"]
    err = await slack_error(
        client.assistant_threads_setStatus(channel_id="C404", thread_ts="1.0", status="x")
    )
    assert err.response["error"] == "channel_not_found"


# --------------------------------------------------------------------------- #
# rate limits
# --------------------------------------------------------------------------- #


async def test_rate_limit_answers_429_with_retry_after(client: AsyncWebClient, slack: FakeSlack) -> None:
    slack.rate_limit("C1", per_s=0.5, burst=2, retry_after_s=3)

    for i in range(2):
        await client.chat_postMessage(channel="C1", text=str(i))
    err = await slack_error(client.chat_postMessage(channel="C1", text="third"))

    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "3"
    assert err.response["error"] == "ratelimited"
    assert [c.rate_limited for c in slack.calls] == [False, False, True]
    assert slack.calls[-1].http_status == 429 and len(slack.messages("C1")) == 2
    await client.chat_postMessage(channel="D1", text="another channel is not limited")
    await client.users_info(user="U1")  # nor are other methods


async def test_rate_limit_for_every_channel_refills(client: AsyncWebClient, slack: FakeSlack) -> None:
    slack.rate_limit(None, per_s=20, burst=1)

    await client.chat_postMessage(channel="C1", text="a")
    await client.chat_postMessage(channel="D1", text="b")  # its own bucket
    err = await slack_error(client.chat_update(channel="C1", ts=slack.messages("C1")[0].ts, text="c"))
    assert err.response.status_code == 429 and err.response.headers["Retry-After"] == "1"
    await asyncio.sleep(0.1)
    await client.chat_update(channel="C1", ts=slack.messages("C1")[0].ts, text="c")

    slack.rate_limit(None, per_s=float("inf"))
    for i in range(5):
        await client.chat_postMessage(channel="C1", text=str(i))


# --------------------------------------------------------------------------- #
# files
# --------------------------------------------------------------------------- #


async def test_files_info_and_private_download(client: AsyncWebClient, slack: FakeSlack) -> None:
    added = slack.add_file(
        "F123",
        name="report.pdf",
        content=b"%PDF-1.4 fake",
        mimetype="application/pdf",
        filetype="pdf",
        user="U1",
        channels=["D1"],
    )

    file = (await client.files_info(file="F123"))["file"]
    assert file == added
    assert (file["name"], file["mimetype"], file["filetype"], file["size"], file["user"]) == (
        "report.pdf",
        "application/pdf",
        "pdf",
        13,
        "U1",
    )
    assert file["url_private_download"] == f"{slack.url}/files-pri/T0KEEL-F123/download/report.pdf"
    assert file["ims"] == ["D1"]
    assert (await slack_error(client.files_info(file="F404"))).response["error"] == "file_not_found"

    async with httpx.AsyncClient() as http:
        good = await http.get(file["url_private_download"], headers={"Authorization": f"Bearer {TOKEN}"})
        bare = await http.get(file["url_private_download"])
        wrong = await http.get(file["url_private"], headers={"Authorization": "Bearer xoxb-other"})

    assert (good.status_code, good.content, good.headers["content-type"]) == (
        200,
        b"%PDF-1.4 fake",
        "application/pdf",
    )
    for page in (bare, wrong):
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "sign in" in page.text
    assert [(d.file_id, d.authorization, d.served) for d in slack.file_downloads] == [
        ("F123", f"Bearer {TOKEN}", True),
        ("F123", None, False),
        ("F123", "Bearer xoxb-other", False),
    ]


# --------------------------------------------------------------------------- #
# wait_for
# --------------------------------------------------------------------------- #


async def test_wait_for_and_its_timeout_summary(client: AsyncWebClient, slack: FakeSlack) -> None:
    await client.chat_postMessage(channel="C1", text="x")
    slack.wait_for(lambda s: s.messages("C1")[0].text == "x", timeout_s=1)
    await slack.wait_for_async(lambda s: len(s.calls) == 1, timeout_s=1)

    with pytest.raises(AssertionError, match=r"chat\.postMessage C1 -> ok"):
        slack.wait_for(lambda s: s.messages("C9")[0] is not None, timeout_s=0.1)


# --------------------------------------------------------------------------- #
# what Slack sends to an app
# --------------------------------------------------------------------------- #


def test_sign_request_is_accepted_by_slack_sdk() -> None:
    body = json.dumps(
        event_callback(app_mention_event("U1", "C1", "<@UBOT> hi", "1.000001"), team_id="T0KEEL")
    )
    verifier = SignatureVerifier(SECRET)

    headers = sign_request(body.encode(), SECRET)
    assert verifier.is_valid_request(body.encode(), headers)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body.replace("hi", "ho").encode(), headers)
    assert not verifier.is_valid_request(body.encode(), sign_request(body.encode(), "another-secret"))
    stale = sign_request(body.encode(), SECRET, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body.encode(), stale)


def test_payload_shapes() -> None:
    event = message_event(
        "U1", "D1", "see file", "2.000002", thread_ts="1.000001", subtype="file_share", files=[{"id": "F1"}]
    )
    envelope = event_callback(event, team_id="T0KEEL", event_id="Ev1", event_time=1700000000)
    assert envelope["type"] == "event_callback" and envelope["event_id"] == "Ev1"
    assert envelope["authorizations"][0]["user_id"] == "UBOT" and envelope["api_app_id"] == "A0KEEL"
    assert (event["channel_type"], event["subtype"], event["files"], event["thread_ts"]) == (
        "im",
        "file_share",
        [{"id": "F1"}],
        "1.000001",
    )
    assert (
        event_callback(event, team_id="T0KEEL")["event_id"]
        != event_callback(event, team_id="T0KEEL")["event_id"]
    )
    assert url_verification("abc") == {
        "token": url_verification("x")["token"],
        "challenge": "abc",
        "type": "url_verification",
    }

    form = parse_qs(
        slash_command_form(
            text="ask hi",
            user_id="U1",
            channel_id="C1",
            team_id="T0KEEL",
            response_url="http://r",
            trigger_id="t1",
        ).decode()
    )
    assert {k: v[0] for k, v in form.items() if k in {"command", "text", "user_id", "response_url"}} == {
        "command": "/keel",
        "text": "ask hi",
        "user_id": "U1",
        "response_url": "http://r",
    }

    actions = parse_qs(
        block_actions_form("U1", "T0KEEL", "C1", "3.000003", "approve", "ap-1", "http://r").decode()
    )
    payload = json.loads(actions["payload"][0])
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U1"
    assert payload["container"]["message_ts"] == "3.000003" and payload["channel"]["id"] == "C1"
    assert payload["actions"][0]["action_id"] == "approve" and payload["actions"][0]["value"] == "ap-1"


def test_response_url_records_what_the_app_posts(slack: FakeSlack) -> None:
    url = slack.response_url("r1")
    with httpx.Client() as http:
        resp = http.post(url, json={"text": "done", "replace_original": True})

    assert resp.json() == {"ok": True}
    (post,) = slack.responses
    assert (post.key, post.body) == ("r1", {"text": "done", "replace_original": True})


def _bolt(slack: FakeSlack) -> AsyncApp:
    client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=[])
    return AsyncApp(client=client, signing_secret=SECRET)


def signed(body: bytes, content_type: str, *, signed_body: bytes | None = None) -> AsyncBoltRequest:
    """A request as Slack delivers it to bolt (``signed_body``: sign other bytes than sent)."""
    headers: dict[str, str | Sequence[str]] = {"content-type": content_type}
    headers.update(sign_request(body if signed_body is None else signed_body, SECRET))
    return AsyncBoltRequest(body=body.decode(), headers=headers)


async def test_bolt_accepts_a_signed_mention_and_replies_through_the_fake(slack: FakeSlack) -> None:
    app = _bolt(slack)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text=f"you said {event['text']}", thread_ts=event["ts"])

    body = json.dumps(
        event_callback(app_mention_event("U1", "C1", "<@UBOT> hi", "1700000000.000100"), team_id="T0KEEL")
    )
    resp = await app.async_dispatch(signed(body.encode(), "application/json"))

    assert resp.status == 200
    await slack.wait_for_async(lambda s: len(s.messages("C1")) == 1, timeout_s=10)
    (msg,) = slack.messages("C1")
    assert (msg.text, msg.thread_ts) == ("you said <@UBOT> hi", "1700000000.000100")
    assert "auth.test" in [c.method for c in slack.calls]

    tampered = signed(body.replace("hi", "ho").encode(), "application/json", signed_body=body.encode())
    assert (await app.async_dispatch(tampered)).status == 401


async def test_bolt_slash_command_responds_to_the_fakes_response_url(slack: FakeSlack) -> None:
    app = _bolt(slack)

    @app.command("/keel")
    async def on_keel(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        await respond(text=f"on it: {command['text']}")

    body = slash_command_form(
        text="status", user_id="U1", channel_id="C1", team_id="T0KEEL", response_url=slack.response_url("cmd")
    )
    resp = await app.async_dispatch(signed(body, "application/x-www-form-urlencoded"))

    assert resp.status == 200
    await slack.wait_for_async(lambda s: len(s.responses) == 1, timeout_s=10)
    assert slack.responses[0].key == "cmd" and slack.responses[0].body["text"] == "on it: status"


async def test_bolt_reads_block_actions(slack: FakeSlack) -> None:
    app = _bolt(slack)
    clicked: list[tuple[str, str]] = []

    @app.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        clicked.append((body["user"]["id"], action["value"]))

    form = block_actions_form("U1", "T0KEEL", "C1", "3.000003", "approve", "ap-1", slack.response_url())
    resp = await app.async_dispatch(signed(form, "application/x-www-form-urlencoded"))

    assert resp.status == 200
    await slack.wait_for_async(lambda s: bool(clicked), timeout_s=10)
    assert clicked == [("U1", "ap-1")]
