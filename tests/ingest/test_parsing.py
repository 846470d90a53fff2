"""Parsing real files (built here): type detection, text extraction and every error code."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from docx import Document
from pypdf import PdfReader, PdfWriter

from core.errors import ErrorCode, KeelError
from core.ingest.chunking import chunk_document
from infra.parsing import MAX_DOCX_PART_BYTES, ParsedDocument, detect_type, parse_document


# ------------------------------------------------------------------ fixtures
def build_pdf(pages: list[str], *, title: str | None = None) -> bytes:
    """A minimal valid PDF: Helvetica text, one content stream per distinct page text."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    catalog, tree, font = 1, 2, 3
    streams: dict[str, int] = {}
    kids: list[int] = []
    for text in pages:
        if text not in streams:
            lines = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").split("\n")
            ops = "BT /F1 12 Tf 14 TL 72 720 Td " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
            data = ops.encode("latin-1")
            objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data))
            streams[text] = len(objects)
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (tree, font, streams[text])
        )
        kids.append(len(objects))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    info = b""
    if title is not None:
        objects.append(b"<< /Title (%s) >>" % title.encode("latin-1"))
        info = b" /Info %d 0 R" % len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        info,
        xref,
    )
    return bytes(out)


def encrypt_pdf(data: bytes, user_password: str, owner_password: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def build_docx(*, title: str | None = "Quarterly Report") -> bytes:
    document = Document()
    if title is not None:
        document.core_properties.title = title
    document.add_heading("Overview", level=1)
    document.add_paragraph("Revenue grew in every region.")
    document.add_paragraph("")  # empty paragraphs are skipped
    document.add_heading("Details", level=2)
    table = document.add_table(rows=3, cols=3)
    for row, values in zip(table.rows, [("Region", "Q1", "Q2"), ("North", "10", "12")], strict=False):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    table.cell(2, 0).merge(table.cell(2, 2)).text = "Total 22"  # one cell spanning the row
    document.add_paragraph("Closing remarks.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def zip_with(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


_W_NS = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_PACKAGE = {
    "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    b'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
    b'"/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
    b'document.main+xml"/><Override PartName="/word/styles.xml" ContentType="application/vnd.'
    b'openxmlformats-officedocument.wordprocessingml.styles+xml"/></Types>',
    "_rels/.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    b'2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
    b'2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>',
    "word/_rels/document.xml.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.'
    b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    b'openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>',
    "word/styles.xml": b"<w:styles " + _W_NS + b'><w:style w:type="paragraph" w:default="1" '
    b'w:styleId="Normal"><w:name w:val="Normal"/></w:style><w:style w:type="paragraph" '
    b'w:styleId="Heading2"><w:name w:val="heading 2"/></w:style></w:styles>',
}


def docx_with_body(body: bytes, *, prolog: bytes = b"") -> bytes:
    """A minimal Word package whose ``w:body`` holds ``body`` (written by hand, so any size)."""
    document = prolog + b"<w:document " + _W_NS + b"><w:body>" + body + b"</w:body></w:document>"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, part in _PACKAGE.items():
            archive.writestr(name, part)
        archive.writestr("word/document.xml", document)
    return buffer.getvalue()


def bomb_docx(xml_bytes: int) -> bytes:
    """One paragraph of ``xml_bytes`` of repeated runs: a small file, a huge part."""
    run = b"<w:r><w:t>bomb</w:t></w:r>"
    return docx_with_body(b"<w:p>" + run * (xml_bytes // len(run)) + b"</w:p>")


HTML = b"""<!DOCTYPE html>
<html><head><title>Team &amp; Handbook</title>
<style>body { color: red } .secret-style {}</style>
<script>var secretScript = 1 < 2;</script></head>
<body>
<h1>Welcome</h1>
<p>Read the <a href="https://example.com/policy">travel policy</a> first.
<img src="logo.png" alt="company logo"></p>
<h2>Expenses</h2>
<ul><li>Keep receipts</li><li>Submit monthly</li></ul>
<script>document.write("secretInline")</script>
</body></html>
"""

MARKDOWN = b"""Some preamble.

# Guide

Intro text.

## Install

```
# comment, not a heading
```

### On Linux

apt install it
"""


def error_of(data: bytes, filename: str, content_type: str | None = None) -> KeelError:
    with pytest.raises(KeelError) as info:
        parse_document(data, filename=filename, content_type=content_type)
    return info.value


def assert_user_safe(error: KeelError) -> None:
    assert error.message and "Traceback" not in error.message and "Error(" not in error.message
    assert len(error.message) < 300


# ------------------------------------------------------------------ PDF
def test_pdf_pages_title_and_heartbeat() -> None:
    data = build_pdf(["Hello (world)\nSecond line", "Page two text", "Third"], title="Annual Plan")
    seen: list[int] = []
    parsed = parse_document(data, filename="plan.PDF", on_page=seen.append)
    assert parsed.doc_type == "pdf"
    assert parsed.title == "Annual Plan"
    assert parsed.page_count == 3
    assert [p.page for p in parsed.pages] == [1, 2, 3]
    assert "Hello (world)" in parsed.pages[0].text and "Second line" in parsed.pages[0].text
    assert parsed.pages[1].text.strip() == "Page two text"
    assert seen == [1, 2, 3]

    chunks = chunk_document(parsed.pages, doc_type=parsed.doc_type)
    assert [(c.page, c.strategy) for c in chunks] == [(1, "page"), (2, "page"), (3, "page")]


def test_pdf_with_too_many_pages_is_refused_before_extracting() -> None:
    data = build_pdf(["same page"] * 5000)  # one content stream shared by every page
    seen: list[int] = []
    with pytest.raises(KeelError) as info:
        parse_document(data, filename="huge.pdf", max_pages=2000, on_page=seen.append)
    assert info.value.code == ErrorCode.DOCUMENT_TOO_LARGE
    assert "5000" in info.value.message and "2000" in info.value.message
    assert seen == []


def test_pdf_page_limit_also_counts_the_real_pages() -> None:
    data = build_pdf(["p"] * 5).replace(b"/Count 5", b"/Count 1")  # a page tree that lies
    with pytest.raises(KeelError) as info:
        parse_document(data, filename="liar.pdf", max_pages=3)
    assert info.value.code == ErrorCode.DOCUMENT_TOO_LARGE


def test_encrypted_pdf_is_refused() -> None:
    error = error_of(encrypt_pdf(build_pdf(["secret"]), "pw"), "locked.pdf")
    assert error.code == ErrorCode.DOCUMENT_ENCRYPTED
    assert "password" in error.message
    assert_user_safe(error)


def test_pdf_with_only_an_owner_password_opens() -> None:
    parsed = parse_document(encrypt_pdf(build_pdf(["readable"]), "", "owner-pw"), filename="restricted.pdf")
    assert parsed.pages[0].text.strip() == "readable"


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[: len(d) // 2],  # truncated
        lambda d: d[:9] + bytes(range(256)) * 4,  # garbled after the header
        lambda d: b"%PDF-1.7\n",  # a header and nothing else
    ],
    ids=["truncated", "garbled", "header-only"],
)
def test_corrupt_pdf(damage: object) -> None:
    assert callable(damage)
    error = error_of(damage(build_pdf(["Hello", "World"])), "broken.pdf")
    assert error.code == ErrorCode.DOCUMENT_CORRUPT
    assert_user_safe(error)


def test_pdf_without_text_is_empty() -> None:
    error = error_of(build_pdf(["", ""]), "scan.pdf")
    assert error.code == ErrorCode.DOCUMENT_EMPTY
    assert "no extractable text" in error.message


# ------------------------------------------------------------------ DOCX
def test_docx_headings_paragraphs_and_tables() -> None:
    parsed = parse_document(build_docx(), filename="report.docx")
    assert parsed.doc_type == "docx"
    assert parsed.title == "Quarterly Report"
    assert parsed.page_count == 1 and [p.page for p in parsed.pages] == [None]
    assert parsed.pages[0].text == (
        "# Overview\n\n"
        "Revenue grew in every region.\n\n"
        "## Details\n\n"
        "Region | Q1 | Q2\nNorth | 10 | 12\nTotal 22\n\n"
        "Closing remarks."
    )
    chunks = chunk_document(parsed.pages, doc_type="docx")
    assert {c.strategy for c in chunks} == {"paragraph"}


def test_docx_title_falls_back_to_the_first_heading() -> None:
    parsed = parse_document(build_docx(title=None), filename="report.docx")
    assert parsed.title == "Overview"


def test_corrupt_docx() -> None:
    data = build_docx()
    error = error_of(data[: len(data) // 2], "report.docx")
    assert error.code == ErrorCode.DOCUMENT_CORRUPT
    assert_user_safe(error)
    broken_xml = zip_with(["[Content_Types].xml", "word/document.xml"])  # parts are not a Word package
    assert error_of(broken_xml, "report.docx").code == ErrorCode.DOCUMENT_CORRUPT


def test_docx_that_unpacks_too_big() -> None:
    with pytest.raises(KeelError) as info:
        parse_document(build_docx(), filename="bomb.docx", max_unpacked_bytes=1000)
    assert info.value.code == ErrorCode.DOCUMENT_TOO_LARGE
    assert parse_document(build_docx(), filename="fine.docx").doc_type == "docx"


def test_docx_bomb_is_refused_as_too_complex() -> None:
    """Red-team case (issue 9): a small DOCX whose document.xml unpacks past the per-part cap,
    though under the whole-package cap, is refused up front instead of taking minutes and GBs."""
    bomb = bomb_docx(MAX_DOCX_PART_BYTES + 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    error = error_of(bomb, "bomb.docx")
    assert error.code == ErrorCode.DOCUMENT_TOO_COMPLEX
    assert "word/document.xml" in error.message
    assert_user_safe(error)
    with pytest.raises(KeelError) as info:
        parse_document(bomb_docx(2 * 1024 * 1024), filename="b.docx", max_part_bytes=1024 * 1024)
    assert info.value.code == ErrorCode.DOCUMENT_TOO_COMPLEX


def test_docx_under_the_part_cap_streams() -> None:
    parsed = parse_document(bomb_docx(4 * 1024 * 1024), filename="big.docx")
    assert parsed.pages[0].text.startswith("bombbomb") and parsed.pages[0].text.endswith("bomb")


def test_a_parse_over_its_time_budget_is_refused() -> None:
    with pytest.raises(KeelError) as info:
        parse_document(bomb_docx(4 * 1024 * 1024), filename="slow.docx", timeout_s=1e-6)
    assert info.value.code == ErrorCode.PARSE_TIMEOUT
    assert_user_safe(info.value)
    with pytest.raises(KeelError) as info:
        parse_document(build_pdf(["page"] * 20), filename="slow.pdf", timeout_s=1e-6)
    assert info.value.code == ErrorCode.PARSE_TIMEOUT
    assert not KeelError(ErrorCode.PARSE_TIMEOUT, "").retryable


def test_docx_with_a_dtd_is_refused() -> None:
    """Word never writes a DTD; refusing one rules out entity expansion ("billion laughs")."""
    laughs = b'<!DOCTYPE w:document [<!ENTITY a "hahahahaha"><!ENTITY b "&a;&a;&a;&a;">]>'
    data = docx_with_body(b"<w:p><w:r><w:t>&b;</w:t></w:r></w:p>", prolog=laughs)
    assert error_of(data, "laughs.docx").code == ErrorCode.DOCUMENT_CORRUPT


def test_docx_text_follows_python_docx() -> None:
    """What python-docx returned (checked against it): hyperlink runs count, tracked insertions
    and nested tables do not, a vertically merged cell repeats on each row it spans."""
    body = (
        b'<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Intro</w:t></w:r></w:p>'
        b'<w:p><w:r><w:t xml:space="preserve">see </w:t><w:tab/></w:r><w:hyperlink><w:r><w:t>the site'
        b"</w:t></w:r></w:hyperlink><w:ins><w:r><w:t>tracked</w:t></w:r></w:ins><w:r><w:br/>"
        b'<w:t>next</w:t><w:br w:type="page"/></w:r></w:p>'
        b'<w:tbl><w:tr><w:tc><w:tcPr><w:vMerge w:val="restart"/></w:tcPr><w:p><w:r><w:t>A</w:t></w:r>'
        b"</w:p></w:tc><w:tc><w:p><w:r><w:t>B</w:t></w:r></w:p><w:tbl><w:tr><w:tc><w:p><w:r><w:t>nested"
        b"</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:tc></w:tr><w:tr><w:tc><w:tcPr><w:vMerge/></w:tcPr>"
        b"<w:p/></w:tc><w:tc><w:p><w:r><w:t>C</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"
        b'<w:p><w:pPr><w:pStyle w:val="Unknown"/></w:pPr><w:r><w:t>plain</w:t></w:r></w:p>'
    )
    parsed = parse_document(docx_with_body(body), filename="x.docx")
    assert parsed.pages[0].text == "## Intro\n\nsee \tthe site\nnext\n\nA | B\nA | C\n\nplain"
    assert parsed.title == "Intro"


# ------------------------------------------------------------------ HTML, markdown, text, JSON
def test_html_becomes_markdown_without_scripts_styles_or_images() -> None:
    parsed = parse_document(HTML, filename="handbook.html")
    assert parsed.doc_type == "html"
    assert parsed.title == "Team & Handbook"
    text = parsed.pages[0].text
    assert "# Welcome" in text and "## Expenses" in text
    assert "travel policy" in text and "example.com" not in text
    assert "Keep receipts" in text
    for hidden in ("secret", "color: red", "logo", "<"):
        assert hidden not in text
    chunks = chunk_document(parsed.pages, doc_type="html", max_chars=40, overlap_chars=5)
    assert {c.strategy for c in chunks} == {"markdown_heading"}
    assert "Welcome > Expenses" in {c.heading for c in chunks}


def test_html_title_falls_back_to_its_first_heading() -> None:
    parsed = parse_document(b"<html><body><h2>Only Heading</h2><p>x</p></body></html>", filename="p.htm")
    assert parsed.title == "Only Heading"
    unicode_first = "<html><head><TITLE>İstanbul &lt;3</TITLE></head><body>x</body></html>"
    assert parse_document(unicode_first.encode(), filename="p.html").title == "İstanbul <3"


def test_html_with_broken_markup_keeps_its_text() -> None:
    html = (
        "<html><body><p>one <!-- hidden --> two</p><p>if a < b then &#; ok</p>"
        "<p>three <![CDATA[raw]]></p><p>four <!-- never closed <p>five</p></body></html>"
    )
    text = parse_document(html.encode(), filename="broken.html").pages[0].text
    assert "hidden" not in text
    for visible in ("one", "two", "if a < b then &#; ok", "three", "four", "five"):
        assert visible in text, (visible, text)


@pytest.mark.timeout(10)
def test_hostile_markup_does_not_backtrack() -> None:
    """Inputs that made earlier regexes exponential or quadratic (minutes to hours)."""
    comments = b"<!-- -->" * 40 + b"plain words"
    assert detect_type(filename="x.txt", content_type=None, data=comments) == "txt"
    titles = b"<html>" + b"<title>" * 5_000
    assert parse_document(titles + b"<p>body</p>", filename="x.html").title is None
    heading = b"# a" + b" " * 100_000 + b"b"
    assert parse_document(heading, filename="x.md").title == "a b"


def test_markdown_title_and_text() -> None:
    parsed = parse_document(MARKDOWN, filename="guide.md")
    assert parsed.doc_type == "markdown" and parsed.title == "Guide"
    assert parsed.pages[0].text == MARKDOWN.decode()
    headings = {c.heading for c in chunk_document(parsed.pages, doc_type="markdown", max_chars=30)}
    assert {None, "Guide", "Guide > Install", "Guide > Install > On Linux"} <= headings


def test_text_encodings_and_line_endings() -> None:
    utf8_bom = "\ufeffCafé menu\r\n\r\nCrème brûlée".encode()
    parsed = parse_document(utf8_bom, filename="menu.txt")
    assert parsed.doc_type == "txt" and parsed.title is None
    assert parsed.pages[0].text == "Café menu\n\nCrème brûlée"
    utf16 = "Grüße aus Köln".encode("utf-16")  # with a BOM, as Windows Notepad writes it
    assert parse_document(utf16, filename="notes.txt").pages[0].text == "Grüße aus Köln"


def test_json_is_kept_as_text_and_chunked_by_keys() -> None:
    data = json.dumps({"service": "keel", "limits": {"pages": 2000}}).encode()
    parsed = parse_document(data, filename="config.json")
    assert parsed.doc_type == "json"
    assert json.loads(parsed.pages[0].text) == json.loads(data)
    chunks = chunk_document(parsed.pages, doc_type="json")
    assert chunks[0].text == "service: keel\nlimits.pages: 2000" and chunks[0].strategy == "json"


def test_malformed_and_empty_json() -> None:
    error = error_of(b'{"a": 1,,}', "data.json")
    assert error.code == ErrorCode.DOCUMENT_CORRUPT
    assert "line 1" in error.message
    assert error_of(b"{}", "data.json").code == ErrorCode.DOCUMENT_EMPTY
    deep = b"[" * 100_000 + b"]" * 100_000
    assert error_of(deep, "deep.json").code == ErrorCode.DOCUMENT_TOO_LARGE
    assert detect_type(filename="deep.txt", content_type=None, data=deep) == "txt"
    assert error_of(b" [ ] ", "data.json").code == ErrorCode.DOCUMENT_EMPTY


# ------------------------------------------------------------------ detection
@pytest.mark.parametrize(
    ("filename", "content_type", "data", "expected"),
    [
        ("a.pdf", None, build_pdf(["x"]), "pdf"),
        ("upload", "application/octet-stream", build_pdf(["x"]), "pdf"),  # content decides
        ("a.docx", None, build_docx(), "docx"),
        ("blob.bin", None, build_docx(), "docx"),
        ("a.txt", None, b"plain words", "txt"),
        ("a.text", None, b"plain words", "txt"),
        ("notes", "text/plain; charset=utf-8", b"plain words", "txt"),
        ("a.md", None, b"# T", "markdown"),
        ("a.markdown", None, b"words", "markdown"),
        ("notes", "text/markdown", b"words", "markdown"),
        ("a.html", None, b"<p>fragment</p>", "html"),
        ("page.txt", None, b"<!doctype html><p>x</p>", "html"),
        ("export.xyz", None, b'<?xml version="1.0"?>\n<!-- c --><html><body>x</body></html>', "html"),
        ("a.json", None, b'"just a string"', "json"),
        ("list.txt", None, b'[{"a": 1}]', "json"),
        ("data", None, b'{"a": 1}', "json"),
        ("a.md", None, b"About %PDF-1.4 headers", "markdown"),  # magic only counts at the start
    ],
)
def test_detect_type(filename: str, content_type: str | None, data: bytes, expected: str) -> None:
    assert detect_type(filename=filename, content_type=content_type, data=data) == expected


@pytest.mark.parametrize(
    ("filename", "data", "named", "found"),
    [
        ("report.pdf", b"just some text", ".pdf", "text"),
        ("report.pdf", HTML, ".pdf", "HTML"),
        ("report.docx", build_pdf(["x"]), ".docx", "a PDF"),
        ("report.docx", b"plain text", ".docx", "text"),
        ("report.docx", zip_with(["xl/workbook.xml"]), ".docx", "Excel"),
        ("report.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), ".docx", "legacy Office"),
        ("notes.txt", bytes(range(256)), ".txt", "binary"),
        ("notes.txt", b"\x89PNG\r\n\x1a\n" + bytes(64), ".txt", "PNG"),
        ("notes.md", build_pdf(["x"]), ".md", "a PDF"),
        ("notes.txt", build_docx(), ".txt", "Word"),
        ("data.json", HTML, ".json", "HTML"),
    ],
)
def test_content_that_does_not_match_the_name(filename: str, data: bytes, named: str, found: str) -> None:
    error = error_of(data, filename)
    assert error.code == ErrorCode.CONTENT_MISMATCH
    assert named in error.message and found in error.message, error.message
    assert_user_safe(error)


def test_declared_content_type_counts_when_there_is_no_extension() -> None:
    error = error_of(b"hello", "upload", "application/pdf")
    assert error.code == ErrorCode.CONTENT_MISMATCH
    assert "application/pdf" in error.message


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("table.csv", b"a,b\n1,2\n"),
        ("script", b"print('hi')"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
        ("archive.zip", zip_with(["a.txt"])),
        ("sheet.xlsx", zip_with(["xl/workbook.xml"])),
    ],
)
def test_unsupported_types_list_the_supported_ones(filename: str, data: bytes) -> None:
    error = error_of(data, filename)
    assert error.code == ErrorCode.UNSUPPORTED_TYPE
    for supported in (".pdf", ".docx", ".txt", ".md", ".html", ".json"):
        assert supported in error.message
    assert_user_safe(error)


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("empty.pdf", b""),
        ("empty.txt", b""),
        ("blank.txt", b" \n\t\r\n "),
        ("bom.md", b"\xef\xbb\xbf \n"),
        ("blank.html", b"<html><head><title>T</title></head><body> <script>x()</script></body></html>"),
    ],
)
def test_empty_documents(filename: str, data: bytes) -> None:
    error = error_of(data, filename)
    assert error.code == ErrorCode.DOCUMENT_EMPTY
    assert_user_safe(error)


def test_every_document_error_code_is_reachable() -> None:
    """A guard that this file keeps covering each code the parser may raise."""
    cases: list[tuple[bytes, str]] = [
        (b"a,b", "x.csv"),
        (b"text", "x.pdf"),
        (b"", "x.txt"),
        (build_pdf(["x"])[:40], "x.pdf"),
        (encrypt_pdf(build_pdf(["x"]), "pw"), "x.pdf"),
    ]
    codes = {error_of(data, name).code for data, name in cases}
    with pytest.raises(KeelError) as info:
        parse_document(build_pdf(["x"] * 3), filename="x.pdf", max_pages=2)
    codes.add(info.value.code)
    assert codes == {
        ErrorCode.UNSUPPORTED_TYPE,
        ErrorCode.CONTENT_MISMATCH,
        ErrorCode.DOCUMENT_EMPTY,
        ErrorCode.DOCUMENT_CORRUPT,
        ErrorCode.DOCUMENT_ENCRYPTED,
        ErrorCode.DOCUMENT_TOO_LARGE,
    }
    assert all(not KeelError(code, "").retryable for code in codes)


def test_parsed_document_round_trips_as_json() -> None:
    parsed = parse_document(MARKDOWN, filename="guide.md")
    assert ParsedDocument.model_validate_json(parsed.model_dump_json()) == parsed
