"""Chunking strategies for knowledge-base ingestion (pure: no I/O, no clock).

``chunk_document`` turns parsed text (one ``SourceText`` per PDF page, or one for
the whole body of other documents) into ``Chunk``s. The strategy is chosen per
document type (``STRATEGY_BY_TYPE``) unless the caller names one, and the
strategy actually used is recorded on every chunk.

Guarantees, whatever the strategy:
- every chunk's text is at most ``max_chars`` characters and is not blank;
- oversized units are cut with the ``fixed_size`` window (``overlap_chars`` of
  overlap), preferring paragraph, sentence, line and word boundaries;
- chunks are numbered 0..n-1 in document order;
- the result depends only on the arguments (ingestion derives idempotent point
  ids from it), so the same input always gives the same chunks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

DocType = Literal["pdf", "docx", "txt", "markdown", "html", "json"]
Strategy = Literal["fixed_size", "paragraph", "page", "markdown_heading", "json"]

STRATEGY_BY_TYPE: dict[DocType, Strategy] = {
    "pdf": "page",
    "docx": "paragraph",
    "txt": "paragraph",  # fixed_size when the text has no blank lines
    "markdown": "markdown_heading",
    "html": "markdown_heading",  # parsing converts HTML to markdown first
    "json": "json",
}

HEADING_SEPARATOR = " > "


class SourceText(BaseModel):
    """One page of a paged document (``page`` is 1-based) or the whole body (``page`` None)."""

    page: int | None
    text: str


class Chunk(BaseModel):
    index: int
    text: str
    page: int | None
    strategy: Strategy
    heading: str | None = None


def chunk_document(
    sources: Sequence[SourceText],
    *,
    doc_type: DocType,
    strategy: Strategy | None = None,
    max_chars: int = 1200,
    overlap_chars: int = 150,
) -> list[Chunk]:
    """Split a parsed document into chunks of at most ``max_chars`` characters.

    ``overlap_chars`` (capped at half of ``max_chars``) applies where a unit is too
    big and is cut into windows.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    if overlap_chars < 0:
        raise ValueError("overlap_chars must not be negative")
    overlap_chars = min(overlap_chars, max_chars // 2)  # every window moves on by at least half
    texts = [SourceText(page=s.page, text=_normalise(s.text)) for s in sources]
    chosen: Strategy = strategy or STRATEGY_BY_TYPE[doc_type]
    if strategy is None and chosen == "paragraph" and not any(_BLANK_LINE.search(s.text) for s in texts):
        chosen = "fixed_size"
    sizes = _Sizes(max_chars, overlap_chars)
    pieces: list[_Piece]
    if chosen == "json":
        pieces, chosen = _json_pieces(texts, sizes)
    elif chosen == "markdown_heading":
        pieces = _markdown_pieces(texts, sizes)
    elif chosen == "fixed_size":
        pieces = [_Piece(w, s.page) for s in texts for w in split_fixed(s.text, max_chars, overlap_chars)]
    else:  # "paragraph" and "page": blank-line separated units packed, never across pages
        pieces = _paragraph_pieces(texts, sizes)
    kept = [p for p in pieces if p.text.strip()]
    return [
        Chunk(index=i, text=p.text, page=p.page, strategy=chosen, heading=p.heading)
        for i, p in enumerate(kept)
    ]


# ------------------------------------------------------------------ fixed size
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?;\u3002\uff01\uff1f][\"')\]\u201d\u2019]*(?=\s)")
# Break candidates, best first; a match's end is where a chunk may end.
_BREAKS = (
    re.compile(r"\n[ \t]*\n"),  # paragraph
    _SENTENCE_END,
    re.compile(r"\n"),  # line
    re.compile(r"\s"),  # word
)


