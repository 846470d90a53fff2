"""docs/api.md says what the code does: its endpoint table lists every operation with
its permission, its error table every error code with its HTTP status, and its event
table every event a turn sends (with the fields of the events built from models)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from api.errors import _STATUS_BY_CODE
from core.errors import ErrorCode
from core.models.chat import Citation
from core.models.tools import ApprovalView

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def _section_rows(heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` (header and separator skipped)."""
    lines = DOC[DOC.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows: list[list[str]] = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]


def _code(cell: str) -> str:
    return cell.strip("`")


def test_the_endpoint_table_is_every_operation_with_its_permission() -> None:
    spec = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    expected = set()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            security = op.get("security")
            scopes = sorted({s for req in security or [] for v in req.values() for s in v})
            permission = "none" if security is None else (", ".join(scopes) or "signed in")
            expected.add((method.upper(), path, permission))
    documented = {(m, _code(p), perm) for m, p, perm, _what in _section_rows("## Endpoints")}
    assert documented == expected


def test_the_error_table_is_every_code_with_its_status() -> None:
    rows = _section_rows("| Code | HTTP | When |")
    documented = {_code(code): int(status) for code, status, _when in rows}
    assert len(rows) == len(documented), "a code is listed twice"
    assert documented == {code.value: _STATUS_BY_CODE[code] for code in ErrorCode}


def _published_events() -> set[str]:
    """Event names the code publishes to a turn's stream or sends itself."""
    published = re.compile(r"""\.publish(?:_delta)?\(\s*[^,()]+,\s*"([a-z_.]+)\"""")
    sent = re.compile(r"""ServerSentEvent\([^)]*event="([a-z_.]+)\"""")
    names: set[str] = set()
    for folder in ("activities", "api", "infra", "workflows"):
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            names |= set(published.findall(text)) | set(sent.findall(text))
    return names


def test_the_event_table_is_every_event_with_its_fields() -> None:
    rows = {_code(event): data for event, data, _meaning in _section_rows("#### Events")}
    assert set(rows) == _published_events()

    def fields(cell: str) -> set[str]:
        return set(re.findall(r'"([a-z_]+)"', cell))

    assert fields(rows["citation"]) == {"turn_id", *Citation.model_fields}
    assert fields(rows["approval.required"]) == set(ApprovalView.model_fields)
