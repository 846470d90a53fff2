"""``keel kb upload DIR``: upload a folder into a knowledge base and follow its ingestion.

A client of the REST API (docs/api.md), not of the platform's internals: files go
up in batches through ``POST /api/v1/knowledge-bases/{kb}/ingestions`` (one
request per ``--batch-size`` files, streamed from disk), each batch is followed
with ``GET /api/v1/ingestions/{batch_id}``, and one progress bar on stderr sums
them. The summary goes to stdout. Exit codes: 0 every document ready, 1 some
failed, 2 a usage, auth or API error, 130 interrupted (ingestion goes on).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from infra.settings import Settings
from workers.client_cli import add_kb_client_parsers, run_client

# Extensions the ingestion pipeline parses (infra/parsing.py), with the type sent for each.
SUPPORTED_TYPES: dict[str, str] = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
}
DEFAULT_BATCH_SIZE = 20
TOKEN_ENV = "KEEL_TOKEN"
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
_PROG = "keel kb upload"
_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_MAX_POLL_FAILURES = 5


class CliError(Exception):
    """A failure to report as ``keel kb upload: <code>: <message>`` and exit 2."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


# ------------------------------------------------------------------ arguments
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def add_kb_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keel kb …`` to the ``keel`` parser."""
    kb = sub.add_parser("kb", help="work with knowledge bases through the API")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True)
    up = kb_sub.add_parser(
        "upload",
        help="upload a folder's documents into a knowledge base and show ingestion progress",
        description=(
            "Upload every supported file under DIR (recursively; hidden files and folders are "
            f"skipped; types: {' '.join(SUPPORTED_TYPES)}) and follow the ingestion with a "
            "progress bar on stderr. A summary goes to stdout. Exit status: 0 all documents "
            "ready, 1 some failed, 2 usage, auth or API error."
        ),
    )
    up.add_argument("dir", metavar="DIR", type=Path, help="folder to upload")
    up.add_argument("--kb", metavar="KB_ID", help="knowledge base id (default: your personal one)")
    up.add_argument("--api", metavar="URL", help="API base URL (default: http://KEEL_API_HOST:KEEL_API_PORT)")
    up.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"bearer token (default: ${TOKEN_ENV}; in dev mode get one from POST /api/v1/auth/dev-token)",
    )
    up.add_argument(
        "--batch-size",
        metavar="N",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"files per ingestion request (default {DEFAULT_BATCH_SIZE})",
    )
    up.add_argument(
        "--pattern",
        metavar="GLOB",
        help="only files whose name or path relative to DIR matches GLOB, e.g. '*.pdf' or 'policies/*'",
    )
    add_kb_client_parsers(kb_sub)


def run_kb(args: argparse.Namespace, settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Run ``keel kb <command>``; returns the exit status."""
    if args.kb_command == "upload":
        return upload_command(args, settings, os.environ if env is None else env)
    if args.kb_command in ("list", "query"):
        return run_client(args, env)
    raise AssertionError(f"unknown kb command {args.kb_command!r}")  # argparse refuses it first


# ------------------------------------------------------------------ discovery
@dataclass(frozen=True)
class Discovery:
    files: list[Path]  # relative to the root, sorted
    unsupported: int


