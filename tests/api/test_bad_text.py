"""Text no string may hold (NUL, lone surrogates) is refused at the edge, on every
operation, wherever it is sent: path, query, JSON body (values and keys, nested
too) and multipart file names. Generated from the OpenAPI document, so a new route
is covered without editing this file.

Every answer is below 500, a 422 ``invalid_text`` where the bad text reached a
string, and never shows a traceback, an exception class or a database message.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import RunningApi

BAD_TEXTS = {"nul": "bad\x00text", "lone_surrogate": "bad\ud800text"}
_PARAM = re.compile(r"{(\w+)}")
_LEAKS = re.compile(r"Traceback|asyncpg|psycopg|postgres|[A-Z]\w*(Error|Exception)\b|File \"")


def _assert_clean(resp: httpx.Response, where: str) -> None:
    assert resp.status_code < 500, (where, resp.status_code, resp.text)
    assert not _LEAKS.search(resp.text), (where, resp.text)


def _assert_invalid_text(resp: httpx.Response, where: str) -> None:
    _assert_clean(resp, where)
    assert resp.status_code == 422, (where, resp.status_code, resp.text)
    error = resp.json()["error"]
    assert error["code"] == "invalid_text", (where, resp.text)
    assert error["request_id"] == resp.headers["x-request-id"]


# ------------------------------------------------------------------ the document
def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _variants(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(spec, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return [_resolve(spec, s) for s in options if _resolve(spec, s).get("type") != "null"]
    return [schema]


def _sample(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A plausible value; the bad text is refused before any other rule is checked."""
    variant = _variants(spec, schema)[0]
    if "enum" in variant:
        return variant["enum"][0]
    kind = variant.get("type")
    if kind == "object":
        props = variant.get("properties", {})
        return {name: _sample(spec, props[name]) for name in variant.get("required", [])}
    if kind == "array":
        return [_sample(spec, variant.get("items", {}))]
    return {"integer": 1, "number": 1.0, "boolean": False}.get(str(kind), "sample")


def _string_slots(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Iterator[list[Any]]:
    """Paths (keys and indexes) to every place a string can sit in an instance of ``schema``.

    A path ending in ``("key",)`` means: a key of the object at that path."""
    if depth > 6:
        return
    for variant in _variants(spec, schema):
        kind = variant.get("type")
        if kind == "string" or ("enum" in variant and kind is None):
            yield []
        elif kind == "object":
            for name, sub in variant.get("properties", {}).items():
                for rest in _string_slots(spec, sub, depth + 1):
                    yield [name, *rest]
            extra = variant.get("additionalProperties")
            if extra:
                yield [("key",)]
                sub = extra if isinstance(extra, dict) else {}
                for rest in _string_slots(spec, sub, depth + 1):
                    yield ["some-key", *rest]
        elif kind == "array":
            for rest in _string_slots(spec, variant.get("items", {}), depth + 1):
                yield [0, *rest]
        elif kind is None and "enum" not in variant:  # Any: a string is accepted
            yield []


def _with_bad_text(spec: dict[str, Any], schema: dict[str, Any], slot: list[Any], bad: str) -> Any:
    body = _sample(spec, schema)
    if not slot:
        return bad
    root: Any = {"body": body}
    node: Any = root
    key: Any = "body"
    for step in slot:
        if step == ("key",):
            node[key] = {bad: "value"} if not isinstance(node[key], dict) else {**node[key], bad: "value"}
            return root["body"]
        container = node[key]
        if isinstance(step, int):
            if not isinstance(container, list):
                node[key] = container = []
            if not container:
                container.append(None)
        elif not isinstance(container, dict):
            node[key] = container = {}
        node, key = container, step
        if isinstance(step, str) and step not in node:
            node[step] = None
    node[key] = bad
    return root["body"]


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def _fill(path: str, bad_param: str | None = None, bad: str = "") -> str:
    return _PARAM.sub(lambda m: quote(bad, safe="") if m.group(1) == bad_param else "x", path)


async def _admin(api: RunningApi) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.token('bad-text-admin', roles=['OrgAdmin'])}"}


async def _spec(api: RunningApi) -> dict[str, Any]:
    resp = await api.http.get("/openapi.json")
    assert resp.status_code == 200
    return dict(resp.json())


