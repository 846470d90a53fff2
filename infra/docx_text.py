"""Word (.docx) text by streaming the package's XML: bounded memory and time.

python-docx loads the whole ``word/document.xml`` into an lxml tree; a small
file that unpacks to hundreds of MB of XML then costs minutes and gigabytes.
Here each part is read from the ZIP in chunks (refused above
``max_part_bytes`` unpacked, ``document_too_complex``) and fed to expat; the
handlers keep only the text of the block being read, and the deadline is
checked after every chunk (``parse_timeout``).

The output is python-docx's, as ``infra.parsing`` used it: the body's direct
paragraphs and tables in order; a paragraph's text is its runs' (direct or in
a hyperlink) ``w:t``, tabs, line breaks and non-breaking hyphens; a heading or
title style becomes ``#`` markers; a table row is its cells joined by ``|``
(a merged cell once, a vertically merged one repeated on each row it spans).
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from xml.parsers import expat

from core.errors import ErrorCode, KeelError
from infra.parse_budget import Deadline

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main "
_DC_TITLE = "http://purl.org/dc/elements/1.1/ title"
_READ_BYTES = 256 * 1024
_HEADING = re.compile(r"^heading\s*([1-9])$", re.I)

DOCUMENT, BODY, P, R, T, HYPERLINK, TBL, TR, TC = (
    _W + name for name in ("document", "body", "p", "r", "t", "hyperlink", "tbl", "tr", "tc")
)
_RUN_TEXT = {_W + "tab": "\t", _W + "ptab": "\t", _W + "cr": "\n", _W + "noBreakHyphen": "-"}
_VAL = _W + "val"


def _corrupt() -> KeelError:
    return KeelError(ErrorCode.DOCUMENT_CORRUPT, "The Word document is damaged and cannot be read.")


def read_docx(data: bytes, *, max_part_bytes: int, deadline: Deadline) -> tuple[str | None, str]:
    """(the title of the core properties, the text as markdown-ish blocks)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            styles = _Styles()
            if "word/styles.xml" in names:
                _stream(archive, "word/styles.xml", styles, max_part_bytes, deadline)
            core = _CoreTitle()
            if "docProps/core.xml" in names:
                _stream(archive, "docProps/core.xml", core, max_part_bytes, deadline)
            body = _Body(styles)
            _stream(archive, "word/document.xml", body, max_part_bytes, deadline)
    except KeelError:
        raise
    except (zipfile.BadZipFile, expat.ExpatError, OSError, ValueError, EOFError, KeyError, zlib.error) as exc:
        raise _corrupt() from exc
    except NotImplementedError as exc:  # an unsupported compression method
        raise _corrupt() from exc
    if not body.seen_root:
        raise _corrupt()
    return core.title, "\n\n".join(b for b in body.blocks if b)


class _Handler:
    def __init__(self) -> None:
        self.path: list[str] = []

    def start(self, name: str, attrs: dict[str, str]) -> None:
        raise NotImplementedError

    def end(self, name: str) -> None:
        raise NotImplementedError

    def data(self, text: str) -> None:
        return None


def _refuse_dtd(*_: object) -> None:
    raise _corrupt()  # Word never writes a DTD; refusing one rules out entity expansion


def _stream(
    archive: zipfile.ZipFile, name: str, handler: _Handler, max_part_bytes: int, deadline: Deadline
) -> None:
    info = archive.getinfo(name)
    if info.file_size > max_part_bytes:
        raise _too_complex(name, max_part_bytes)
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.data
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    read = 0
    with archive.open(info) as stream:
        while chunk := stream.read(_READ_BYTES):
            read += len(chunk)
            if read > max_part_bytes:  # the directory's size lied
                raise _too_complex(name, max_part_bytes)
            parser.Parse(chunk, False)
            deadline.check()
    parser.Parse(b"", True)


def _too_complex(name: str, max_part_bytes: int) -> KeelError:
    return KeelError(
        ErrorCode.DOCUMENT_TOO_COMPLEX,
        f"The Word document's part {name} unpacks to more than {max_part_bytes} bytes of XML; "
        "save it again or split it into smaller documents.",
    )