def split_fixed(text: str, max_chars: int, overlap_chars: int) -> list[str]:
    """Windows of at most ``max_chars`` with about ``overlap_chars`` of overlap, cut at boundaries.

    Each window ends at the best boundary in its second half (paragraph, then
    sentence, line, word; a hard cut only inside a very long word), and the next
    window starts ``overlap_chars`` before that end, moved forward to a word start.
    """
    if max_chars < 1 or not 0 <= overlap_chars < max_chars:
        raise ValueError("need max_chars >= 1 and 0 <= overlap_chars < max_chars")
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    out: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + max_chars, n)
        if end < n:
            end = _break_before(text, start + max(max_chars // 2, overlap_chars + 1), end)
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        if end >= n:
            break
        start = _next_start(text, max(end - overlap_chars, start + 1), end, overlap_chars)
    return out


_SPACES = re.compile(r"\s+")


def _break_before(text: str, lo: int, hi: int) -> int:
    """The best place in ``(lo, hi]`` to end a window that may not pass ``hi``."""
    window = text[lo : hi + 1]  # one more character so lookaheads see what follows
    for pattern in _BREAKS:
        best = -1
        for match in pattern.finditer(window):
            if lo + match.end() <= hi and match.end() > 0:
                best = match.end()
        if best > 0:
            return lo + best
    return hi


def _next_start(text: str, pos: int, limit: int, overlap_chars: int) -> int:
    """Where the next window starts: ``pos``, moved to a sentence start in the first half of the
    overlap if there is one, else past the rest of a word (never reaching ``limit``)."""
    if pos == 0 or (text[pos - 1].isspace() and _SENTENCE_END.search(text, max(pos - 3, 0), pos)):
        return pos
    sentence = _SENTENCE_END.search(text, pos, min(pos + overlap_chars // 2, limit))
    if sentence:
        space = _SPACES.match(text, sentence.end())
        if space and space.end() < limit:
            return space.end()
    if text[pos - 1].isspace():
        return pos
    space = _SPACES.search(text, pos, limit)
    return space.end() if space and space.end() < limit else pos


# ------------------------------------------------------------------ packing
@dataclass(frozen=True)
class _Sizes:
    max_chars: int
    overlap_chars: int


@dataclass(frozen=True)
class _Piece:
    text: str
    page: int | None
    heading: str | None = None


@dataclass(frozen=True)
class _Unit:
    """Something to keep whole when it fits; ``parts`` (joined by ``part_sep``) are packed when not."""

    text: str
    heading: str | None = None
    parts: Sequence[_Unit] = ()
    part_sep: str = "\n\n"


def _pack(units: Iterable[_Unit], sep: str, page: int | None, sizes: _Sizes) -> list[_Piece]:
    """Consecutive units joined by ``sep`` up to ``max_chars`` (heading: the first unit's).

    A unit larger than ``max_chars`` is flushed on its own: its parts packed the
    same way, or, without parts, cut by ``split_fixed``.
    """
    out: list[_Piece] = []
    buf: list[str] = []
    heading: str | None = None
    size = 0
    for unit in units:
        text = unit.text.strip()
        if not text:
            continue
        if len(text) > sizes.max_chars:
            if buf:
                out.append(_Piece(sep.join(buf), page, heading))
                buf, size = [], 0
            if len(unit.parts) > 1:
                out.extend(_pack(unit.parts, unit.part_sep, page, sizes))
            else:
                out.extend(
                    _Piece(w, page, unit.heading)
                    for w in split_fixed(text, sizes.max_chars, sizes.overlap_chars)
                )
            continue
        added = len(text) + (len(sep) if buf else 0)
        if buf and size + added > sizes.max_chars:
            out.append(_Piece(sep.join(buf), page, heading))
            buf, size, added = [], 0, len(text)
        if not buf:
            heading = unit.heading
        buf.append(text)
        size += added
    if buf:
        out.append(_Piece(sep.join(buf), page, heading))
    return out


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _BLANK_LINE.split(text) if p.strip()]


def _paragraph_pieces(texts: Sequence[SourceText], sizes: _Sizes) -> list[_Piece]:
    return [p for s in texts for p in _pack((_Unit(t) for t in _paragraphs(s.text)), "\n\n", s.page, sizes)]


# ------------------------------------------------------------------ markdown headings
_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _sections(text: str, stack: list[tuple[int, str]]) -> Iterator[_Unit]:
    """Sections split on ATX headings outside code fences; ``stack`` (the heading path) carries over."""
    heading, lines = _path(stack), list[str]()
    fence: str | None = None
    for line in text.split("\n"):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        match = None if fence is not None or fence_match else _HEADING.match(line)
        title = _heading_title(match.group(2)) if match else ""
        if match and title:
            yield _section(heading, lines)
            level = len(match.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            heading, lines = _path(stack), [line]
        else:
            lines.append(line)
    yield _section(heading, lines)


def first_heading(markdown: str) -> str | None:
    """The text of the first ``#`` heading outside code fences (a document's title)."""
    for section in _sections(_normalise(markdown), []):
        if section.heading is not None:
            return section.heading
    return None


def _heading_title(raw: str | None) -> str:
    """An ATX heading's text without its optional closing ``#``s (linear: no regex backtracking)."""
    title = (raw or "").strip()
    unclosed = title.rstrip("#")
    if unclosed != title and (not unclosed or unclosed[-1] in " \t"):
        title = unclosed.strip()
    return " ".join(title.split())


def _section(heading: str | None, lines: list[str]) -> _Unit:
    body = "\n".join(lines).strip()
    return _Unit(body, heading, [_Unit(p, heading) for p in _paragraphs(body)])


def _path(stack: list[tuple[int, str]]) -> str | None:
    return HEADING_SEPARATOR.join(title for _, title in stack) or None


def _markdown_pieces(texts: Sequence[SourceText], sizes: _Sizes) -> list[_Piece]:
    stack: list[tuple[int, str]] = []
    return [p for s in texts for p in _pack(_sections(s.text, stack), "\n\n", s.page, sizes)]


# ------------------------------------------------------------------ json
def _json_pieces(texts: Sequence[SourceText], sizes: _Sizes) -> tuple[list[_Piece], Strategy]:
    """Top-level keys (heading: the key) or array items as units of ``path: value`` lines.

    Text that is not JSON (or too deeply nested to walk) is chunked by paragraphs
    instead, and recorded so.
    """
    try:
        value = json.loads("\n".join(s.text for s in texts))
        units: list[_Unit]
        if isinstance(value, dict):
            units = [_json_unit(v, _key_path("", str(k)), str(k), 1) for k, v in value.items()]
        elif isinstance(value, list):
            units = [_json_unit(v, f"[{i}]", None, 1) for i, v in enumerate(value)]
        else:
            units = [_json_unit(value, "", None, 0)]
    except (ValueError, RecursionError):
        return _paragraph_pieces(texts, sizes), "paragraph"
    page = texts[0].page if len(texts) == 1 else None
    return _pack(units, "\n", page, sizes), "json"


# Below this depth a value is written as compact JSON on its path's line.
JSON_MAX_DEPTH = 32


def _json_unit(value: Any, path: str, heading: str | None, depth: int) -> _Unit:
    """``path: value`` lines of ``value``; its members are the parts, so a big unit splits by structure."""
    children: list[_Unit] = []
    if depth < JSON_MAX_DEPTH and isinstance(value, dict):
        children = [_json_unit(v, _key_path(path, str(k)), heading, depth + 1) for k, v in value.items()]
    elif depth < JSON_MAX_DEPTH and isinstance(value, list):
        children = [_json_unit(v, f"{path}[{i}]", heading, depth + 1) for i, v in enumerate(value)]
    if children:
        return _Unit("\n".join(c.text for c in children), heading, children, "\n")
    return _Unit(f"{path}: {_scalar(value)}" if path else _scalar(value), heading)


_PLAIN_KEY = re.compile(r"^[^.\[\]\s:]+$")


def _key_path(prefix: str, key: str) -> str:
    part = key if _PLAIN_KEY.match(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())  # one line per value
    return json.dumps(value, ensure_ascii=False)


# ------------------------------------------------------------------ helpers
def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