# ------------------------------------------------------------------ the tests
async def test_nul_in_any_path_or_query_parameter_is_refused(api: RunningApi) -> None:
    spec = await _spec(api)
    headers = await _admin(api)
    checked = 0
    for method, path, op in _operations(spec):
        for param in op.get("parameters", []):
            name, where = param["name"], param["in"]
            if where == "path":
                url, params = _fill(path, name, BAD_TEXTS["nul"]), None
            elif where == "query":
                url, params = _fill(path), {name: BAD_TEXTS["nul"]}
            else:
                continue
            resp = await api.http.request(method, url, params=params, headers=headers)
            _assert_invalid_text(resp, f"{method} {path} {where} {name}")
            checked += 1
    assert checked >= 20, checked
    # A NUL in a path or query string that no route declares is refused the same way.
    _assert_invalid_text(await api.http.get("/api/v1/sessions", params={"x": "\x00"}), "undeclared query")
    _assert_invalid_text(await api.http.get("/api/v1/nothing%00here", headers=headers), "unknown path")


async def test_bad_text_anywhere_in_a_json_body_is_refused(api: RunningApi) -> None:
    spec = await _spec(api)
    headers = {**await _admin(api), "content-type": "application/json"}
    checked = 0
    for method, path, op in _operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        schema = content["application/json"]["schema"]
        # Every string field, and a key with bad text (refused before "unknown field").
        slots: list[list[Any]] = [[("key",)], *_string_slots(spec, schema)]
        for slot in slots:
            for label, bad in BAD_TEXTS.items():
                body = _with_bad_text(spec, schema, slot, bad)
                # json.dumps escapes a lone surrogate as \ud800, as any client would send it
                resp = await api.http.request(method, _fill(path), content=json.dumps(body), headers=headers)
                _assert_invalid_text(resp, f"{method} {path} {slot} {label}")
                checked += 1
    assert checked >= 60, checked


def _multipart(field: str, filename: str) -> tuple[bytes, str]:
    boundary = "keelboundary7MA4YWxkTrZu0gW"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: text/plain\r\n\r\nsome notes\r\n--{boundary}--\r\n"
    ).encode("utf-8", "surrogatepass")
    return body, f"multipart/form-data; boundary={boundary}"


async def test_bad_text_in_a_multipart_file_name_is_refused(api: RunningApi) -> None:
    spec = await _spec(api)
    headers = await _admin(api)
    kb_id = (await api.http.get("/api/v1/knowledge-bases", headers=headers)).json()["knowledge_bases"][0][
        "id"
    ]
    checked = 0
    for method, path, op in _operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        if "multipart/form-data" not in content:
            continue
        schema = _resolve(spec, content["multipart/form-data"]["schema"])
        for field in schema["properties"]:
            body, content_type = _multipart(field, BAD_TEXTS["nul"])
            url = path.replace("{kb_id}", kb_id)
            resp = await api.http.request(
                method, url, content=body, headers={**headers, "content-type": content_type}
            )
            _assert_invalid_text(resp, f"{method} {path} {field} file name")
            # Surrogate bytes cannot be UTF-8; whatever the server reads them as, no 5xx.
            body, content_type = _multipart(field, BAD_TEXTS["lone_surrogate"])
            resp = await api.http.request(
                method, url, content=body, headers={**headers, "content-type": content_type}
            )
            _assert_clean(resp, f"{method} {path} {field} surrogate file name")
            checked += 1
    assert checked >= 2, checked


def _raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_nul_in_a_header_never_reaches_a_route(api: RunningApi) -> None:
    """Clients refuse to send one; a raw socket can. The server refuses it, never with a 5xx."""
    for header in (
        b"Last-Event-ID: 1-0\x00x",
        b"Authorization: Bearer keel_\x00abc",
        b"X-Request-ID: a\x00b",
    ):
        answer = await asyncio.to_thread(
            _raw_request,
            api.settings.api_port,
            b"GET /api/v1/sessions/x/turns/y/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + header
            + b"\r\nConnection: close\r\n\r\n",
        )
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer
        assert b"Traceback" not in answer
