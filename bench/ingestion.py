"""Ingestion throughput: each stage on its own, then the whole pipeline through Keel.

A fixed corpus is generated in memory (seeded pseudo-English text; nothing is
read from disk): PDFs built by hand so that pypdf extracts real text per page,
DOCX files written with python-docx (one page break per page) and Markdown
files (one ``##`` section per page), about ``--pages`` pages in all. The same
run then measures, each stage in isolation and in this order:

- ``parse``: ``infra.parsing.parse_document`` on every file's bytes;
- ``chunk``: ``core.ingest.chunking.chunk_document`` on every parsed document
  (the worker's defaults: 1,200 characters, 150 overlap);
- ``embed``: ``LocalEmbedder.embed_documents`` on every document's chunks in
  batches of 64, as ``index_chunks`` does (model loaded and warmed first);
- ``upsert``: ``EdgeIndex.upsert`` of those vectors with their ``ChunkPayload``
  in batches of 64 into a fresh embedded index;
- ``end to end``: a real stack (Temporal dev server, a fresh Postgres database,
  Redis, the API and the ingest worker in this process), every file uploaded
  in one ``POST /api/v1/knowledge-bases/{kb}/ingestions`` and
  ``GET /api/v1/ingestions/{batch}`` polled until the batch is done.

It prints one table (stage, items, seconds, pages/s, chunks/s) and the ratio
end-to-end pages/s / embedding pages/s. Nothing is asserted.

    .venv/bin/python -m bench.ingestion [--pages 300] [--seed 7] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import logging
import math
import os
import platform
import random
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from docx import Document

from bench.turn_overhead import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    free_port,
    fresh_database,
    progress,
    serving_api,
    temporal_dev_server,
)
from core.ingest.chunking import Chunk, chunk_document
from core.models.knowledge import ChunkPayload, IndexPoint, point_id
from infra.embeddings import LocalEmbedder
from infra.knowledge import open_knowledge
from infra.logging import configure_logging
from infra.parsing import ParsedDocument, parse_document
from infra.settings import Settings
from infra.vector.edge_index import EdgeIndex
from workers.ingest_worker import build_ingest_worker, ingest_activities

Kind = Literal["pdf", "docx", "markdown"]

#: Characters of text on one generated page (about 400 words: a full printed page).
PAGE_CHARS = 2600
#: What the ingest worker uses unless configured otherwise (infra.settings / workers.ingest_worker).
CHUNK_CHARS, CHUNK_OVERLAP, EMBED_BATCH = 1200, 150, 64
MAX_PAGES = 2000
POLL_S = 0.25
TARGET_RATIO = 0.8
CONTENT_TYPES: dict[Kind, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "markdown": "text/markdown",
}
EXTENSIONS: dict[Kind, str] = {"pdf": ".pdf", "docx": ".docx", "markdown": ".md"}
#: Document kinds in the order they are generated, and each kind's size range in pages.
KIND_CYCLE: tuple[Kind, ...] = ("pdf", "pdf", "docx", "pdf", "markdown")
PAGES_PER_DOC: dict[Kind, tuple[int, int]] = {"pdf": (6, 24), "docx": (3, 10), "markdown": (2, 6)}

_WORDS_TEXT = """
account action activity agreement allowance analysis annual application approval area arrangement asset
audit authority balance basis benefit board branch budget building business calendar capacity card case
central change charge claim client code committee company compliance condition contract control cost
council customer data date deadline decision delivery department deposit design detail development device
director district document employee energy equipment estimate event evidence exchange expense facility
factor failure figure file finance form framework fund grant group guidance health holiday incident income
information inspection insurance interest inventory invoice issue item job laboratory leave level licence
limit loan location maintenance management manager market material measure meeting member method model
network notice number office operation order organisation outcome owner package payment period permit
person plan policy position practice premium price priority procedure process product programme project
property proposal quality quarter rate record region register release report request requirement research
reserve resource response result review risk role rule safety salary schedule scheme security service
session share site software source staff standard statement status stock storage strategy supplier supply
support survey system target task team tender term test ticket time training transfer travel unit update
user value vehicle vendor version warehouse warranty workload
"""
_WORDS = _WORDS_TEXT.split()
_VERBS_TEXT = """
approves reviews requires covers includes reduces increases records updates confirms describes supports
replaces extends limits tracks reports assigns schedules delivers measures protects explains defines
"""
_VERBS = _VERBS_TEXT.split()
_ADJECTIVES_TEXT = """
annual monthly internal external regional central new revised current previous standard temporary
permanent shared remote local formal final initial quarterly weekly critical minor major routine
"""
_ADJECTIVES = _ADJECTIVES_TEXT.split()
_CONNECTORS = ("and", "but", "because", "while", "so", "although", "unless", "after", "before", "when")


# ---------------------------------------------------------------- corpus
def _sentence(rng: random.Random) -> str:
    def phrase() -> str:
        noun = rng.choice(_WORDS)
        return f"the {rng.choice(_ADJECTIVES)} {noun}" if rng.random() < 0.5 else f"the {noun}"

    parts = [f"{phrase()} {rng.choice(_VERBS)} {phrase()}"]
    if rng.random() < 0.6:
        parts.append(f"{rng.choice(_CONNECTORS)} {phrase()} {rng.choice(_VERBS)} {phrase()}")
    if rng.random() < 0.4:
        parts.append(f"for each {rng.choice(_WORDS)} in the {rng.choice(_WORDS)} {rng.choice(_WORDS)}")
    text = " ".join(parts)
    if rng.random() < 0.25:
        text += f" by {rng.randint(1, 28)} {rng.choice(('March', 'June', 'September', 'December'))}"
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))


@dataclass(frozen=True)
class Page:
    heading: str
    paragraphs: list[str]


def _page(rng: random.Random, doc_no: int, page_no: int) -> Page:
    heading = (
        f"{doc_no}.{page_no} {rng.choice(_ADJECTIVES).title()} {rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    )
    paragraphs: list[str] = []
    size = len(heading)
    while size < PAGE_CHARS:
        paragraphs.append(_paragraph(rng))
        size += len(paragraphs[-1]) + 2
    return Page(heading, paragraphs)


@dataclass(frozen=True)
class CorpusFile:
    name: str
    kind: Kind
    pages: int  # nominal pages: PDF pages, DOCX pages (page breaks), Markdown sections
    data: bytes


def build_pdf(pages: Sequence[Page], *, title: str) -> bytes:
    """A minimal valid PDF (after tests/ingest/test_parsing.py): Helvetica, one content stream a page."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    catalog, tree, font = 1, 2, 3
    kids: list[int] = []
    for page in pages:
        lines = [page.heading, ""]
        for paragraph in page.paragraphs:
            lines += [*textwrap.wrap(paragraph, 95), ""]
        escaped = (line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in lines)
        ops = "BT /F1 10 Tf 12 TL 50 750 Td " + " ".join(f"({line}) Tj T*" for line in escaped) + " ET"
        data = ops.encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data))
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (tree, font, len(objects))
        )
        kids.append(len(objects))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    objects.append(b"<< /Title (%s) >>" % title.encode("latin-1"))
    info = len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        info,
        xref,
    )
    return bytes(out)


