"""Getting the answer into Slack whatever Slack does: rate limits (HTTP 429 with
``Retry-After``), a stream that expires mid-answer, streaming refused, an answer longer
than one message, refusals no retry fixes, and model text that tries to ping everyone.
Real API, workers, Temporal, Postgres and Redis; Slack's Web API is the local FakeSlack
(which records every call with the time it answered it), the model the fake OpenAI
server (``chunk_delay_s`` streams a reply slowly)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from temporalio.client import Client

from infra.settings import Settings
from tests.conftest import running_platform
from tests.fakes.openai_server import FakeOpenAI, Reply, Truncate
from tests.fakes.slack_api import POSTING_METHODS, Call, FakeSlack, Message
from tests.slack.conftest import SlackBot
from tests.slack.test_slack_turns import ALICE_DM, answers
from tests.slack.test_slack_turns import alice as dm_alice

pytestmark = pytest.mark.slow

ALICE, CHANNEL = "UALICE", "CGEN"
ZWSP = "\u200b"
#: ~40 words: streamed at 0.05 s a word it takes ~2 s, long enough for many appends.
ANSWER = (
    "The quarterly report is due on Friday. Finance needs the revenue figures by Wednesday, "
    "the regional leads send their commentary on Thursday morning, and the final review "
    "meeting starts at three in the afternoon so that everything can be signed off in time."
)


def displayed(msg: Message) -> str:
    """What Slack shows of a bot message: its ``markdown`` blocks when it has any (a
    message rewritten with ``chat.update``), else its (streamed) text."""
    parts = [str(b.get("text", "")) for b in msg.blocks or [] if b.get("type") == "markdown"]
    return "\n".join(parts) if parts else msg.text


def has_footer(msg: Message) -> bool:
    return any(b.get("type") == "context" for b in msg.blocks or [])


def done(slack: FakeSlack, channel: str, thread_ts: str) -> bool:
    msgs = answers(slack, channel, thread_ts)
    return bool(msgs) and not any(m.streaming for m in msgs) and has_footer(msgs[-1])


async def finished(slack: FakeSlack, channel: str, thread_ts: str, timeout_s: float = 40) -> list[Message]:
    await slack.wait_for_async(lambda s: done(s, channel, thread_ts), timeout_s=timeout_s)
    return answers(slack, channel, thread_ts)


async def _alice(bot: SlackBot) -> None:
    bot.slack.add_user(ALICE, email="alice@example.com", real_name="Alice")
    bot.slack.add_channel(CHANNEL, name="general", members=[ALICE, bot.slack.bot_user_id])
    await bot.keel_user("alice", "alice@example.com")


def _posts(slack: FakeSlack, channel: str) -> list[Call]:
    return [c for c in slack.calls if c.method in POSTING_METHODS and c.params.get("channel") == channel]


def _whole(msgs: list[Message]) -> str:
    return " ".join(displayed(m) for m in msgs)


async def test_a_rate_limited_append_is_retried_after_retry_after_and_nothing_is_posted_twice(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await _alice(bot)
    llm.enqueue(Reply(ANSWER, chunk_delay_s=0.05))
    bot.slack.fail_next("chat.appendStream", "ratelimited")  # HTTP 429, Retry-After: 1
    _, ts = await bot.mention(ALICE, CHANNEL, "when is the report due?")
    msgs = await finished(bot.slack, CHANNEL, ts)

    assert len(msgs) == 1, [displayed(m) for m in msgs]
    assert displayed(msgs[0]).strip() == ANSWER
    assert len(bot.slack.calls_to("chat.startStream")) == 1, "the retry went on with the same stream"
    limited = [c for c in bot.slack.calls if c.http_status == 429]
    assert len(limited) == 1 and limited[0].retry_after_s == 1
    after = [c for c in bot.slack.calls if c.at > limited[0].at]
    assert after, "nothing was called after the 429"
    assert min(c.at for c in after) - limited[0].at >= 1.0, bot.slack.summary()


async def test_a_channel_under_slacks_rate_limit_still_gets_the_whole_answer_once(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await _alice(bot)
    # Slack allows 3 posts a second here; the bot paces at 20 (the tests' KEEL_SLACK_POST_INTERVAL_S).
    # Retry-After 2 s is longer than the relay's own first retry (1 s): it must be what is obeyed.
    bot.slack.rate_limit(CHANNEL, per_s=3, burst=1, retry_after_s=2)
    llm.enqueue(Reply(ANSWER, chunk_delay_s=0.05))
    _, ts = await bot.mention(ALICE, CHANNEL, "when is the report due?")
    msgs = await finished(bot.slack, CHANNEL, ts, timeout_s=60)

    assert len(msgs) == 1 and displayed(msgs[0]).strip() == ANSWER
    posts = _posts(bot.slack, CHANNEL)
    assert sum(c.method == "chat.startStream" and c.ok for c in posts) == 1
    limited = [c for c in posts if c.rate_limited]
    assert limited, "the limit was never hit: the test proves nothing"
    for hit in limited:  # after each 429, nothing was posted before Retry-After
        assert hit.retry_after_s == 2
        later = [c for c in posts if c.at > hit.at]
        if later:
            assert later[0].at - hit.at >= 2.0, bot.slack.summary()


async def test_a_stream_that_expires_mid_answer_goes_on_with_chat_update(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    await _alice(bot)
    llm.enqueue(Reply(ANSWER, chunk_delay_s=0.1))  # ~4 s
    _, ts = await bot.mention(ALICE, CHANNEL, "when is the report due?")
    await bot.slack.wait_for_async(
        lambda s: any(m.stream and len(m.text) > 20 for m in answers(s, CHANNEL, ts)), timeout_s=30
    )
    stream = answers(bot.slack, CHANNEL, ts)[0]
    bot.slack.expire_stream(stream.ts)  # Slack ended it: append/stop now answer not_in_streaming_state
    msgs = await finished(bot.slack, CHANNEL, ts)

    assert [m.ts for m in msgs] == [stream.ts], "the same message goes on; nothing new is posted"
    assert displayed(msgs[0]).strip() == ANSWER
    assert len(stream.text) < len(ANSWER), "the stream expired before the answer was complete"
    gone = [c for c in bot.slack.calls if c.error == "message_not_in_streaming_state"]
    assert gone, "the relay never noticed the expiry"
    updates = [c for c in bot.slack.calls_to("chat.update") if c.params.get("ts") == stream.ts]
    assert updates and all(c.ok for c in updates) and updates[0].at > gone[0].at
    assert not [c for c in bot.slack.calls if c.method == "chat.appendStream" and c.at > gone[-1].at]


async def test_streaming_refused_falls_back_to_post_and_update(bot: SlackBot, llm: FakeOpenAI) -> None:
    await _alice(bot)
    bot.slack.fail_next("chat.startStream", "not_allowed_token_type")
    llm.enqueue(Reply(ANSWER, chunk_delay_s=0.05))
    _, ts = await bot.mention(ALICE, CHANNEL, "when is the report due?")
    msgs = await finished(bot.slack, CHANNEL, ts)

    assert len(msgs) == 1 and not msgs[0].stream
    assert displayed(msgs[0]).strip() == ANSWER
    assert msgs[0].edits, "the answer grew by chat.update"
    assert msgs[0].unfurl_links is False and msgs[0].unfurl_media is False
    assert len(bot.slack.calls_to("chat.startStream")) == 1, "once refused, the turn does not stream"
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert all(c.ok for c in bot.slack.calls_to("chat.update"))


@pytest.fixture
async def short_bot(
    slack_settings: Settings, slack: FakeSlack, temporal_client: Client
) -> AsyncIterator[SlackBot]:
    settings = slack_settings.model_copy(update={"slack_message_max_chars": 600})
    async with running_platform(settings, temporal_client) as running:
        yield SlackBot(api=running, slack=slack, settings=settings)


def _long_answer() -> str:
    sentences = [
        f"Step {n}: check the {word} ledger, reconcile it with the bank statement and note any gap."
        for n, word in enumerate(["travel", "payroll", "supplier", "tax", "asset", "petty-cash"] * 4, 1)
    ]
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    return "\n\n".join(paragraphs)


async def test_a_long_answer_is_split_across_messages_within_the_limit(
    short_bot: SlackBot, llm: FakeOpenAI
) -> None:
    bot = short_bot
    await _alice(bot)
    text = _long_answer()
    assert 1900 <= len(text) <= 2400
    llm.enqueue(Reply(text, chunk_delay_s=0.005))
    _, ts = await bot.mention(ALICE, CHANNEL, "how do I close the books?")
    msgs = await finished(bot.slack, CHANNEL, ts)

    assert len(msgs) >= 4, [len(displayed(m)) for m in msgs]
    assert all(len(displayed(m)) <= 600 for m in msgs), [len(displayed(m)) for m in msgs]
    assert _whole(msgs).split() == text.split(), "concatenated, the messages are the whole answer"
    assert [has_footer(m) for m in msgs] == [False] * (len(msgs) - 1) + [True], "only the last has the footer"
    refused = [c for c in bot.slack.calls if not c.ok]
    assert not refused, [(c.method, c.error, c.response) for c in refused]
    for call in bot.slack.calls:  # what was sent at once fits too (streams: markdown_text)
        assert len(str(call.params.get("markdown_text", ""))) <= 600


@pytest.fixture
def captured_warnings() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog events (the activities' log) and stdlib records (the workflow's log), as dicts."""
    with structlog.testing.capture_logs() as logs:

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                logs.append({"event": record.getMessage(), "log_level": record.levelname.lower()})

        handler = Keep(level=logging.WARNING)
        workflow_log = logging.getLogger("temporalio.workflow")
        workflow_log.addHandler(handler)
        try:
            yield logs
        finally:
            workflow_log.removeHandler(handler)


