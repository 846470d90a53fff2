"""Chunking strategies: sizes, order, overlap, headings, pages, determinism."""

from __future__ import annotations

import itertools
import json
from typing import get_args

import pytest

from core.ingest.chunking import (
    STRATEGY_BY_TYPE,
    Chunk,
    DocType,
    SourceText,
    Strategy,
    chunk_document,
    split_fixed,
)


def body(text: str) -> list[SourceText]:
    return [SourceText(page=None, text=text)]


def sentences(n: int, word: str = "item") -> str:
    return " ".join(f"Sentence {i} talks about the {word} at some length." for i in range(n))


MARKDOWN = """# Intro

Welcome to the guide.

## Setup

Install the tool.

### Linux

Use the package manager.

```
# not a heading, a shell comment
```

## Usage

Run it.

# Reference

See the API.
"""


def assert_well_formed(chunks: list[Chunk], max_chars: int) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text.strip(), "blank chunk"
        assert len(c.text) <= max_chars, (len(c.text), c.text[:80])


def test_every_type_has_its_strategy() -> None:
    assert set(STRATEGY_BY_TYPE) == set(get_args(DocType))
    assert set(STRATEGY_BY_TYPE.values()) <= set(get_args(Strategy))
    assert STRATEGY_BY_TYPE == {
        "pdf": "page",
        "docx": "paragraph",
        "txt": "paragraph",
        "markdown": "markdown_heading",
        "html": "markdown_heading",
        "json": "json",
    }


@pytest.mark.parametrize(
    ("doc_type", "text", "expected"),
    [
        ("txt", "First paragraph.\n\nSecond paragraph.", "paragraph"),
        ("txt", sentences(200), "fixed_size"),  # no blank lines at all
        ("docx", "# Title\n\nA paragraph.", "paragraph"),
        ("markdown", MARKDOWN, "markdown_heading"),
        ("html", MARKDOWN, "markdown_heading"),
        ("json", '{"a": 1}', "json"),
        ("json", "not json after all\n\nreally", "paragraph"),  # recorded as what was used
    ],
)
def test_strategy_is_chosen_per_type_and_recorded(doc_type: DocType, text: str, expected: Strategy) -> None:
    chunks = chunk_document(body(text), doc_type=doc_type, max_chars=300, overlap_chars=40)
    assert chunks
    assert {c.strategy for c in chunks} == {expected}


def test_an_explicit_strategy_wins() -> None:
    chunks = chunk_document(body(MARKDOWN), doc_type="markdown", strategy="fixed_size", max_chars=80)
    assert {c.strategy for c in chunks} == {"fixed_size"}
    assert all(c.heading is None for c in chunks)


@pytest.mark.parametrize("strategy", get_args(Strategy))
@pytest.mark.parametrize("max_chars", [40, 200, 1200])
def test_every_strategy_respects_max_chars(strategy: Strategy, max_chars: int) -> None:
    long_word = "x" * (3 * max_chars)  # no boundary at all: a hard cut is the only way
    text = "\n\n".join(
        [MARKDOWN, sentences(60), long_word, json.dumps({"k": sentences(30), "list": list(range(50))})]
    )
    pages = [SourceText(page=1, text=text), SourceText(page=2, text=sentences(40, "second page"))]
    chunks = chunk_document(
        pages, doc_type="txt", strategy=strategy, max_chars=max_chars, overlap_chars=max_chars // 4
    )
    assert_well_formed(chunks, max_chars)
    if strategy != "json":  # JSON that fails to parse is chunked by paragraphs: all text kept
        joined = "".join("".join(c.text.split()) for c in chunks)
        for word in ("Welcome", "Reference", "second", "xxxxxxxx"):
            assert word in joined


def test_blank_input_gives_no_chunks() -> None:
    for strategy in get_args(Strategy):
        chunks = chunk_document(
            [SourceText(page=1, text=" \n\n\t "), SourceText(page=2, text="")],
            doc_type="pdf",
            strategy=strategy,
        )
        assert chunks == []


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        chunk_document(body("x"), doc_type="txt", max_chars=0)
    with pytest.raises(ValueError):
        chunk_document(body("x"), doc_type="txt", max_chars=100, overlap_chars=-1)
    with pytest.raises(ValueError):
        split_fixed("x", 100, 100)
    # an overlap as big as the window is capped (at half of it), so windows still advance
    chunks = chunk_document(body(sentences(20)), doc_type="txt", max_chars=100, overlap_chars=500)
    assert_well_formed(chunks, 100)
    assert len(chunks) < 40