class _Styles(_Handler):
    """Paragraph style id → name, and the name of the default paragraph style."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}
        self.default: str = ""
        self._style: dict[str, str] | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        depth = len(self.path)
        self.path.append(name)
        if depth == 1 and name == _W + "style":
            self._style = attrs
        elif depth == 2 and name == _W + "name" and self._style is not None:
            self._style = {**self._style, "name": attrs.get(_VAL, "")}

    def end(self, name: str) -> None:
        self.path.pop()
        style = self._style
        if len(self.path) == 1 and style is not None:
            self._style = None
            if style.get(_W + "type") == "paragraph":
                style_name = style.get("name", "")
                self.names[style.get(_W + "styleId", "")] = style_name
                if style.get(_W + "default") in ("1", "true", "on"):
                    self.default = style_name

    def name_of(self, style_id: str | None) -> str:
        if style_id is None:
            return self.default
        return self.names.get(style_id, self.default)


class _CoreTitle(_Handler):
    def __init__(self) -> None:
        super().__init__()
        self._parts: list[str] | None = None
        self.title: str | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if len(self.path) == 1 and name == _DC_TITLE:
            self._parts = []
        self.path.append(name)

    def end(self, name: str) -> None:
        self.path.pop()
        if len(self.path) == 1 and self._parts is not None:
            self.title = "".join(self._parts)
            self._parts = None

    def data(self, text: str) -> None:
        if self._parts is not None and len(self.path) == 2:
            self._parts.append(text)


class _Body(_Handler):
    """Blocks of ``w:body``; only the open paragraph's (or table's) text is held."""

    def __init__(self, styles: _Styles) -> None:
        super().__init__()
        self.styles = styles
        self.blocks: list[str] = []
        self.seen_root = False
        self._p_depth = -1  # depth of the open paragraph that counts, else -1
        self._r_depth = -1  # depth of the open run that counts
        self._text: io.StringIO | None = None  # the open paragraph's text
        self._in_t = False
        self._style_id: str | None = None
        # tables (body level only, as python-docx's iter_inner_content)
        self._rows: list[str] = []
        self._cells: list[str] = []
        self._cell_paragraphs: list[str] = []
        self._above: dict[int, str] = {}  # grid offset → text, for vertically merged cells
        self._row: dict[int, str] = {}
        self._offset = 0
        self._span = 1
        self._continues = False

    def _in_row(self) -> bool:
        """Whether the path goes through a row of a body-level table (document/body/tbl/tr/…)."""
        return len(self.path) > 3 and self.path[2] == TBL and self.path[3] == TR

    def start(self, name: str, attrs: dict[str, str]) -> None:
        path = self.path
        depth = len(path)
        path.append(name)
        if depth == 0:
            if name != DOCUMENT:
                raise _corrupt()
            self.seen_root = True
            return
        if depth == 1 or path[1] != BODY:
            return
        p_depth = self._p_depth
        if p_depth >= 0:
            self._paragraph_start(name, attrs, depth, p_depth)
        elif name == P and (depth == 2 or (depth == 5 and self._in_row() and path[4] == TC)):
            self._p_depth = depth
            self._text = io.StringIO()
            self._style_id = None
        else:
            self._table_start(name, attrs, depth)

    def _table_start(self, name: str, attrs: dict[str, str], depth: int) -> None:
        path = self.path
        if depth == 2 and name == TBL:
            self._rows, self._above = [], {}
        elif depth == 3 and name == TR and path[2] == TBL:
            self._cells, self._row, self._offset = [], {}, 0
        elif depth == 4 and name == TC and self._in_row():
            self._cell_paragraphs, self._span, self._continues = [], 1, False
        elif depth == 5 and self._in_row() and path[4] == _W + "trPr" and name == _W + "gridBefore":
            self._offset = _int(attrs.get(_VAL), 0)
        elif depth == 6 and self._in_row() and path[4] == TC and path[5] == _W + "tcPr":
            if name == _W + "gridSpan":
                self._span = max(_int(attrs.get(_VAL), 1), 1)
            elif name == _W + "vMerge":
                self._continues = attrs.get(_VAL, "continue") == "continue"

    def _paragraph_start(self, name: str, attrs: dict[str, str], depth: int, p_depth: int) -> None:
        path = self.path
        r_depth = self._r_depth
        if r_depth >= 0:
            if depth != r_depth + 1 or self._text is None:
                return
            if name == T:
                self._in_t = True
            elif name in _RUN_TEXT:
                self._text.write(_RUN_TEXT[name])
            elif name == _W + "br" and attrs.get(_W + "type", "textWrapping") == "textWrapping":
                self._text.write("\n")
        elif name == R and (
            depth == p_depth + 1 or (depth == p_depth + 2 and path[p_depth + 1] == HYPERLINK)
        ):
            self._r_depth = depth
        elif depth == p_depth + 2 and name == _W + "pStyle" and path[p_depth + 1] == _W + "pPr":
            self._style_id = attrs.get(_VAL)

    def end(self, name: str) -> None:
        path = self.path
        path.pop()
        depth = len(path)
        if depth < 2 or path[1] != BODY:
            return
        if depth == self._r_depth + 1 and name == T:
            self._in_t = False
        elif depth == self._r_depth:
            self._r_depth = -1
        elif depth == self._p_depth:
            self._paragraph_end(depth)
        elif self._p_depth >= 0:
            return
        elif depth == 4 and name == TC and self._in_row():
            self._cell_end()
        elif depth == 3 and name == TR and path[2] == TBL:
            if any(self._cells):
                self._rows.append(" | ".join(self._cells))
            self._above = self._row
        elif depth == 2 and name == TBL:
            self.blocks.append("\n".join(self._rows))
            self._rows, self._above = [], {}

    def _paragraph_end(self, depth: int) -> None:
        text = self._text.getvalue() if self._text is not None else ""
        self._text, self._p_depth, self._in_t = None, -1, False
        if depth == 2:
            self.blocks.append(_paragraph_block(text, self.styles.name_of(self._style_id)))
        else:
            self._cell_paragraphs.append(text)

    def _cell_end(self) -> None:
        if self._continues:
            text = self._above.get(self._offset, "")
        else:
            text = " ".join("\n".join(self._cell_paragraphs).split())
        self._cell_paragraphs = []
        self._row[self._offset] = text
        self._cells.append(text)
        self._offset += self._span

    def data(self, text: str) -> None:
        if self._in_t and self._text is not None:
            self._text.write(text)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _paragraph_block(text: str, style: str) -> str:
    text = text.strip()
    if not text:
        return ""
    level = _HEADING.match(style.strip())
    if level:
        return f"{'#' * int(level.group(1))} {' '.join(text.split())}"
    if style.strip().lower() == "title":
        return f"# {' '.join(text.split())}"
    return text
