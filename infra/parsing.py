"""Turn uploaded bytes into text for chunking: type detection by content, then one parser per type.

Every failure a user can cause is a ``KeelError`` with a code from ``core.errors``
and a message safe to show them (what is wrong with the file, never a trace):
unsupported type, extension/content mismatch, empty, corrupt, encrypted, too
many pages, too complex (a DOCX part that unpacks too big), too slow (the
parse outlived its time budget). Anything else escaping from here is a bug of ours.
"""

from __future__ import annotations

import io
import json
import re
import string
import zipfile
from collections.abc import Callable
from html import unescape
from pathlib import PurePosixPath, PureWindowsPath

import html2text
from pydantic import BaseModel
from pypdf import PasswordType, PdfReader

from core.errors import ErrorCode, KeelError
from core.ingest.chunking import DocType, SourceText, first_heading
from infra.docx_text import read_docx
from infra.parse_budget import Deadline

# Uncompressed size a .docx may unpack to (guards against zip bombs).
MAX_DOCX_UNPACKED_BYTES = 256 * 1024 * 1024
# Uncompressed size of one XML part of a .docx (document.xml, styles.xml, ...) that is read.
MAX_DOCX_PART_BYTES = 64 * 1024 * 1024

SUPPORTED = (
    "PDF (.pdf), Word (.docx), text (.txt), Markdown (.md, .markdown), HTML (.html, .htm), JSON (.json)"
)

_TYPE_BY_EXTENSION: dict[str, DocType] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "txt",
    ".text": "txt",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
}
_TYPE_BY_CONTENT_TYPE: dict[str, DocType] = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/plain": "txt",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/json": "json",
}
_DESCRIPTION: dict[DocType, str] = {
    "pdf": "a PDF",
    "docx": "a Word document (.docx)",
    "txt": "plain (UTF-8) text",
    "markdown": "Markdown",
    "html": "HTML",
    "json": "JSON",
}
# Recognisable binary formats we do not ingest, for clearer messages.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls/.ppt)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{\\rtf", "an RTF document"),
)
_HTML_ROOT = re.compile(r"<(?:!doctype\s+html|html)\b", re.I)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class ParsedDocument(BaseModel):
    doc_type: DocType
    title: str | None
    pages: list[SourceText]  # PDF: one per page (page numbers from 1); otherwise one (page None)
    page_count: int


def detect_type(
    *, filename: str, content_type: str | None, data: bytes, max_unpacked_bytes: int = MAX_DOCX_UNPACKED_BYTES
) -> DocType:
    """The document type, decided by the bytes; the name (or declared type) must agree with them."""
    if not data or data.isspace():
        raise KeelError(ErrorCode.DOCUMENT_EMPTY, "The file is empty.")
    claimed, claim = _claimed_type(filename, content_type)
    sniffed = _sniff_binary(data, claimed, claim, max_unpacked_bytes)
    if sniffed is not None:
        return sniffed
    text = _decode(data)
    if text is None:
        if claimed is None:
            raise _unsupported(f"This file is {_binary_description(data)}, which is not supported")
        raise _mismatch(claim, claimed, _binary_description(data))
    if claimed in ("pdf", "docx"):
        raise _mismatch(claim, claimed, _text_description(text))
    return _text_type(text, claimed, claim)


def parse_document(
    data: bytes,
    *,
    filename: str,
    content_type: str | None = None,
    max_pages: int = 2000,
    on_page: Callable[[int], None] | None = None,
    max_unpacked_bytes: int = MAX_DOCX_UNPACKED_BYTES,
    max_part_bytes: int = MAX_DOCX_PART_BYTES,
    timeout_s: float | None = None,
) -> ParsedDocument:
    """Detect the type and extract text (PDF pages, DOCX as markdown-ish text, HTML as markdown).

    ``on_page(n)`` is called after each extracted page (once for unpaged types) so
    a long parse can heartbeat. ``timeout_s`` bounds the parse (checked between
    DOCX XML chunks and PDF pages): beyond it, ``parse_timeout``.
    """
    deadline = Deadline(timeout_s)
    doc_type = detect_type(
        filename=filename, content_type=content_type, data=data, max_unpacked_bytes=max_unpacked_bytes
    )
    if doc_type == "pdf":
        parsed = _parse_pdf(data, max_pages=max_pages, on_page=on_page, deadline=deadline)
    else:
        if doc_type == "docx":
            core_title, text = read_docx(data, max_part_bytes=max_part_bytes, deadline=deadline)
            title = _clean_title(core_title) or _first_title(text)
        else:
            title, text = _parse_text(_decode(data) or "", doc_type)
        parsed = ParsedDocument(
            doc_type=doc_type, title=title, pages=[SourceText(page=None, text=text)], page_count=1
        )
        if on_page is not None:
            on_page(1)
    if not any(p.text.strip() for p in parsed.pages):
        what = "no extractable text (scanned images are not supported)" if doc_type == "pdf" else "no text"
        raise KeelError(ErrorCode.DOCUMENT_EMPTY, f"The document contains {what}.")
    return parsed


