"""The ``keel`` client commands (workers/client_cli.py), as subprocesses, against the running platform."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningApi

REPO_ROOT = Path(__file__).resolve().parent.parent


async def keel(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``python -m workers.cli …`` with no KEEL_* settings but ``env``; (status, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        cwd=REPO_ROOT,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_chat_sessions_keys_and_approvals(platform: RunningApi, tmp_path: Path) -> None:
    env = {"KEEL_URL": platform.base_url, "KEEL_TOKEN": await platform.token("cli-user")}

    status, out, err = await keel("chat", "hello from the cli", env=env)
    assert status == 0 and out.strip() == "Echo: hello from the cli", (out, err)

    status, out, err = await keel("sessions", "list", "--json", env=env)
    assert status == 0, err
    [session] = json.loads(out)["sessions"]
    assert session["title"] == "hello from the cli"
    status, out, _ = await keel("chat", "again", "--session", session["id"], "--json", env=env)
    assert status == 0 and json.loads(out)["session_id"] == session["id"]
    status, out, _ = await keel("sessions", "show", session["id"], env=env)
    assert status == 0 and "assistant> Echo: again" in out

    status, out, err = await keel("keys", "create", "ci", "--scope", "use_agent", "--json", env=env)
    assert status == 0, err
    created = json.loads(out)
    assert created["key"].startswith("keel_") and created["scopes"] == ["use_agent"]

    # Log in with the new key from a config file only.
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{platform.base_url}"\napi_key = "{created["key"]}"\n')
    status, out, err = await keel("approvals", "list", "--json", env={"KEEL_CONFIG": str(config)})
    assert status == 0 and json.loads(out) == {"approvals": []}, (out, err)
    status, out, _ = await keel("approvals", "list", env={"KEEL_CONFIG": str(config)})
    assert status == 0 and out == "no pending approvals\n"

    status, out, _ = await keel("keys", "list", env=env)
    assert status == 0 and created["id"] in out and "use_agent" in out

    # Errors: the API's code and request id on stderr, exit 2, no traceback.
    status, out, err = await keel("admin", "tools", "list", env=env)
    assert status == 2 and out == "" and "forbidden" in err and "request" in err and "Traceback" not in err
    status, out, err = await keel("sessions", "list", env={"KEEL_URL": platform.base_url})
    assert status == 2 and "no credential" in err and "KEEL_API_KEY" in err


async def test_version() -> None:
    status, out, _ = await keel("--version", env={})
    assert status == 0 and out.startswith("keel ") and "keel-sdk" in out
