"""The TypeScript client (sdk/typescript, ``@keel/client``) against the real platform.

``npm run example`` streams a chat turn with a real API key; a replay script resumes the
turn's events with ``Last-Event-ID``; ``npm test`` runs the client's own checks (tsc, the
generated types against docs/openapi.json, the offline unit tests). ``npm ci`` runs in
sdk/typescript when its node_modules is missing or older than its lock file (npm
registry only). Without ``npm`` the module is skipped, unless ``KEEL_TS_TESTS_REQUIRED=1``
(CI), where that fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.test_api_doc import _code, _section_rows
from tests.conftest import RunningApi
from tests.fakes.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "sdk" / "typescript"
NPM = shutil.which("npm")
#: Generous: the machine is shared (only waits; nothing asserts on time).
TIMEOUT_S = 300

if NPM is None:
    if os.environ.get("KEEL_TS_TESTS_REQUIRED"):
        raise RuntimeError("npm is not installed: the TypeScript client's tests need Node 20+ and npm")
    pytest.skip(
        "npm is not installed (the TypeScript client's tests need Node 20+ and npm)", allow_module_level=True
    )


def _run_sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NPM or "npm", *args], cwd=SDK, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """sdk/typescript/node_modules, installed with ``npm ci`` when missing or stale."""
    installed = SDK / "node_modules" / ".package-lock.json"
    lock = SDK / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = _run_sync("ci", "--no-audit", "--no-fund", "--loglevel=error")
        if done.returncode != 0:
            pytest.fail(
                f"`npm ci` in {SDK} failed (it needs the npm registry):\n{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
    return SDK / "node_modules"


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run a command in sdk/typescript without blocking the event loop (the API under test
    is served by this process's loop)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=SDK,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _api_key(platform: RunningApi, user_id: str) -> str:
    resp = await platform.http.post(
        "/api/v1/api-keys",
        headers=await platform.auth(user_id),
        json={"name": "typescript client", "scopes": ["use_agent"]},
    )
    assert resp.status_code == 201, resp.text
    key = resp.json()["key"]
    assert key.startswith("keel_")
    return str(key)


async def test_example_streams_the_answer_with_an_api_key_and_resumes(
    platform: RunningApi, llm: FakeOpenAI, node_modules: Path
) -> None:
    env = {"KEEL_URL": platform.base_url, "KEEL_API_KEY": await _api_key(platform, "ts-alice")}
    code, out, err = await _run(NPM or "npm", "run", "--silent", "example", "--", "ping", env=env)
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Echo: ping" in out
    session = re.search(r"^session: ([0-9a-f]{32})$", out, re.MULTILINE)
    turn = re.search(r"^turn: ([0-9a-f]{32}) \(completed\)$", out, re.MULTILINE)
    assert session and turn, out
    session_id, turn_id = session.group(1), turn.group(1)

    # The session is the key owner's, as the API sees it.
    listing = await platform.http.get("/api/v1/sessions", headers=await platform.auth("ts-alice"))
    assert [s["id"] for s in listing.json()["sessions"]] == [session_id]
    detail = await platform.http.get(
        f"/api/v1/sessions/{session_id}", headers=await platform.auth("ts-alice")
    )
    assert [(m["role"], m["content"]) for m in detail.json()["messages"]] == [
        ("user", "ping"),
        ("assistant", "Echo: ping"),
    ]

    # A follow-up in the same session.
    code, out, err = await _run(
        NPM or "npm", "run", "--silent", "example", "--", "pong", env={**env, "KEEL_SESSION_ID": session_id}
    )
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Echo: pong" in out and f"session: {session_id}" in out

    # turnEvents() replays the first turn; after an id it resumes with exactly the rest.
    replay = ("node", "--import", "tsx", "test/live/replay.ts", session_id, turn_id)
    code, out, err = await _run(*replay, env=env)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "turn.started" and events[-1]["event"] == "turn.completed"
    assert "".join(e["delta"] for e in events if e["event"] == "message.delta") == "Echo: ping"
    assert all(e["id"] for e in events)
    code, out, err = await _run(*replay, events[1]["id"], env=env)
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == events[2:]


async def test_a_refused_key_is_a_keel_error(platform: RunningApi, node_modules: Path) -> None:
    env = {"KEEL_URL": platform.base_url, "KEEL_API_KEY": "keel_not-a-real-key"}
    code, out, err = await _run(NPM or "npm", "run", "--silent", "example", env=env)
    assert code == 1, f"stdout:\n{out}\nstderr:\n{err}"
    assert re.search(r"Keel answered 401 invalid_token: .+ \(request [0-9a-f]{32}\)", err), err


def test_npm_test_typecheck_generated_types_and_unit_tests(node_modules: Path) -> None:
    done = _run_sync("test")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "src/schema.d.ts matches docs/openapi.json" in done.stdout
    assert re.search(r"pass \d+", done.stdout) and not re.search(r"fail [1-9]", done.stdout), done.stdout


def test_the_client_knows_every_event_of_docs_api_md() -> None:
    """KEEL_EVENT_NAMES (src/sse.ts) is docs/api.md's event table, which
    tests/api/test_api_doc.py checks against the code."""
    source = (SDK / "src" / "sse.ts").read_text(encoding="utf-8")
    names = re.search(r"KEEL_EVENT_NAMES[^=]*= \[(.*?)\];", source, re.DOTALL)
    assert names, "KEEL_EVENT_NAMES not found in src/sse.ts"
    documented = {_code(event) for event, _data, _meaning in _section_rows("#### Events")}
    assert set(re.findall(r'"([a-z_.]+)"', names.group(1))) == documented