# ------------------------------------------------------------------ detection
def _claimed_type(filename: str, content_type: str | None) -> tuple[DocType | None, str]:
    """What the upload says it is, and how to name that claim in a message."""
    name = PureWindowsPath(PurePosixPath(filename).name).name
    ext = PurePosixPath(name.lower()).suffix
    if ext in _TYPE_BY_EXTENSION:
        return _TYPE_BY_EXTENSION[ext], f"named {ext}"
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _TYPE_BY_CONTENT_TYPE:
        return _TYPE_BY_CONTENT_TYPE[mime], f"declared as {mime}"
    if ext:
        return None, f"Unsupported file type '{ext[:20]}'"
    return None, "Unsupported file: it has no extension and its content is not recognised"


def _sniff_binary(
    data: bytes, claimed: DocType | None, claim: str, max_unpacked_bytes: int
) -> DocType | None:
    if data[:1024].lstrip().startswith(b"%PDF-"):
        if claimed not in (None, "pdf"):
            raise _mismatch(claim, claimed, "a PDF")
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        kind = _zip_kind(data, claimed, max_unpacked_bytes)
        if kind == "docx" and claimed in (None, "docx"):
            return "docx"
        what = "a Word document (.docx)" if kind == "docx" else kind
        if claimed is None:
            raise _unsupported(f"This file is {what}, which is not supported")
        raise _mismatch(claim, claimed, what)
    return None


def _zip_kind(data: bytes, claimed: DocType | None, max_unpacked_bytes: int) -> str:
    """``"docx"`` or a description of the ZIP archive; a broken one claimed as .docx is corrupt."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if claimed == "docx":
            raise KeelError(
                ErrorCode.DOCUMENT_CORRUPT, "The Word document is damaged and cannot be read."
            ) from exc
        return "a damaged ZIP archive"
    if "word/document.xml" in names:
        if unpacked > max_unpacked_bytes:
            raise KeelError(
                ErrorCode.DOCUMENT_TOO_LARGE,
                f"The Word document unpacks to more than {max_unpacked_bytes} bytes.",
            )
        return "docx"
    if "xl/workbook.xml" in names:
        return "an Excel workbook (.xlsx)"
    if "ppt/presentation.xml" in names:
        return "a PowerPoint presentation (.pptx)"
    return "a ZIP archive"


def _decode(data: bytes) -> str | None:
    """UTF-8 (BOM optional) or BOM-marked UTF-16 text; None for binary data."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def _text_type(text: str, claimed: DocType | None, claim: str) -> DocType:
    looks_html = _looks_like_html(text)
    if claimed == "json":
        try:
            json.loads(text)
        except RecursionError as exc:
            raise KeelError(ErrorCode.DOCUMENT_TOO_LARGE, "The JSON document is nested too deeply.") from exc
        except ValueError as exc:
            if looks_html:
                raise _mismatch(claim, claimed, "HTML") from exc
            raise KeelError(
                ErrorCode.DOCUMENT_CORRUPT, f"The file is not valid JSON ({_json_error(exc)})."
            ) from exc
        return "json"
    if looks_html:
        return "html"
    if claimed == "html":
        return "html"
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(value, dict | list):
                return "json"
    if claimed in ("markdown", "txt"):
        return claimed
    raise _unsupported(claim)


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return "unreadable"


def _binary_description(data: bytes) -> str:
    for magic, what in _SIGNATURES:
        if data.startswith(magic):
            return what
    return "binary data"


def _text_description(text: str) -> str:
    if _looks_like_html(text):
        return "HTML"
    return "text"


def _mismatch(claim: str, claimed: DocType, found: str) -> KeelError:
    return KeelError(
        ErrorCode.CONTENT_MISMATCH,
        f"The file is {claim} but its content is {found}, not {_DESCRIPTION[claimed]}.",
    )


def _unsupported(claim: str) -> KeelError:
    """``claim``: the opening sentence, e.g. ``_claimed_type``'s for a type it does not know."""
    return KeelError(
        ErrorCode.UNSUPPORTED_TYPE,
        f"{claim}. Supported: {SUPPORTED}.",
    )


# ------------------------------------------------------------------ PDF
def _parse_pdf(
    data: bytes, *, max_pages: int, on_page: Callable[[int], None] | None, deadline: Deadline
) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf raises many kinds on malformed input
        raise KeelError(ErrorCode.DOCUMENT_CORRUPT, "The PDF is damaged and cannot be read.") from exc
    if encrypted and not _open_without_password(reader):
        raise KeelError(
            ErrorCode.DOCUMENT_ENCRYPTED, "The PDF is password-protected; upload a copy without a password."
        )
    # The page tree's declared count first: flattening thousands of pages costs seconds.
    for counted in (_declared_page_count, _real_page_count):
        count = counted(reader)
        if count > max_pages:
            raise KeelError(
                ErrorCode.DOCUMENT_TOO_LARGE,
                f"The PDF has {count} pages; at most {max_pages} pages can be ingested.",
            )
    if count == 0:
        raise KeelError(ErrorCode.DOCUMENT_EMPTY, "The PDF has no pages.")
    pages: list[SourceText] = []
    for number in range(1, count + 1):
        deadline.check()
        try:
            text = reader.pages[number - 1].extract_text()
        except Exception as exc:
            raise KeelError(ErrorCode.DOCUMENT_CORRUPT, f"Page {number} of the PDF is damaged.") from exc
        pages.append(SourceText(page=number, text=_clean(text)))
        if on_page is not None:
            on_page(number)
    return ParsedDocument(doc_type="pdf", title=_pdf_title(reader), pages=pages, page_count=count)


