"""Kill the worker at random points while many people chat, then count: every turn must
end exactly once, with its messages, usage rows, audit rows and tool side effects neither
lost nor doubled. Used by ``tests/test_worker_kill_soak.py`` (a short run) and
``bench/worker_kill_soak.py`` (at least 50 kills, figures printed).

The API runs in this process; ``keel worker --queues chat,tools`` runs as a child
process that a seeded killer SIGKILLs a random time after it is ready (its
``/health/ready``), then starts again. Each simulated person keeps one session and sends
turns one after another; every ``tool_every``-th turn makes the model call the counting
MCP server's ``record_event`` (a real side effect, deduplicated by the idempotency key
Keel sends), the others are plain answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from infra.settings import Settings
from tests.conftest import RunningApi, free_port
from tests.fakes.mcp_counter_server import CounterMcpServer
from tests.fakes.openai_server import FakeOpenAI, Reply, ScriptedResponse, ToolCall, ToolCalls
from tests.support.workers import spawn_worker
from workers.api_server import serving_api

TOOL_SERVER = "soakctr"


def soak_model(body: dict[str, Any]) -> ScriptedResponse:
    """The fake model of the soak: ``tool: X`` asks for ``record_event(X)`` once, then
    answers; anything else is echoed, a word at a time."""
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    content = messages[last_user]["content"]
    text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    answered_tool = any(m["role"] == "tool" for m in messages[last_user + 1 :])
    if text.startswith("tool: ") and not answered_tool:
        call = ToolCall(f"{TOOL_SERVER}__record_event", json.dumps({"name": text}))
        return ToolCalls([call], ttft_s=0.05)
    return Reply(f"Echo: {text}", ttft_s=0.05, chunk_delay_s=0.01)


@dataclass
class SoakReport:
    kills: int = 0
    turns_sent: int = 0
    refused: int = 0  # answered 4xx/5xx before a turn started: the client was told to retry
    ghost_turns: int = 0  # refused, yet a turn of that message ran
    answered_completed: int = 0
    answered_other: Counter[str] = field(default_factory=Counter)
    turns_in_db: int = 0
    turns_completed_in_db: int = 0
    lost_turns: int = 0  # sent, with no completed turn in the database
    doubled_user_messages: int = 0
    doubled_answers: int = 0
    missing_answers: int = 0
    usage_rows: int = 0
    usage_rows_expected: int = 0
    audit_session_started: int = 0
    audit_session_started_expected: int = 0
    audit_tool_invoked: int = 0
    audit_tool_invoked_expected: int = 0
    tool_executions: int = 0
    tool_executions_expected: int = 0
    model_requests: int = 0
    wall_s: float = 0.0

    @property
    def exactly_once(self) -> bool:
        return (
            self.lost_turns == 0
            and self.ghost_turns == 0
            and self.doubled_user_messages == 0
            and self.doubled_answers == 0
            and self.missing_answers == 0
            and self.turns_completed_in_db == self.turns_sent - self.refused
            and self.usage_rows == self.usage_rows_expected
            and self.audit_session_started == self.audit_session_started_expected
            and self.audit_tool_invoked == self.audit_tool_invoked_expected
            and self.tool_executions == self.tool_executions_expected
        )

    def lines(self) -> list[str]:
        return [
            f"worker kills (SIGKILL)        {self.kills}",
            f"turns sent / answered ok      {self.turns_sent} / {self.answered_completed}"
            + (f"  other answers: {dict(self.answered_other)}" if self.answered_other else ""),
            f"refused before starting       {self.refused} (of those, ran anyway: {self.ghost_turns})",
            f"turns in db / completed       {self.turns_in_db} / {self.turns_completed_in_db}",
            f"lost turns                    {self.lost_turns}",
            f"doubled user messages         {self.doubled_user_messages}",
            f"answers doubled / missing     {self.doubled_answers} / {self.missing_answers}",
            f"usage rows (expected)         {self.usage_rows} ({self.usage_rows_expected})",
            f"audit session.started (exp.)  {self.audit_session_started}"
            f" ({self.audit_session_started_expected})",
            f"audit tool.invoked (expected) {self.audit_tool_invoked} ({self.audit_tool_invoked_expected})",
            f"tool side effects (expected)  {self.tool_executions} ({self.tool_executions_expected})",
            f"model requests                {self.model_requests}",
            f"wall time                     {self.wall_s:.1f} s",
            f"exactly once                  {'yes' if self.exactly_once else 'NO'}",
        ]


@dataclass
class _Sent:
    user_id: str
    message: str
    tool: bool
    session_id: str | None = None
    accepted: bool = True  # False: refused before a turn started (4xx/5xx other than 504)


async def _spawn_ready(settings: Settings, queues: str, **env: str) -> subprocess.Popen[bytes]:
    """``keel worker --queues <queues>``, returned once its ``/health/ready`` answers 200."""
    health = free_port()
    proc = spawn_worker(
        settings,
        "--queues",
        queues,
        KEEL_WORKER_HEALTH_PORT=str(health),
        KEEL_TOOL_ALLOWED_HOSTS='["127.0.0.1"]',
        KEEL_LOG_LEVEL="WARNING",
        **env,
    )
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode} before it was ready")
            try:
                if (await http.get(f"http://127.0.0.1:{health}/health/ready")).status_code == 200:
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("the worker did not get ready")


class _Killer:
    """Starts the chat and tools worker, and SIGKILLs it ``kills`` times, each a random time
    after it is ready. (Knowledge searches run in a worker of their own that is not killed:
    a turn searches whenever its user can read any document, org documents included.)"""

    def __init__(self, settings: Settings, *, kills: int, seed: int, max_alive_s: float) -> None:
        self._settings, self._kills, self._max_alive_s = settings, kills, max_alive_s
        self._rng = random.Random(seed)
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = 0

    async def start(self) -> None:
        # The embedded vector index belongs to the retrieval worker; this one never searches.
        unused_index = str(self._settings.data_dir / "killed-worker-index")
        self.proc = await _spawn_ready(self._settings, "chat,tools", KEEL_QDRANT_PATH=unused_index)

    async def run(self) -> None:
        while self.killed < self._kills:
            await asyncio.sleep(self._rng.uniform(0.2, self._max_alive_s))
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait, 10)
            self.killed += 1
            await self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def _register_tool(api: RunningApi, counter: CounterMcpServer) -> None:
    admin = {"Authorization": f"Bearer {await api.token('soak-admin', roles=['OrgAdmin'])}"}
    body = {"name": TOOL_SERVER, "transport": "http", "url": counter.url, "timeout_s": 5, "max_retries": 5}
    resp = await api.http.post("/api/v1/admin/tools", json=body, headers=admin, timeout=120)
    if resp.status_code != 201:
        raise RuntimeError(f"registering the counting tool server failed: {resp.status_code} {resp.text}")


async def _person(
    api: RunningApi,
    user_id: str,
    sent: list[_Sent],
    report: SoakReport,
    keep_going: asyncio.Event,
    *,
    min_turns: int,
    tool_every: int,
) -> None:
    headers = await api.auth(user_id)
    session_id: str | None = None
    n = 0
    while n < min_turns or keep_going.is_set():
        tool = n % tool_every == tool_every - 1
        message = f"{'tool' if tool else 'plain'}: {user_id} turn {n}"
        record = _Sent(user_id, message, tool, session_id)
        sent.append(record)
        body: dict[str, Any] = {"message": message}
        if session_id:
            body["session_id"] = session_id
        try:
            resp = await api.http.post("/api/v1/chat", json=body, headers=headers, timeout=600)
            answer = resp.json()
        except (httpx.HTTPError, ValueError) as err:
            report.answered_other[type(err).__name__] += 1
        else:
            if resp.status_code == 200 and answer.get("status") == "completed":
                report.answered_completed += 1
            else:
                report.answered_other[f"{resp.status_code} {answer.get('error', {}).get('code')}"] += 1
            if resp.status_code not in (200, 504):  # 504: the turn goes on in the workflow
                record.accepted = False
                await asyncio.sleep(1.0)
            session_id = session_id or answer.get("session_id")
            record.session_id = session_id
        n += 1


async def _count(
    settings: Settings, sent: list[_Sent], report: SoakReport, counter: CounterMcpServer
) -> None:
    users = sorted({s.user_id for s in sent})
    conn = await asyncpg.connect(str(settings.database_url))
    try:
        for _ in range(240):  # a turn answered 504 may still be running: let it finish
            running = await conn.fetchval(
                "SELECT count(*) FROM chat_turns WHERE user_id = ANY($1) AND status = 'running'", users
            )
            if not running:
                break
            await asyncio.sleep(0.5)
        sessions = await conn.fetchval("SELECT count(*) FROM chat_sessions WHERE user_id = ANY($1)", users)
        turns = await conn.fetch(
            "SELECT id, session_id, status FROM chat_turns WHERE user_id = ANY($1)", users
        )
        messages = await conn.fetch(
            "SELECT m.turn_id, m.role, m.content FROM chat_messages m JOIN chat_turns t ON t.id = m.turn_id"
            " WHERE t.user_id = ANY($1)",
            users,
        )
        report.usage_rows = await conn.fetchval(
            "SELECT count(*) FROM usage_records WHERE user_id = ANY($1)", users
        )
        audit = dict(
            await conn.fetch(
                "SELECT event, count(*) FROM audit_events WHERE user_id = ANY($1) GROUP BY event", users
            )
        )
    finally:
        await conn.close()
    report.turns_in_db = len(turns)
    report.turns_completed_in_db = sum(1 for t in turns if t["status"] == "completed")
    user_messages = Counter(m["content"] for m in messages if m["role"] == "user")
    answers = Counter(m["content"] for m in messages if m["role"] == "assistant" and m["content"])
    accepted = [s for s in sent if s.accepted]
    for s in sent:
        seen = user_messages.get(s.message, 0)
        if not s.accepted:
            report.refused += 1
            report.ghost_turns += seen > 0
            continue
        report.lost_turns += seen == 0
        report.doubled_user_messages += max(seen - 1, 0)
        expected = "Echo: " + s.message  # a tool turn's model echoes it after the tool result
        got = answers.get(expected, 0)
        report.missing_answers += got == 0
        report.doubled_answers += max(got - 1, 0)
    tool_turns = sum(1 for s in accepted if s.tool)
    report.usage_rows_expected = len(accepted) + tool_turns  # a tool turn makes two model calls
    report.audit_session_started = int(audit.get("session.started", 0))
    report.audit_session_started_expected = int(sessions)  # one per session, however many retries
    report.audit_tool_invoked = int(audit.get("tool.invoked", 0))
    report.audit_tool_invoked_expected = tool_turns
    report.tool_executions = counter.executions
    report.tool_executions_expected = tool_turns


async def run_kill_soak(
    settings: Settings,
    llm: FakeOpenAI,
    counter: CounterMcpServer,
    *,
    users: int,
    min_turns: int,
    kills: int,
    seed: int,
    tool_every: int = 3,
    max_alive_s: float = 3.0,
) -> SoakReport:
    """``users`` people chat (each at least ``min_turns`` turns, and on while the killer
    works) while the worker is killed ``kills`` times; the report counts what landed."""
    api_settings = settings.model_copy(
        # The per-person rate limit is not what this measures (8 people at full speed pass it).
        update={
            "tool_allowed_hosts": ["127.0.0.1"],
            "api_port": free_port(),
            "rate_limit_per_minute": 100_000,
        }
    )
    llm.set_default(soak_model)
    report = SoakReport()
    sent: list[_Sent] = []
    started = time.monotonic()
    killer = _Killer(api_settings, kills=kills, seed=seed, max_alive_s=max_alive_s)
    run = uuid.uuid4().hex[:6]
    retrieval: subprocess.Popen[bytes] | None = None
    async with serving_api(api_settings):
        api = RunningApi(api_settings)
        try:
            retrieval = await _spawn_ready(api_settings, "retrieval")
            await killer.start()
            await _register_tool(api, counter)
            keep_going = asyncio.Event()
            keep_going.set()
            people = [
                asyncio.create_task(
                    _person(
                        api,
                        f"soak-{run}-{i}",
                        sent,
                        report,
                        keep_going,
                        min_turns=min_turns,
                        tool_every=tool_every,
                    )
                )
                for i in range(users)
            ]
            await killer.run()
            keep_going.clear()
            await asyncio.gather(*people)
        finally:
            killer.stop()
            if retrieval is not None and retrieval.poll() is None:
                retrieval.terminate()
                retrieval.wait(timeout=30)
            await api.http.aclose()
            conn = await asyncpg.connect(str(settings.database_url))
            await conn.execute("UPDATE tool_servers SET deleted_at = now() WHERE name = $1", TOOL_SERVER)
            await conn.close()
    report.kills = killer.killed
    report.turns_sent = len(sent)
    report.model_requests = llm.request_count
    report.wall_s = time.monotonic() - started
    await _count(settings, sent, report, counter)
    return report