def test_fixed_size_windows_overlap_and_end_on_boundaries() -> None:
    text = sentences(100)
    chunks = chunk_document(
        body(text), doc_type="txt", strategy="fixed_size", max_chars=300, overlap_chars=80
    )
    assert len(chunks) > 5
    assert_well_formed(chunks, 300)
    for before, after in itertools.pairwise(chunks):
        assert before.text.endswith("length."), before.text[-30:]  # cut after a sentence
        head = after.text[:20]
        assert head in before.text, "the next window starts inside the previous one (overlap)"
        assert after.text.startswith("Sentence"), "the overlap starts on a sentence"
    # nothing is lost: every sentence is in some chunk
    for i in range(100):
        assert any(f"Sentence {i} talks" in c.text for c in chunks), i


def test_split_fixed_falls_back_to_words_then_hard_cuts() -> None:
    words = " ".join(f"w{i:04d}" for i in range(400))  # no sentences, no lines
    pieces = split_fixed(words, 100, 20)
    assert all(len(p) <= 100 for p in pieces)
    assert all(p.startswith("w") and len(p.split()[0]) == 5 for p in pieces), "cut between words"
    assert all(len(p.split()[-1]) == 5 for p in pieces)
    assert pieces[1].split()[0] in pieces[0].split(), "overlap"
    blob = "y" * 250
    assert [len(p) for p in split_fixed(blob, 100, 10)] == [100, 100, 70]
    assert split_fixed("  short  ", 100, 10) == ["short"]
    assert split_fixed("   ", 100, 10) == []


def test_paragraph_strategy_packs_small_paragraphs_and_splits_big_ones() -> None:
    small = [f"Paragraph {i} is short." for i in range(10)]
    big = sentences(30)
    text = "\n\n".join([*small, big, "Tail paragraph."])
    chunks = chunk_document(body(text), doc_type="txt", max_chars=120, overlap_chars=30)
    assert_well_formed(chunks, 120)
    assert chunks[0].text == "\n\n".join(small[:5])  # 5 x 22 chars + separators fit in 120
    assert chunks[-1].text == "Tail paragraph."
    assert {c.strategy for c in chunks} == {"paragraph"}
    assert all(c.page is None for c in chunks)


def test_page_strategy_keeps_page_numbers_and_never_mixes_pages() -> None:
    pages = [
        SourceText(page=1, text="Cover page."),
        SourceText(page=2, text=""),  # blank page: no chunk
        SourceText(page=3, text=sentences(40, "third page")),
        SourceText(page=4, text="Last page line one\nline two"),
    ]
    chunks = chunk_document(pages, doc_type="pdf", max_chars=400, overlap_chars=50)
    assert_well_formed(chunks, 400)
    assert {c.strategy for c in chunks} == {"page"}
    assert chunks[0].page == 1 and chunks[0].text == "Cover page."
    assert chunks[-1].page == 4 and chunks[-1].text == "Last page line one\nline two"
    middle = [c for c in chunks if c.page == 3]
    assert len(middle) > 1 and all("third page" in c.text for c in middle)
    assert [c.page for c in chunks] == sorted(c.page or 0 for c in chunks)
    assert 2 not in {c.page for c in chunks}


def test_markdown_headings_are_recorded_as_paths() -> None:
    chunks = chunk_document(body(MARKDOWN), doc_type="markdown", max_chars=40, overlap_chars=10)
    assert_well_formed(chunks, 40)
    headings = [c.heading for c in chunks]
    assert headings[0] == "Intro"
    assert "Intro > Setup" in headings
    assert "Intro > Setup > Linux" in headings
    assert "Intro > Usage" in headings  # a level-2 heading closes the level-3 one
    assert headings[-1] == "Reference"  # a level-1 heading resets the path
    code = next(c for c in chunks if "shell comment" in c.text)
    assert code.heading == "Intro > Setup > Linux", "a # line in a code fence is not a heading"


def test_markdown_packs_small_sections_and_splits_big_ones() -> None:
    whole = chunk_document(body(MARKDOWN), doc_type="markdown", max_chars=1200)
    assert len(whole) == 1 and whole[0].heading == "Intro"
    assert whole[0].text.startswith("# Intro") and whole[0].text.endswith("See the API.")

    text = "Preamble text.\n\n# Big\n\n" + "\n\n".join(sentences(5) for _ in range(6)) + "\n\n# Small\n\nEnd."
    chunks = chunk_document(body(text), doc_type="markdown", max_chars=500, overlap_chars=50)
    assert_well_formed(chunks, 500)
    assert chunks[0].heading is None and chunks[0].text == "Preamble text."
    big = [c for c in chunks if c.heading == "Big"]
    assert len(big) >= 3
    assert chunks[-1].heading == "Small" and chunks[-1].text == "# Small\n\nEnd."