def discover(root: Path, pattern: str | None = None) -> Discovery:
    """Supported, non-hidden files under ``root`` (recursively), as paths relative to it."""
    files: list[Path] = []
    unsupported = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if not path.is_file():
                continue
            rel = path.relative_to(root)
            if pattern and not (fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(rel.as_posix(), pattern)):
                continue
            if path.suffix.lower() in SUPPORTED_TYPES:
                files.append(rel)
            else:
                unsupported += 1
    return Discovery(files=files, unsupported=unsupported)


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------ progress bar
def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """One line of progress on ``stream``: redrawn in place (``\\r``) on a terminal,
    otherwise written as a new line at most every ``line_interval_s`` (and at the end)."""

    WIDTH = 24
    HEARTBEAT_S = 30.0  # without a terminal, a line at least this often even when nothing changed

    def __init__(
        self,
        stream: TextIO,
        total: int,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        line_interval_s: float = 2.0,
    ) -> None:
        self._stream = stream
        self._total = total
        self._tty = stream.isatty() if tty is None else tty
        self._clock = clock
        self._started = clock()
        self._line_interval_s = line_interval_s
        self._last_line_at: float | None = None
        self._drawn_width = 0
        self._state = (0, 0, 0, 0)
        self._written: tuple[int, int, int, int] | None = None  # the state the last line showed

    def render(self) -> str:
        uploaded, done, ready, failed = self._state
        total = max(self._total, 1)
        filled = min(self.WIDTH, done * self.WIDTH // total)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        width = len(str(self._total))
        line = f"[{bar}] {done:>{width}}/{self._total} done  {ready} ready  {failed} failed"
        if uploaded < self._total:
            line += f"  (uploading {uploaded}/{self._total})"
        return f"{line}  {_elapsed(self._clock() - self._started)}"

    def update(self, *, uploaded: int, done: int, ready: int, failed: int) -> None:
        self._state = (uploaded, done, ready, failed)
        if self._tty:
            self._draw()
            return
        now = self._clock()
        since = None if self._last_line_at is None else now - self._last_line_at
        changed = self._state != self._written
        if since is None or (changed and since >= self._line_interval_s) or since >= self.HEARTBEAT_S:
            self._write_line(now)

    def close(self) -> None:
        if self._tty:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
        elif self._state != self._written:
            self._write_line(self._clock())

    def _write_line(self, now: float) -> None:
        self._stream.write(self.render() + "\n")
        self._stream.flush()
        self._written = self._state
        self._last_line_at = now

    def _draw(self) -> None:
        columns = shutil.get_terminal_size((100, 24)).columns
        line = self.render()[: max(columns - 1, 20)]
        pad = " " * max(self._drawn_width - len(line), 0)
        self._stream.write("\r" + line + pad)
        self._stream.flush()
        self._drawn_width = len(line)


# ------------------------------------------------------------------ API calls
def _raise_for_error(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    code: str | None = None
    message = f"HTTP {resp.status_code} {resp.reason_phrase}".strip()
    with contextlib.suppress(ValueError):
        error = resp.json().get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or "") or None
            message = str(error.get("message") or message)
    raise CliError(message, code=code, status=resp.status_code)


def _json(resp: httpx.Response) -> dict[str, Any]:
    _raise_for_error(resp)
    try:
        body = resp.json()
    except ValueError as exc:
        raise CliError(f"the API answered {resp.request.url.path} with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise CliError(f"unexpected answer from {resp.request.url.path}")
    return body


def personal_kb_id(client: httpx.Client) -> str:
    body = _json(client.get("/api/v1/knowledge-bases"))
    for kb in body.get("knowledge_bases", []):
        if kb.get("personal"):
            return str(kb["id"])
    raise CliError("the API lists no personal knowledge base for you; pass --kb KB_ID")


@dataclass
class Batch:
    batch_id: str
    document_ids: list[str]
    total: int
    ready: int = 0
    failed: int = 0
    done: bool = False
    failed_document_ids: list[str] = field(default_factory=list)


def start_batch(client: httpx.Client, kb_id: str, root: Path, paths: Sequence[Path]) -> Batch:
    """One ``POST …/ingestions`` with these files, read from disk as the request is sent."""
    with contextlib.ExitStack() as stack:
        parts: list[tuple[str, tuple[str, Any, str]]] = []
        for rel in paths:
            try:
                handle = stack.enter_context((root / rel).open("rb"))
            except OSError as exc:
                raise CliError(f"cannot read {rel.as_posix()}: {exc.strerror or exc}") from exc
            parts.append(("files", (rel.name, handle, SUPPORTED_TYPES[rel.suffix.lower()])))
        body = _json(client.post(f"/api/v1/knowledge-bases/{quote(kb_id, safe='')}/ingestions", files=parts))
    ids = [str(i) for i in body.get("document_ids", [])]
    if len(ids) != len(paths) or not body.get("batch_id"):
        raise CliError("the API's answer to an ingestion request does not match the files sent")
    return Batch(batch_id=str(body["batch_id"]), document_ids=ids, total=len(ids))


def poll_batch(client: httpx.Client, batch: Batch) -> None:
    body = _json(client.get(f"/api/v1/ingestions/{quote(batch.batch_id, safe='')}"))
    batch.ready = int(body.get("ready", 0))
    batch.failed = int(body.get("failed", 0))
    batch.done = bool(body.get("done", False))
    batch.failed_document_ids = [str(i) for i in body.get("failed_document_ids", [])]


# ------------------------------------------------------------------ the upload
@dataclass
class Upload:
    client: httpx.Client
    kb_id: str
    root: Path
    progress: ProgressBar
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    batches: list[Batch] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)  # document id -> file (relative to root)
    _poll_failures: int = 0
    _last_poll: float | None = None

    @property
    def uploaded(self) -> int:
        return sum(b.total for b in self.batches)

    def _show(self) -> None:
        ready = sum(b.ready for b in self.batches)
        failed = sum(b.failed for b in self.batches)
        self.progress.update(uploaded=self.uploaded, done=ready + failed, ready=ready, failed=failed)

    def _interval(self) -> float:
        pending = sum(not b.done for b in self.batches)
        return min(5.0, max(0.5, 0.1 * pending))

    def _poll_pending(self) -> None:
        self._last_poll = self.clock()
        for batch in self.batches:
            if batch.done:
                continue
            try:
                poll_batch(self.client, batch)
            except (httpx.TransportError, CliError) as exc:
                transient = isinstance(exc, httpx.TransportError) or (
                    exc.status is not None and (exc.status in _TRANSIENT_STATUS or exc.status >= 500)
                )
                self._poll_failures += 1
                if not transient or self._poll_failures >= _MAX_POLL_FAILURES:
                    raise
                return
            self._poll_failures = 0
        self._show()

    def run(self, files: Sequence[Path], batch_size: int) -> None:
        self._show()
        for chunk in _batches(files, batch_size):
            batch = self._start(chunk)
            self.batches.append(batch)
            self.paths.update(zip(batch.document_ids, chunk, strict=True))
            self._show()
            if self._last_poll is None or self.clock() - self._last_poll >= self._interval():
                self._poll_pending()
        while not all(b.done for b in self.batches):
            self.sleep(self._interval())
            self._poll_pending()

    def _start(self, chunk: Sequence[Path]) -> Batch:
        """Start a batch; while the API says ``ingest_busy`` and batches of ours are still
        processing, wait for them (polling) and try again."""
        while True:
            try:
                return start_batch(self.client, self.kb_id, self.root, chunk)
            except CliError as exc:
                if exc.code != "ingest_busy" or all(b.done for b in self.batches):
                    raise
            self.sleep(self._interval())
            self._poll_pending()

    def failures(self) -> list[tuple[Path, str, str]]:
        """(file, error code, error message) of every failed document."""
        out: list[tuple[Path, str, str]] = []
        for batch in self.batches:
            for doc_id in batch.failed_document_ids:
                path = self.paths.get(doc_id, Path(doc_id))
                try:
                    doc = _json(
                        self.client.get(
                            f"/api/v1/knowledge-bases/{quote(self.kb_id, safe='')}/documents/"
                            f"{quote(doc_id, safe='')}"
                        )
                    )
                except (httpx.TransportError, CliError) as exc:
                    out.append((path, "unknown", f"details unavailable ({exc})"))
                    continue
                out.append(
                    (path, str(doc.get("error_code") or "unknown"), str(doc.get("error_message") or ""))
                )
        return out


def _summary(upload: Upload, elapsed_s: float) -> tuple[str, int]:
    ready = sum(b.ready for b in upload.batches)
    failures = upload.failures()
    batches = len(upload.batches)
    lines = [
        f"Uploaded {upload.uploaded} file{'s' * (upload.uploaded != 1)} to knowledge base {upload.kb_id} "
        f"in {batches} batch{'es' * (batches != 1)} ({_elapsed(elapsed_s)}).",
        f"ready:  {ready}",
        f"failed: {len(failures)}",
    ]
    lines += [f"  {path.as_posix()}: {code}: {message}".rstrip() for path, code, message in failures]
    return "\n".join(lines) + "\n", EXIT_FAILED if failures else EXIT_OK


def _error(message: str) -> int:
    sys.stderr.write(f"{_PROG}: {message}\n")
    return EXIT_ERROR


def upload_command(args: argparse.Namespace, settings: Settings, env: Mapping[str, str]) -> int:
    api = (args.api or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")
    token = (args.token or env.get(TOKEN_ENV) or "").strip()
    if not token:
        return _error(
            f"no API token: set {TOKEN_ENV} or pass --token TOKEN. In dev mode "
            "(KEEL_AUTH_MODE=dev) get one with POST /api/v1/auth/dev-token, e.g.\n"
            f"  curl -s -X POST {api}/api/v1/auth/dev-token "
            "-H 'Content-Type: application/json' -d '{\"user_id\": \"alice\"}'"
        )
    root: Path = args.dir
    if not root.is_dir():
        return _error(f"{root} is not a folder")
    found = discover(root, args.pattern)
    skipped = f" ({found.unsupported} unsupported skipped)" if found.unsupported else ""
    if not found.files:
        sys.stderr.write(f"{_PROG}: nothing to upload: no supported files under {root}{skipped}\n")
        return EXIT_OK
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    upload: Upload | None = None
    try:
        with httpx.Client(base_url=api, headers=headers, timeout=_TIMEOUT) as client:
            kb_id = args.kb or personal_kb_id(client)
            sys.stderr.write(f"{_PROG}: {len(found.files)} files to knowledge base {kb_id}{skipped}\n")
            upload = Upload(client, kb_id, root, ProgressBar(sys.stderr, len(found.files)))
            try:
                upload.run(found.files, args.batch_size)
            finally:
                upload.progress.close()
            text, code = _summary(upload, time.monotonic() - started)
    except CliError as exc:
        hint = ""
        if exc.status == 401:
            hint = f" (check --token / {TOKEN_ENV}; dev tokens come from POST /api/v1/auth/dev-token)"
        return _error(f"{exc}{hint}{_submitted_note(upload)}")
    except httpx.TransportError as exc:
        return _error(
            f"cannot reach the Keel API at {api}: {str(exc) or type(exc).__name__}{_submitted_note(upload)}"
        )
    except KeyboardInterrupt:
        _error(f"interrupted{_submitted_note(upload)}")
        return EXIT_INTERRUPTED
    sys.stdout.write(text)
    sys.stdout.flush()
    return code


def _submitted_note(upload: Upload | None) -> str:
    if upload is None or not upload.batches:
        return ""
    ids = " ".join(b.batch_id for b in upload.batches)
    return (
        f"\n{upload.uploaded} file(s) already submitted keep ingesting on the server; "
        f"follow them with GET /api/v1/ingestions/{{batch_id}}: {ids}"
    )
