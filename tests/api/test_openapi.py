"""docs/openapi.json is generated from the app (``make openapi``), never hand-written.

No services: the document comes from ``create_app(...).openapi()`` without the lifespan.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api import openapi_export

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "docs" / "openapi.json"

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

#: Paths of docs/api.md that must be in the document, with their methods.
IMPLEMENTED: dict[str, set[str]] = {
    "/api/v1/auth/dev-token": {"post"},
    "/api/v1/chat": {"post"},
    "/api/v1/chat/stream": {"post"},
    "/api/v1/sessions": {"get"},
    "/api/v1/sessions/{session_id}": {"get", "delete"},
    "/api/v1/sessions/{session_id}/turns/{turn_id}/events": {"get"},
    "/health/live": {"get"},
    "/health/ready": {"get"},
    "/health/startup": {"get"},
}


@pytest.fixture(scope="module")
def generated() -> str:
    return openapi_export.generate()


@pytest.fixture(scope="module")
def spec(generated: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(generated)
    return document


def test_committed_spec_is_the_generated_one(generated: str) -> None:
    assert SPEC_PATH.exists(), "docs/openapi.json is missing: run `make openapi`"
    committed = SPEC_PATH.read_text(encoding="utf-8")
    assert committed == generated, "docs/openapi.json is stale: run `make openapi` and commit it"


def test_check_mode_agrees(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert openapi_export.main(["--check", str(SPEC_PATH)]) == 0
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert openapi_export.main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert openapi_export.main(["--check", str(tmp_path / "missing.json")]) == 1


def test_export_writes_pretty_json_with_trailing_newline(tmp_path: Path, generated: str) -> None:
    target = tmp_path / "nested" / "openapi.json"
    assert openapi_export.main([str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert text == generated
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "openapi"')


def test_every_operation_has_an_operation_id(spec: dict[str, Any]) -> None:
    missing: list[str] = []
    seen: dict[str, str] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            where = f"{method.upper()} {path}"
            op_id = operation.get("operationId")
            if not op_id:
                missing.append(where)
                continue
            assert op_id not in seen, f"operationId {op_id!r} is used by {seen[op_id]} and {where}"
            seen[op_id] = where
    assert not missing, f"operations without an operation_id: {missing}"


def test_implemented_design_paths_are_present(spec: dict[str, Any]) -> None:
    paths: dict[str, dict[str, Any]] = spec["paths"]
    for path, methods in IMPLEMENTED.items():
        assert path in paths, f"{path} is missing from the OpenAPI document"
        assert methods <= set(paths[path]), f"{path}: expected {sorted(methods)}, got {sorted(paths[path])}"


def test_streams_are_documented_as_event_streams(spec: dict[str, Any]) -> None:
    for path, method in (
        ("/api/v1/chat/stream", "post"),
        ("/api/v1/sessions/{session_id}/turns/{turn_id}/events", "get"),
    ):
        content = spec["paths"][path][method]["responses"]["200"]["content"]
        assert "text/event-stream" in content, path


def _error_schema(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"])


def test_403_and_405_are_documented_with_keels_error_body(spec: dict[str, Any]) -> None:
    operations = [
        (f"{method.upper()} {path}", op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]
    assert len(operations) > 25
    for where, op in operations:
        responses = op["responses"]
        assert _error_schema(responses["405"]).endswith("/ErrorResponse"), where
        assert "Allow" in responses["405"]["headers"], where
        assert _error_schema(responses["422"]).endswith("/ErrorResponse"), where
        if "security" in op:
            assert _error_schema(responses["403"]).endswith("/ErrorResponse"), where
            scopes = {s for requirement in op["security"] for v in requirement.values() for s in v}
            assert "forbidden" in responses["403"]["description"] or not scopes, where


def test_schema_valid_chat_messages_are_not_refused_by_a_hidden_rule(spec: dict[str, Any]) -> None:
    """A blank message is refused by the schema itself: minLength and a not-only-whitespace pattern."""
    message = spec["components"]["schemas"]["ChatRequest"]["properties"]["message"]
    assert message["minLength"] == 1
    assert message["pattern"] == r"\S"
    tool = spec["components"]["schemas"]["ToolServerRequest"]["properties"]
    assert tool["name"]["pattern"].startswith("^")
    assert set(tool["transport"]["enum"]) == {"stdio", "http"}
