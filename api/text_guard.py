"""Text no string may hold is refused at the edge: ``422 invalid_text``.

A NUL character cannot be stored in Postgres and a lone surrogate cannot be
encoded as UTF-8; either would fail deep inside a route or a workflow (as a 500,
or after Temporal's retries). Refused in one place per kind of input:

* path, query string and headers: :class:`TextGuardMiddleware`, before any route;
* JSON bodies, every value and key at any depth: :class:`RequestModel`, the base
  of every request schema;
* multipart file names: :func:`refuse_bad_text`, where uploads are read.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, error_response
from core.errors import ErrorCode

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """What makes ``value`` unfit for a string field, or None."""
    if "\x00" in value:
        return "a NUL character"
    if _SURROGATE.search(value):  # a pair would have been joined into one code point by the JSON parser
        return "a lone surrogate"
    return None


def find_bad_text(value: object) -> tuple[str, str] | None:
    """(where, problem) of the first bad string in a decoded JSON value (keys included), or None.

    Iterative, so a deeply nested body cannot exhaust the stack."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return where, problem
        elif isinstance(item, dict):
            for key, sub in item.items():
                inner = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    return where or "body", f"a key with {problem}"
                stack.append((inner, sub))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}.{i}" if where else str(i), sub) for i, sub in enumerate(item))
    return None


def refuse_bad_text(value: str, *, field: str) -> None:
    """Raise ``invalid_text`` when ``value`` holds a NUL character or a lone surrogate."""
    problem = text_problem(value)
    if problem is not None:
        raise ApiError(ErrorCode.INVALID_TEXT, f"{field} contains {problem}")


class RequestModel(BaseModel):
    """The base of every request body: unknown fields are refused, and so is bad text anywhere."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_bad_text(cls, data: Any) -> Any:
        found = find_bad_text(data)
        if found is not None:
            where, problem = found
            # Safe for the printable message: `where` is made of the caller's keys, which passed the check.
            where = where.encode("unicode_escape").decode("ascii")
            raise PydanticCustomError(
                ErrorCode.INVALID_TEXT.value,
                "{where} contains {problem}",
                {"where": where, "problem": problem},
            )
        return data


def _bad_bytes(raw: bytes) -> bool:
    return b"\x00" in raw or b"\x00" in unquote_to_bytes(raw)


class TextGuardMiddleware:
    """Refuses a request whose path, query string or headers hold a NUL (raw or ``%00``).

    (Lone surrogates cannot arrive this way: paths and query strings are decoded
    as UTF-8 with replacement characters, headers as Latin-1.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = self._bad_part(scope)
            if where is not None:
                response = error_response(
                    Request(scope), ErrorCode.INVALID_TEXT, f"the {where} contains a NUL character", 422
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _bad_part(scope: Scope) -> str | None:
        if "\x00" in scope["path"] or _bad_bytes(scope.get("raw_path") or b""):
            return "path"
        if _bad_bytes(scope.get("query_string") or b""):
            return "query string"
        if any(b"\x00" in value for _, value in scope.get("headers") or ()):
            return "header"
        return None
