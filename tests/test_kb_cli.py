"""``keel kb upload DIR``: the real command, as a subprocess, against a running platform."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningApi
from workers.kb_cli import ProgressBar, discover

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = (
    "# Staff handbook\n\nThe VPN password rotates every ninety days. "
    "Expense claims are filed within thirty days of purchase.\n"
)


async def keel(*args: str, token: str | None) -> tuple[int, str, str]:
    """Run ``python -m workers.cli …`` with no KEEL_* settings but the token; (status, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    if token is not None:
        env["KEEL_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.cli",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _folder(root: Path) -> Path:
    (root / "notes").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "handbook.txt").write_text(HANDBOOK)
    (root / "readme.md").write_text("# Readme\n\nHow to book a meeting room: use the calendar.\n")
    (root / "notes" / "travel.md").write_text("# Travel\n\nTrains are booked through the travel desk.\n")
    (root / "broken.pdf").write_bytes(b"not a pdf")
    (root / "data.csv").write_text("a,b\n1,2\n")  # unsupported: skipped
    (root / ".secret.txt").write_text("hidden: skipped")
    (root / ".git" / "config.txt").write_text("in a hidden folder: skipped")
    return root


def test_discover_skips_hidden_and_unsupported_files(tmp_path: Path) -> None:
    root = _folder(tmp_path / "docs")
    found = discover(root)
    assert [p.as_posix() for p in found.files] == [
        "broken.pdf",
        "handbook.txt",
        "readme.md",
        "notes/travel.md",
    ]
    assert found.unsupported == 1
    assert [p.as_posix() for p in discover(root, "*.md").files] == ["readme.md", "notes/travel.md"]
    assert [p.as_posix() for p in discover(root, "notes/*").files] == ["notes/travel.md"]


def test_progress_bar_redraws_on_a_terminal_and_writes_lines_otherwise() -> None:
    now = [0.0]
    tty = io.StringIO()
    bar = ProgressBar(tty, 4, tty=True, clock=lambda: now[0])
    bar.update(uploaded=4, done=1, ready=1, failed=0)
    now[0] = 65.0
    bar.update(uploaded=4, done=4, ready=3, failed=1)
    bar.close()
    text = tty.getvalue()
    assert "[######------------------] 1/4 done  1 ready  0 failed  0:00" in text.split("\r")[1]
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[########################] 4/4 done  3 ready  1 failed  1:05" in text.split("\r")[-1]

    log = io.StringIO()
    bar = ProgressBar(log, 4, tty=False, clock=lambda: now[0], line_interval_s=2.0)
    bar.update(uploaded=2, done=0, ready=0, failed=0)  # first: written
    bar.update(uploaded=4, done=1, ready=1, failed=0)  # too soon: held back
    now[0] += 3
    bar.update(uploaded=4, done=2, ready=2, failed=0)  # due: written
    bar.update(uploaded=4, done=4, ready=3, failed=1)  # too soon, but close() writes it
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert (
        "(uploading 2/4)" in lines[0] and "2/4 done" in lines[1] and "4/4 done  3 ready  1 failed" in lines[2]
    )


@pytest.mark.slow
async def test_upload_a_folder_reports_ready_and_failed_documents(
    platform: RunningApi, tmp_path: Path
) -> None:
    root = _folder(tmp_path / "docs")
    token = await platform.token("kb-cli")
    status, out, err = await keel(
        "kb", "upload", str(root), "--api", platform.base_url, "--batch-size", "2", token=token
    )

    assert status == 1, (out, err)
    assert "ready:  3" in out and "failed: 1" in out, out
    failed_lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert len(failed_lines) == 1 and failed_lines[0].startswith("  broken.pdf: content_mismatch: "), out
    assert "4/4 done  3 ready  1 failed" in err and "Traceback" not in err, err

    headers = {"Authorization": f"Bearer {token}"}
    kbs = (await platform.http.get("/api/v1/knowledge-bases", headers=headers)).json()["knowledge_bases"]
    kb = next(k["id"] for k in kbs if k["personal"])
    docs = (await platform.http.get(f"/api/v1/knowledge-bases/{kb}/documents", headers=headers)).json()[
        "documents"
    ]
    assert {d["filename"]: d["status"] for d in docs} == {
        "handbook.txt": "ready",
        "readme.md": "ready",
        "travel.md": "ready",
        "broken.pdf": "failed",
    }

    # API errors: the API's code and message, exit 2, never a traceback.
    status, out, err = await keel("kb", "upload", str(root), "--api", platform.base_url, token="not-a-jwt")
    assert status == 2 and out == "", (out, err)
    assert "invalid_token" in err and "/api/v1/auth/dev-token" in err and "Traceback" not in err, err
    status, out, err = await keel(
        "kb", "upload", str(root), "--api", platform.base_url, "--kb", "kb-nope", token=token
    )
    assert status == 2 and "knowledge_base_not_found" in err and "Traceback" not in err, err


@pytest.mark.slow
async def test_upload_without_a_token_explains_how_to_get_one(tmp_path: Path) -> None:
    root = _folder(tmp_path / "docs")
    status, out, err = await keel("kb", "upload", str(root), "--api", "http://127.0.0.1:9", token=None)
    assert status == 2 and out == ""
    assert "no API token" in err and "KEEL_TOKEN" in err and "POST /api/v1/auth/dev-token" in err, err
    assert "Traceback" not in err