async def test_a_refusal_no_retry_fixes_is_told_to_the_person_and_logged(
    bot: SlackBot, llm: FakeOpenAI, captured_warnings: list[MutableMapping[str, Any]]
) -> None:
    await _alice(bot)
    bot.slack.fail_next("chat.startStream", "channel_not_found", times=3)
    llm.enqueue(Reply("This answer cannot be posted."))
    _, ts = await bot.mention(ALICE, CHANNEL, "anything?")
    await bot.slack.wait_for_async(lambda s: bool(s.ephemerals(CHANNEL, ALICE)), timeout_s=40)

    notice = bot.slack.ephemerals(CHANNEL, ALICE)[0]
    assert "could not post my answer" in notice.text and "channel_not_found" in notice.text
    assert notice.thread_ts == ts, "said in the question's thread"
    assert llm.request_count == 1, "the turn ran; only posting failed"
    assert not answers(bot.slack, CHANNEL, ts)
    # A permanent refusal is not retried, nor papered over by posting another way.
    assert len(bot.slack.calls_to("chat.startStream")) == 1
    assert not bot.slack.calls_to("chat.postMessage")

    # The fallback path: streaming refused, then chat.postMessage refused for good.
    bot.slack.reset()
    await _alice(bot)
    bot.slack.fail_next("chat.startStream", "not_allowed_token_type")
    bot.slack.fail_next("chat.postMessage", "channel_not_found", times=3)
    llm.enqueue(Reply("Neither can this one."))
    _, ts2 = await bot.mention(ALICE, CHANNEL, "and now?")
    await bot.slack.wait_for_async(lambda s: bool(s.ephemerals(CHANNEL, ALICE)), timeout_s=40)
    notice = bot.slack.ephemerals(CHANNEL, ALICE)[0]
    assert "could not post my answer" in notice.text and notice.thread_ts == ts2
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert not answers(bot.slack, CHANNEL, ts2)

    warnings = [e for e in captured_warnings if e.get("log_level") == "warning"]
    assert any(
        e["event"] == "slack.call_failed" and e.get("error") == "channel_not_found" for e in warnings
    ), warnings
    assert any("slack reply failed" in str(e["event"]) for e in warnings), warnings


