"""One error shape for every failure: ``{"error": {"code", "message", "request_id"}}``.

Never a stack trace: unexpected exceptions are logged with the request id and
answered as ``internal_error``.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from core.errors import ErrorCode, KeelError

log = structlog.get_logger(__name__)

#: The OpenAI-compatible API (api/routes/openai_compat.py): its errors use OpenAI's envelope.
OPENAI_PREFIX = "/v1/"

_STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.INVALID_TEXT: 422,
    ErrorCode.EMPTY_MESSAGE: 422,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.STALE_REQUEST: 409,
    ErrorCode.SESSION_BUSY: 429,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INSUFFICIENT_SCOPE: 403,
    ErrorCode.CSRF_FAILED: 403,
    ErrorCode.INVALID_SIGNATURE: 401,
    ErrorCode.LOGIN_FAILED: 401,
    ErrorCode.DEV_AUTH_DISABLED: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.TURN_NOT_FOUND: 404,
    ErrorCode.KNOWLEDGE_BASE_NOT_FOUND: 404,
    ErrorCode.DOCUMENT_NOT_FOUND: 404,
    ErrorCode.DOCUMENT_SUPERSEDED: 409,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_TYPE: 415,
    ErrorCode.CONTENT_MISMATCH: 422,
    ErrorCode.DOCUMENT_EMPTY: 422,
    ErrorCode.DOCUMENT_CORRUPT: 422,
    ErrorCode.DOCUMENT_ENCRYPTED: 422,
    ErrorCode.DOCUMENT_TOO_LARGE: 422,
    ErrorCode.DOCUMENT_TOO_COMPLEX: 422,
    ErrorCode.DOCUMENT_TOO_MANY_CHUNKS: 422,
    ErrorCode.PARSE_TIMEOUT: 422,
    ErrorCode.INGEST_BUSY: 429,
    ErrorCode.RETRIEVAL_UNAVAILABLE: 503,
    ErrorCode.LLM_NOT_CONFIGURED: 503,
    ErrorCode.LLM_REJECTED: 502,
    ErrorCode.LLM_BAD_RESPONSE: 502,
    ErrorCode.POLICY_DENIED: 403,
    ErrorCode.SEPARATION_OF_DUTIES: 403,
    ErrorCode.STDIO_COMMAND_NOT_ALLOWED: 422,
    ErrorCode.COMMAND_NOT_FOUND: 422,
    ErrorCode.BUDGET_EXCEEDED: 429,
    ErrorCode.CANCELLED: 409,
    ErrorCode.ROUTE_NOT_FOUND: 404,
    ErrorCode.MODEL_NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
    ErrorCode.CIRCUIT_OPEN: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.INTERNAL: 500,
}


#: Keel's HTTP statuses as OpenAI error ``type``s (what the official clients branch on).
_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
}


def error_body(
    code: str, message: str, status: int, request_id: str, param: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``; Keel's request id rides along."""
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
            "request_id": request_id,
        }
    }


class ApiError(Exception):
    """Raised by routes and dependencies; rendered by :func:`install_error_handlers`."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.status = status or _STATUS_BY_CODE.get(self.code, 400)
        self.headers = headers or {}

    @classmethod
    def from_keel(cls, err: KeelError) -> ApiError:
        return cls(err.code, err.message)


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_response(
    request: Request, code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    rid = request_id_of(request)
    body: dict[str, Any] = {"error": {"code": code, "message": message, "request_id": rid}}
    if str(request.scope.get("path", "")).startswith(OPENAI_PREFIX):
        body = error_body(code, message, status, rid)  # OpenAI clients read their own envelope
    all_headers = {"X-Request-ID": rid, **(headers or {})}
    if status in (429, 503) and "Retry-After" not in all_headers:
        all_headers["Retry-After"] = "1"
    return JSONResponse(body, status_code=status, headers=all_headers)


#: Schema rules whose refusal has its own code: (field, pydantic error type) -> (code, message).
_FIELD_CODES: dict[tuple[str, str], tuple[ErrorCode, str]] = {
    ("message", "string_too_short"): (ErrorCode.EMPTY_MESSAGE, "message is empty"),
    ("message", "string_pattern_mismatch"): (ErrorCode.EMPTY_MESSAGE, "message is empty"),
}


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    errors: list[Any] = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            return ErrorCode.MALFORMED_JSON, "the request body is not valid JSON"
    for err in errors:
        if err.get("type") == ErrorCode.INVALID_TEXT:
            return ErrorCode.INVALID_TEXT, str(err.get("msg", "a string holds text that is not allowed"))
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    special = _FIELD_CODES.get((where, str(first.get("type"))))
    if special is not None:
        return special
    detail = first.get("msg", "invalid request")
    return ErrorCode.INVALID_REQUEST, f"{where}: {detail}" if where else str(detail)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path and route.methods and compile_path(route.path)[0].match(path):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.code, exc.message, exc.status, exc.headers)

    @app.exception_handler(KeelError)
    async def _keel_error(request: Request, exc: KeelError) -> JSONResponse:
        err = ApiError.from_keel(exc)
        return error_response(request, err.code, err.message, err.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(request, code, message, 400 if code == ErrorCode.MALFORMED_JSON else 422)

    @app.exception_handler(json.JSONDecodeError)
    async def _json(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return error_response(request, ErrorCode.MALFORMED_JSON, "the request body is not valid JSON", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: ErrorCode.ROUTE_NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(
            exc.status_code, ErrorCode.INVALID_REQUEST
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return error_response(request, code, str(exc.detail), exc.status_code, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the request id; the client sees neither the class nor the text.
        log.error("request.unhandled_error", exc_info=exc)
        return error_response(request, ErrorCode.INTERNAL, "an internal error occurred", 500)
