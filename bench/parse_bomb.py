"""DOCX bomb vs. a normal DOCX of about the same file size: parse time and peak memory.

The bomb is one paragraph of ``--xml-mib`` MiB of repeated runs (a few hundred
KiB zipped); the normal file is python-docx output with seeded random prose,
grown until its file size reaches the bomb's. Each case runs in a fresh
process (``multiprocessing`` spawn) whose peak RSS (``VmHWM`` of
/proc/self/status, reset just before the case; it counts lxml's C allocations
too) is printed with its growth over the RSS before the case, and beside them
tracemalloc's peak (Python allocations only). Linux only.

Cases:
- ``keel default``: ``parse_document`` as the worker calls it (per-part cap
  ``KEEL_INGEST_MAX_DOCX_PART_BYTES`` default, time budget 120 s): the bomb is
  refused with its code;
- ``keel streaming, no cap``: the same with the part cap raised above the
  bomb, i.e. what streaming the whole part costs;
- ``python-docx`` (``--python-docx``): ``docx.Document`` loading the file, the
  parser Keel used before issue 9 (slow: minutes for a 200 MiB part).

    .venv/bin/python -m bench.parse_bomb [--xml-mib 64] [--python-docx]

Nothing is asserted: it prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import random
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

_W_NS = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    b"</Types>"
)
_RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
    b'2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def bomb(xml_mib: int) -> bytes:
    run = b"<w:r><w:t>bomb</w:t></w:r>"
    body = b"<w:p>" + run * (xml_mib * 1024 * 1024 // len(run)) + b"</w:p>"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr(
            "word/document.xml", b"<w:document " + _W_NS + b"><w:body>" + body + b"</w:body></w:document>"
        )
    return buffer.getvalue()


def normal(target_bytes: int, *, seed: int = 7) -> bytes:
    from docx import Document

    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rnd.choices(letters, k=rnd.randint(2, 9))) for _ in range(3000)]
    document = Document()
    size = 0
    while size < target_bytes:
        for n in range(200):
            if n % 25 == 0:
                document.add_heading(" ".join(rnd.choices(words, k=4)), level=1 + n % 3)
            document.add_paragraph(" ".join(rnd.choices(words, k=rnd.randint(20, 80))))
        buffer = io.BytesIO()
        document.save(buffer)
        size = len(buffer.getvalue())
    return buffer.getvalue()


def _measure(case: str, data: bytes, xml_bytes: int) -> dict[str, Any]:
    """In a fresh process: run one case, report seconds, outcome and peak memory."""
    from core.errors import KeelError
    from infra.parsing import MAX_DOCX_PART_BYTES, parse_document

    with contextlib.suppress(OSError):  # resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    outcome = "ok"
    try:
        if case == "python-docx":
            from docx import Document

            Document(io.BytesIO(data))
        else:
            cap = MAX_DOCX_PART_BYTES if case == "keel default" else xml_bytes + 1024 * 1024
            parsed = parse_document(data, filename="x.docx", max_part_bytes=cap, timeout_s=120.0)
            outcome = f"ok, {len(parsed.pages[0].text):,} chars"
    except KeelError as err:
        outcome = f"refused: {err.code}"
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status_kib("VmHWM")
    return {
        "seconds": seconds,
        "outcome": outcome,
        "traced_peak_mib": traced_peak / 2**20,
        "rss_peak_mib": rss_peak / 1024,
        "rss_growth_mib": (rss_peak - rss_before) / 1024,
    }


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _xml_size(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.getinfo("word/document.xml").file_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--xml-mib", type=int, default=200, help="the bomb's document.xml, MiB (default 200)")
    parser.add_argument("--python-docx", action="store_true", help="also time python-docx loading each file")
    args = parser.parse_args(argv)

    bomb_data = bomb(args.xml_mib)
    normal_data = normal(len(bomb_data))
    cases = ["keel default", "keel streaming, no cap"] + (["python-docx"] if args.python_docx else [])
    context = multiprocessing.get_context("spawn")
    out = sys.stdout
    out.write(f"os.cpu_count()={os.cpu_count()}  python {sys.version.split()[0]}\n")
    header = f"{'file':<8} {'zip KiB':>8} {'xml MiB':>8}  {'case':<24} {'seconds':>8} {'rss peak MiB':>12}"
    out.write(header + f" {'rss +MiB':>9} {'py peak MiB':>11}  outcome\n")
    for label, data in (("bomb", bomb_data), ("normal", normal_data)):
        xml_bytes = _xml_size(data)
        for case in cases:
            with context.Pool(1) as pool:
                result = pool.apply(_measure, (case, data, xml_bytes))
            out.write(
                f"{label:<8} {len(data) / 1024:>8.0f} {xml_bytes / 2**20:>8.1f}  {case:<24} "
                f"{result['seconds']:>8.2f} {result['rss_peak_mib']:>12.0f} {result['rss_growth_mib']:>9.0f} "
                f"{result['traced_peak_mib']:>11.1f}  {result['outcome']}\n"
            )
            out.flush()


if __name__ == "__main__":
    main()