async def test_mentions_in_model_text_never_reach_slack_as_mentions(bot: SlackBot, llm: FakeOpenAI) -> None:
    await _alice(bot)
    raw = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<!subteam^S0123|ops>", "<#C999>")
    reply = f"Heads up {raw[0]} and {raw[1]} {raw[2]}: ask {raw[3]} or {raw[4]} in {raw[5]} today."
    for streaming in (True, False):
        if not streaming:
            bot.slack.fail_next("chat.startStream", "not_allowed_token_type")
        before = len(bot.slack.calls)
        llm.enqueue(Reply(reply, chunk_delay_s=0.02))
        _, ts = await bot.mention(ALICE, CHANNEL, "repeat after me")
        msgs = await finished(bot.slack, CHANNEL, ts)
        sent = json.dumps([c.params for c in bot.slack.calls[before:]], ensure_ascii=False)
        shown = json.dumps([(m.text, m.blocks) for m in msgs], ensure_ascii=False)
        for token in raw:
            assert token not in sent and token not in shown, (token, streaming)
        assert f"<{ZWSP}!channel>" in displayed(msgs[-1]) and f"<{ZWSP}@U123>" in displayed(msgs[-1])
        assert displayed(msgs[-1]).replace(ZWSP, "").strip() == reply


async def test_a_retried_model_call_that_answers_shorter_leaves_no_stale_message(
    short_bot: SlackBot, llm: FakeOpenAI
) -> None:
    """The model's stream breaks after three messages' worth of text; the retried call
    answers in one line. Slack ends up showing that line, and no piece of the broken text."""
    bot = short_bot
    await _alice(bot)
    long_text = _long_answer()
    llm.enqueue(
        Truncate(long_text, after_chunks=len(long_text.split()) - 5, chunk_delay_s=0.005),
        Reply("Short answer after the retry."),
    )
    _, ts = await bot.mention(ALICE, CHANNEL, "how do I close the books?")
    await bot.slack.wait_for_async(lambda s: len(answers(s, CHANNEL, ts)) >= 3, timeout_s=30)
    msgs = await finished(bot.slack, CHANNEL, ts)
    assert llm.request_count == 2
    assert [displayed(m).strip() for m in msgs] == ["Short answer after the retry."]
    assert has_footer(msgs[0])
    gone = bot.slack.deleted(CHANNEL)
    assert len(gone) >= 2 and all("ledger" in displayed(m) for m in gone), "the broken pieces were removed"
    assert not [m for m in bot.slack.messages(CHANNEL) if m.streaming], "no stream is left open"


async def test_a_turn_that_cannot_be_prepared_tells_the_person_instead_of_going_quiet(
    bot: SlackBot, llm: FakeOpenAI
) -> None:
    """``users.info`` refusing permanently (a token without ``users:read``) fails
    ``prepare_turn`` at once; the person still hears back, ephemerally."""
    await dm_alice(bot)
    bot.slack.fail_next("users.info", "missing_scope", times=5)
    await bot.dm(ALICE, ALICE_DM, "are you there?")
    await bot.slack.wait_for_async(lambda s: bool(s.ephemerals(ALICE_DM, ALICE)), timeout_s=30)
    assert "could not take this message" in bot.slack.ephemerals(ALICE_DM, ALICE)[0].text
    assert llm.request_count == 0