def build_docx(pages: Sequence[Page], *, title: str) -> bytes:
    document = Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    for number, page in enumerate(pages):
        if number:
            document.add_page_break()  # type: ignore[no-untyped-call]
        document.add_heading(page.heading, level=2)
        for paragraph in page.paragraphs:
            document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return _fixed_zip_times(buffer.getvalue())


def _fixed_zip_times(data: bytes) -> bytes:
    """The same archive with every entry dated 1980-01-01, so the bytes depend on the text only."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), src.read(info))
    return out.getvalue()


def build_markdown(pages: Sequence[Page], *, title: str) -> bytes:
    parts = [f"# {title}"]
    for page in pages:
        parts.append(f"## {page.heading}")
        parts.extend(page.paragraphs)
    return ("\n\n".join(parts) + "\n").encode("utf-8")


def build_corpus(total_pages: int, seed: int) -> list[CorpusFile]:
    """Documents of the kinds in ``KIND_CYCLE`` until ``total_pages`` pages; depends only on the arguments."""
    rng = random.Random(seed)
    files: list[CorpusFile] = []
    remaining = total_pages
    while remaining > 0:
        doc_no = len(files) + 1
        kind = KIND_CYCLE[len(files) % len(KIND_CYCLE)]
        count = min(rng.randint(*PAGES_PER_DOC[kind]), remaining)
        pages = [_page(rng, doc_no, p) for p in range(1, count + 1)]
        title = f"Bench document {doc_no:03d}: {rng.choice(_ADJECTIVES)} {rng.choice(_WORDS)} review"
        builder = {"pdf": build_pdf, "docx": build_docx, "markdown": build_markdown}[kind]
        data = builder(pages, title=title)
        files.append(CorpusFile(f"bench-{doc_no:03d}{EXTENSIONS[kind]}", kind, count, data))
        remaining -= count
    return files


# ---------------------------------------------------------------- isolated stages
@dataclass
class StageResult:
    name: str
    items: int
    item_kind: str
    seconds: float
    cpu_seconds: float
    pages: int
    chunks: int
    note: str = ""

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else math.nan

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else math.nan


class Timer:
    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


@dataclass
class Isolated:
    stages: list[StageResult]
    chunks: list[list[Chunk]]
    parsed: list[ParsedDocument]


def _payload(doc_id: str, kind: Kind, title: str | None, chunk: Chunk) -> ChunkPayload:
    return ChunkPayload(
        doc_id=doc_id,
        kb_id="kb-bench",
        source="upload",
        owner_type="org",
        owner_id="org",
        visibility="private",
        shared_with=[],
        created_at=datetime(2025, 1, 1, tzinfo=UTC).isoformat(),
        doc_type=kind,
        chunk_index=chunk.index,
        title=title or "",
        text=chunk.text,
        page=chunk.page,
        strategy=chunk.strategy,
    )


async def run_isolated(files: list[CorpusFile]) -> Isolated:
    pages = sum(f.pages for f in files)
    stages: list[StageResult] = []

    progress("parse")
    with Timer() as t:
        parsed = [parse_document(f.data, filename=f.name, max_pages=MAX_PAGES) for f in files]
    stages.append(StageResult("parse", len(files), "files", t.wall, t.cpu, pages, 0))

    with Timer() as t:
        chunks = [
            chunk_document(p.pages, doc_type=p.doc_type, max_chars=CHUNK_CHARS, overlap_chars=CHUNK_OVERLAP)
            for p in parsed
        ]
    n_chunks = sum(len(c) for c in chunks)
    stages[0].chunks = n_chunks
    stages.append(StageResult("chunk", len(files), "files", t.wall, t.cpu, pages, n_chunks))

    progress(f"embed: loading and warming the model, then {n_chunks} chunks")
    embedder = LocalEmbedder(batch_size=EMBED_BATCH)
    dimension = await embedder.ensure_dimension()
    texts = [c.text for doc in chunks for c in doc]
    await embedder.embed_documents(texts[:8])  # warm-up: first-call allocations and caches
    vectors: list[list[list[float]]] = []
    with Timer() as t:
        for doc in chunks:
            out: list[list[float]] = []
            for start in range(0, len(doc), EMBED_BATCH):
                out += await embedder.embed_documents([c.text for c in doc[start : start + EMBED_BATCH]])
            vectors.append(out)
    stages.append(
        StageResult(
            "embed", n_chunks, "chunks", t.wall, t.cpu, pages, n_chunks, "per document, batches of 64"
        )
    )

    progress("upsert")
    points = [
        [
            IndexPoint(
                id=point_id(f"doc-{i:04d}", c.index),
                vector=v,
                payload=_payload(f"doc-{i:04d}", f.kind, p.title, c),
            )
            for c, v in zip(doc, vecs, strict=True)
        ]
        for i, (f, p, doc, vecs) in enumerate(zip(files, parsed, chunks, vectors, strict=True))
    ]
    with tempfile.TemporaryDirectory(prefix="keel-bench-ingest-") as tmp:
        index = EdgeIndex(Path(tmp) / "qdrant")
        try:
            await index.ensure_collection(dimension)
            with Timer() as t:
                for doc_points in points:
                    for start in range(0, len(doc_points), EMBED_BATCH):
                        await index.upsert(doc_points[start : start + EMBED_BATCH])
            stored = await index.count()
        finally:
            await index.close()
    stages.append(
        StageResult(
            "upsert", n_chunks, "points", t.wall, t.cpu, pages, n_chunks, f"EdgeIndex, {stored} points stored"
        )
    )
    return Isolated(stages, chunks, parsed)


# ---------------------------------------------------------------- end to end
@dataclass
class EndToEnd:
    result: StageResult
    upload_s: float
    ready: int
    failed: int
    chunks: int
    pdf_pages: int
    first_error: str | None


@contextlib.asynccontextmanager
async def keel_ingest_stack(args: argparse.Namespace) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    """Temporal, a fresh database, the ingest worker and the API; all stopped on exit (also on errors)."""
    async with contextlib.AsyncExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-bench-ingest-")))
        env = await stack.enter_async_context(temporal_dev_server())
        database_url = await stack.enter_async_context(fresh_database(args.postgres_url))
        settings = Settings(
            env="test",
            auth_mode="dev",
            data_dir=data_dir,
            temporal_address=str(env.client.service_client.config.target_host),
            database_url=database_url,
            redis_url=args.redis_url,
            ingest_task_queue=f"keel-ingest-bench-{uuid.uuid4().hex[:8]}",
            chat_task_queue=f"keel-chat-bench-{uuid.uuid4().hex[:8]}",
            qdrant_path=data_dir / "qdrant",
            api_port=free_port(),
            log_level="WARNING",
            log_json=False,
            **({"ingest_batch_concurrency": args.batch_concurrency} if args.batch_concurrency else {}),
        )
        # The worker's knowledge stack (the embedded index has one owner: the worker).
        knowledge = await stack.enter_async_context(open_knowledge(settings))
        await knowledge.embedder.ensure_dimension()  # as workers.runtime does before polling
        await knowledge.embedder.embed_documents(["warm up"])
        activities = await stack.enter_async_context(ingest_activities(settings, knowledge))
        await stack.enter_async_context(build_ingest_worker(env.client, settings, activities))
        await stack.enter_async_context(serving_api(settings))
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=300)
        )
        yield settings, http


async def run_end_to_end(args: argparse.Namespace, files: list[CorpusFile]) -> EndToEnd:
    progress("starting Temporal, a Postgres database, the API and the ingest worker")
    async with keel_ingest_stack(args) as (settings, http):
        resp = await http.post("/api/v1/auth/dev-token", json={"user_id": f"bench-{uuid.uuid4().hex[:6]}"})
        resp.raise_for_status()
        headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        resp = await http.get("/api/v1/knowledge-bases", headers=headers)
        resp.raise_for_status()
        kb_id = next(kb["id"] for kb in resp.json()["knowledge_bases"] if kb["personal"])
        upload = [("files", (f.name, f.data, CONTENT_TYPES[f.kind])) for f in files]
        progress(
            f"uploading {len(files)} files ({sum(len(f.data) for f in files) / 1e6:.1f} MB) "
            f"in one batch, batch concurrency {settings.ingest_batch_concurrency}"
        )
        with Timer() as t:
            posted = time.perf_counter()
            resp = await http.post(
                f"/api/v1/knowledge-bases/{kb_id}/ingestions", files=upload, headers=headers
            )
            upload_s = time.perf_counter() - posted
            resp.raise_for_status()
            batch_id = resp.json()["batch_id"]
            deadline = time.monotonic() + args.timeout
            while True:
                resp = await http.get(f"/api/v1/ingestions/{batch_id}", headers=headers)
                resp.raise_for_status()
                status = resp.json()
                if status["done"]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the batch was not done after {args.timeout:g} s: {status}")
                await asyncio.sleep(POLL_S)
        resp = await http.get(f"/api/v1/knowledge-bases/{kb_id}/documents", headers=headers)
        resp.raise_for_status()
        docs = resp.json()["documents"]
        errors = [
            f"{d['filename']}: {d['error_code']} {d['error_message']}"
            for d in docs
            if d["status"] == "failed"
        ]
        chunks = sum(int(d["chunk_count"]) for d in docs)
        pdf_pages = sum(int(d["page_count"]) for d in docs if d["doc_type"] == "pdf")
        pages = sum(f.pages for f in files)
        progress("stopping")
    result = StageResult(
        "end to end", len(files), "files", t.wall, t.cpu, pages, chunks, "upload + until the batch is done"
    )
    return EndToEnd(
        result,
        upload_s,
        ready=sum(1 for d in docs if d["status"] == "ready"),
        failed=len(errors),
        chunks=chunks,
        pdf_pages=pdf_pages,
        first_error=errors[0] if errors else None,
    )


# ---------------------------------------------------------------- report
def _load() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _corpus_line(files: list[CorpusFile]) -> str:
    by_kind = {k: [f for f in files if f.kind == k] for k in ("pdf", "docx", "markdown")}
    parts = [f"{len(v)} {k} ({sum(f.pages for f in v)} pages)" for k, v in by_kind.items()]
    digest = hashlib.sha256(b"".join(f.data for f in files)).hexdigest()[:12]
    size = sum(len(f.data) for f in files) / 1e6
    return f"corpus: {len(files)} files, {sum(f.pages for f in files)} pages: {', '.join(parts)}; " + (
        f"{size:.1f} MB, sha256 {digest}"
    )


def _row(r: StageResult) -> str:
    return (
        f"{r.name:<16} {f'{r.items} {r.item_kind}':>12} {r.seconds:8.2f} {r.cpu_seconds:7.1f} "
        f"{r.pages_per_s:8.1f} {r.chunks_per_s:9.1f}  {r.note}"
    )


def render(
    args: argparse.Namespace,
    files: list[CorpusFile],
    iso: Isolated,
    e2e: EndToEnd | None,
    load_before: str,
    elapsed_s: float,
) -> str:
    import torch  # already loaded by sentence-transformers

    header = f"{'stage':<16} {'items':>12} {'seconds':>8} {'cpu s':>7} {'pages/s':>8} {'chunks/s':>9}  note"
    out = [
        "",
        "Keel ingestion throughput (pages = nominal pages of the generated corpus; cpu s = CPU time of "
        "this process, all threads; the Temporal server and Postgres are other processes)",
        f"machine: os.cpu_count()={os.cpu_count()}  torch threads={torch.get_num_threads()}  python "
        f"{platform.python_version()}  {platform.system()} {platform.machine()}",
        f"load avg 1/5/15 min: {load_before} before, {_load()} after; {elapsed_s:.0f} s in all",
        _corpus_line(files),
        f"chunks: {sum(len(c) for c in iso.chunks)} ({CHUNK_CHARS} chars, {CHUNK_OVERLAP} overlap); "
        f"embedding model: bundled all-MiniLM-L6-v2 on CPU",
        "",
        header,
        "-" * len(header),
    ]
    out += [_row(r) for r in iso.stages]
    serial = sum(r.seconds for r in iso.stages)
    out.append(
        _row(
            StageResult(
                "sum of stages",
                len(files),
                "files",
                serial,
                sum(r.cpu_seconds for r in iso.stages),
                iso.stages[0].pages,
                iso.stages[0].chunks,
                "parse + chunk + embed + upsert, one after another",
            )
        )
    )
    if e2e is not None:
        out.append(_row(e2e.result))
    embed = next(r for r in iso.stages if r.name == "embed")
    out.append("")
    if e2e is None:
        out.append("end to end: skipped (--skip-e2e)")
        return "\n".join(out)
    ratio = e2e.result.pages_per_s / embed.pages_per_s
    verdict = "ok" if ratio >= TARGET_RATIO else "UNDER"
    out += [
        f"end-to-end pages/s / embedding pages/s = {e2e.result.pages_per_s:.1f} / {embed.pages_per_s:.1f} "
        f"= {ratio:.2f}  (aim >= {TARGET_RATIO}: {verdict}; informational, not asserted)",
        f"the same by CPU time of this process (pages per CPU-second; less sensitive to other load): "
        f"{e2e.result.pages / e2e.result.cpu_seconds:.1f} / {embed.pages / embed.cpu_seconds:.1f} = "
        f"{(e2e.result.pages / e2e.result.cpu_seconds) / (embed.pages / embed.cpu_seconds):.2f}",
        f"end to end: upload (POST .../ingestions) {e2e.upload_s:.2f} s of {e2e.result.seconds:.2f} s; "
        f"{e2e.ready} ready, {e2e.failed} failed; {e2e.chunks} chunks indexed "
        f"(isolated: {sum(len(c) for c in iso.chunks)}); PDF pages counted by Keel {e2e.pdf_pages} "
        f"(generated: {sum(f.pages for f in files if f.kind == 'pdf')})",
    ]
    if e2e.first_error:
        out.append(f"first failure: {e2e.first_error}")
    return "\n".join(out)


# ---------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").split("\n\n")[0]
    p = argparse.ArgumentParser(prog="python -m bench.ingestion", description=doc)
    p.add_argument("--pages", type=int, default=300, help="pages in the generated corpus (default 300)")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated text (default 7)")
    p.add_argument("--skip-e2e", action="store_true", help="only the isolated stages (no services needed)")
    p.add_argument(
        "--batch-concurrency", type=int, default=None, help="KEEL_INGEST_BATCH_CONCURRENCY for the run"
    )
    p.add_argument("--save", type=Path, help="also write the corpus files into this directory")
    p.add_argument(
        "--timeout", type=float, default=3600, help="give up on the end-to-end batch after this many seconds"
    )
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL; a bench DB is made")
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = p.parse_args(argv)
    if args.pages < 1:
        p.error("--pages must be at least 1")
    if args.batch_concurrency is not None and args.batch_concurrency < 1:
        p.error("--batch-concurrency must be at least 1")
    return args


async def amain(args: argparse.Namespace) -> str:
    start, load_before = time.perf_counter(), _load()
    progress(f"generating ~{args.pages} pages (seed {args.seed})")
    files = build_corpus(args.pages, args.seed)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for f in files:
            (args.save / f.name).write_bytes(f.data)
    iso = await run_isolated(files)
    e2e = None if args.skip_e2e else await run_end_to_end(args, files)
    return render(args, files, iso, e2e, load_before, time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(level="WARNING", json=False)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        report = asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted; the stack was stopped and the database dropped", file=sys.stderr)
        return 130
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