def _declared_page_count(reader: PdfReader) -> int:
    try:
        pages = reader.root_object["/Pages"].get_object()
        return max(int(pages["/Count"]), 0)  # type: ignore[index]
    except Exception:  # a broken page tree is judged when the pages are read
        return 0


def _real_page_count(reader: PdfReader) -> int:
    try:
        return len(reader.pages)
    except Exception as exc:
        raise KeelError(ErrorCode.DOCUMENT_CORRUPT, "The PDF is damaged and cannot be read.") from exc


def _open_without_password(reader: PdfReader) -> bool:
    """Whether an encrypted PDF opens with the empty user password (owner-only protection)."""
    try:
        return reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except Exception:  # e.g. an unsupported encryption handler
        return False


def _pdf_title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a damaged info dictionary only costs the title
        return None
    return _clean_title(title)


# ------------------------------------------------------------------ text, markdown, HTML, JSON
def _parse_text(text: str, doc_type: DocType) -> tuple[str | None, str]:
    if doc_type == "html":
        title = _html_title(text)
        try:
            body = _html_to_markdown(text)
        except Exception as exc:
            raise KeelError(ErrorCode.DOCUMENT_CORRUPT, "The HTML document cannot be read.") from exc
        return title or _first_title(body), _clean(body)
    if doc_type == "json":
        value = json.loads(text)
        if value in ({}, []):
            raise KeelError(ErrorCode.DOCUMENT_EMPTY, "The JSON document contains no data.")
        return None, _clean(text)
    if doc_type == "markdown":
        return _first_title(text), _clean(text)
    return None, _clean(text)


def _html_to_markdown(html: str) -> str:
    converter = html2text.HTML2Text()
    converter.ignore_images = True
    converter.ignore_links = True  # keeps the link text, drops the URL
    converter.ignore_emphasis = True
    converter.body_width = 0  # no hard wrapping
    converter.unicode_snob = True
    # <head>, <script> and <style> contents are dropped by html2text itself
    return converter.handle(_defuse_html(html))


# Python's HTMLParser (under html2text) rescans to the end of the input for every
# unterminated construct, so a few hundred KB of "<!--x>" or "<a" take minutes
# (CPython gh-135462, fixed in 3.11.13). Making every construct complete, in
# linear time, keeps parsing linear on any Python.
_LONE_LT = re.compile(r"<(?![^<]*>)")  # a "<" with no ">" before the next "<"
_BAD_CHARREF = re.compile(r"&#(?!(?:[0-9]+|[xX][0-9a-fA-F]+)[^0-9a-fA-F])")


def _defuse_html(html: str) -> str:
    parts: list[str] = []
    pos = 0
    while (start := html.find("<!--", pos)) >= 0:  # comments are dropped anyway
        end = html.find("-->", start + 4)
        if end < 0:  # no comment after this one can be closed either: show them as text
            parts.append(html[pos:start] + html[start:].replace("<!--", "&lt;!--"))
            pos = len(html)
            break
        parts.append(html[pos:start])
        pos = end + 3
    parts.append(html[pos:])
    html = "".join(parts).replace("<![", "&lt;![")  # CDATA and marked sections
    html = _LONE_LT.sub("&lt;", html)
    return _BAD_CHARREF.sub("&amp;#", html)


def _looks_like_html(text: str) -> bool:
    """``<!doctype html`` or ``<html`` first, after any XML declaration and comments."""
    head = text[:4096].lstrip()
    if head.startswith("<?xml"):
        head = head[head.find(">") + 1 :].lstrip() if ">" in head else ""
    while head.startswith("<!--"):
        end = head.find("-->", 4)
        head = head[end + 3 :].lstrip() if end >= 0 else ""
    return bool(_HTML_ROOT.match(head))


def _html_title(html: str) -> str | None:
    """The first ``<title>``'s text (found with ``find``: no regex backtracking on hostile input)."""
    lower = html[:65536].translate(_ASCII_LOWER)  # str.lower() may change lengths
    start = lower.find("<title")
    opened = lower.find(">", start) if start >= 0 else -1
    end = lower.find("</title", opened) if opened >= 0 else -1
    if end < 0:
        return None
    return _clean_title(unescape(re.sub(r"<[^>]*>", "", html[opened + 1 : end])))


def _first_title(markdown: str) -> str | None:
    return _clean_title(first_heading(markdown))


def _clean_title(title: str | None) -> str | None:
    if not title:
        return None
    cleaned = " ".join(str(title).replace("\x00", "").split())
    return cleaned[:300] or None


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