def test_markdown_heading_path_carries_across_pages() -> None:
    pages = [
        SourceText(page=1, text="# Chapter\n\nStart."),
        SourceText(page=2, text="More of it.\n\n## Part\n\nX."),
    ]
    chunks = chunk_document(pages, doc_type="pdf", strategy="markdown_heading", max_chars=20, overlap_chars=5)
    assert [(c.page, c.heading) for c in chunks] == [
        (1, "Chapter"),
        (2, "Chapter"),
        (2, "Chapter > Part"),
    ]


def test_json_units_are_top_level_keys_with_key_paths() -> None:
    doc = {
        "name": "Keel",
        "owner": {"team": "platform", "contacts": ["a@example.com", "b@example.com"]},
        "flags": {"beta": True, "limit": None, "ratio": 0.5},
        "empty": {},
        "odd.key": "multi\nline  text",
    }
    chunks = chunk_document(body(json.dumps(doc)), doc_type="json", max_chars=80, overlap_chars=10)
    assert_well_formed(chunks, 80)
    lines = "\n".join(c.text for c in chunks).split("\n")
    assert lines == [
        "name: Keel",
        "owner.team: platform",
        "owner.contacts[0]: a@example.com",
        "owner.contacts[1]: b@example.com",
        "flags.beta: true",
        "flags.limit: null",
        "flags.ratio: 0.5",
        "empty: {}",
        '"odd.key": multi line text',
    ]
    assert chunks[0].heading == "name"
    assert any(c.heading == "owner" and c.text.startswith("owner.team") for c in chunks)


def test_json_arrays_split_by_item_and_big_items_by_member() -> None:
    items = [{"id": i, "tags": ["x", "y"], "about": sentences(2)} for i in range(20)]
    chunks = chunk_document(body(json.dumps(items)), doc_type="json", max_chars=150, overlap_chars=20)
    assert_well_formed(chunks, 150)
    assert all(c.heading is None for c in chunks)
    for c in chunks:  # an item's lines are never split from each other unless the item is too big
        ids = {line.split("]")[0] for line in c.text.split("\n")}
        assert len(ids) == 1 or all(len(line) < 150 for line in c.text.split("\n"))
    assert chunks[0].text.startswith("[0].id: 0\n[0].tags[0]: x")


def test_deeply_nested_json_is_flattened_then_cut_off() -> None:
    deep: object = "bottom"
    for _ in range(40):
        deep = {"k": deep}
    chunks = chunk_document(body(json.dumps(deep)), doc_type="json")
    assert len(chunks) == 1 and chunks[0].strategy == "json"
    path, _, value = chunks[0].text.partition(": ")
    assert path == ".".join(["k"] * 32)  # depth limit: the rest stays compact JSON
    assert json.loads(value) == {"k": {"k": {"k": {"k": {"k": {"k": {"k": {"k": "bottom"}}}}}}}}
    hopeless = "[" * 50_000 + "]" * 50_000  # beyond the JSON decoder's recursion limit
    chunks = chunk_document(body(hopeless), doc_type="json", max_chars=1000, overlap_chars=0)
    assert {c.strategy for c in chunks} == {"paragraph"}
    assert_well_formed(chunks, 1000)


def test_chunking_is_deterministic() -> None:
    inputs: list[tuple[list[SourceText], DocType]] = [
        (body(MARKDOWN + sentences(80)), "markdown"),
        (body(sentences(120)), "txt"),
        ([SourceText(page=i, text=sentences(30)) for i in range(1, 4)], "pdf"),
        (body(json.dumps({"a": list(range(300)), "b": {"c": sentences(20)}})), "json"),
    ]
    for sources, doc_type in inputs:
        first = chunk_document(sources, doc_type=doc_type, max_chars=250, overlap_chars=40)
        again = chunk_document(
            [s.model_copy() for s in sources], doc_type=doc_type, max_chars=250, overlap_chars=40
        )
        assert [c.model_dump() for c in first] == [c.model_dump() for c in again]


def test_line_endings_and_nul_are_normalised() -> None:
    chunks = chunk_document(body("One.\r\n\r\nTwo\x00.\rThree."), doc_type="txt", max_chars=100)
    assert [c.text for c in chunks] == ["One.\n\nTwo.\nThree."]
