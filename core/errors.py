"""Error types, named by who must act.

``ErrorCode`` values are the stable ``error.code`` strings of the API and the
``type`` of Temporal ``ApplicationError``s. ``NON_RETRYABLE`` lists the ones that
retrying cannot fix; activities raise them with ``non_retryable=True``.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # caller's input
    INVALID_REQUEST = "invalid_request"
    MALFORMED_JSON = "malformed_json"
    INVALID_TEXT = "invalid_text"
    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    STALE_REQUEST = "stale_request"
    SESSION_BUSY = "session_busy"
    # identity
    UNAUTHENTICATED = "unauthenticated"
    TOKEN_EXPIRED = "token_expired"
    INVALID_TOKEN = "invalid_token"
    FORBIDDEN = "forbidden"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    CSRF_FAILED = "csrf_failed"
    INVALID_SIGNATURE = "invalid_signature"
    LOGIN_FAILED = "login_failed"
    DEV_AUTH_DISABLED = "dev_auth_disabled"
    # resources
    NOT_FOUND = "not_found"
    SESSION_NOT_FOUND = "session_not_found"
    TURN_NOT_FOUND = "turn_not_found"
    ROUTE_NOT_FOUND = "route_not_found"
    MODEL_NOT_FOUND = "model_not_found"  # /v1: no agent of that name
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # upstreams
    LLM_NOT_CONFIGURED = "llm_not_configured"
    LLM_BAD_RESPONSE = "llm_bad_response"
    LLM_REJECTED = "llm_rejected"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    CIRCUIT_OPEN = "circuit_open"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # policy
    POLICY_DENIED = "policy_denied"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SEPARATION_OF_DUTIES = "separation_of_duties"
    STDIO_COMMAND_NOT_ALLOWED = "stdio_command_not_allowed"
    COMMAND_NOT_FOUND = "command_not_found"
    # documents and knowledge bases
    KNOWLEDGE_BASE_NOT_FOUND = "knowledge_base_not_found"
    DOCUMENT_NOT_FOUND = "document_not_found"
    DOCUMENT_SUPERSEDED = "document_superseded"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    CONTENT_MISMATCH = "content_mismatch"
    DOCUMENT_EMPTY = "document_empty"
    DOCUMENT_CORRUPT = "document_corrupt"
    DOCUMENT_ENCRYPTED = "document_encrypted"
    DOCUMENT_TOO_LARGE = "document_too_large"
    DOCUMENT_TOO_COMPLEX = "document_too_complex"
    DOCUMENT_TOO_MANY_CHUNKS = "document_too_many_chunks"
    PARSE_TIMEOUT = "parse_timeout"
    INGEST_BUSY = "ingest_busy"
    RETRIEVAL_UNAVAILABLE = "retrieval_unavailable"
    # ours
    INTERNAL = "internal_error"


NON_RETRYABLE: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_TEXT,
        ErrorCode.EMPTY_MESSAGE,
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.LLM_NOT_CONFIGURED,
        ErrorCode.LLM_REJECTED,
        ErrorCode.POLICY_DENIED,
        ErrorCode.STDIO_COMMAND_NOT_ALLOWED,
        ErrorCode.COMMAND_NOT_FOUND,
        ErrorCode.BUDGET_EXCEEDED,
        ErrorCode.SESSION_NOT_FOUND,
        ErrorCode.UNSUPPORTED_TYPE,
        ErrorCode.CONTENT_MISMATCH,
        ErrorCode.DOCUMENT_EMPTY,
        ErrorCode.DOCUMENT_CORRUPT,
        ErrorCode.DOCUMENT_ENCRYPTED,
        ErrorCode.DOCUMENT_TOO_LARGE,
        ErrorCode.DOCUMENT_TOO_COMPLEX,
        ErrorCode.DOCUMENT_TOO_MANY_CHUNKS,
        ErrorCode.PARSE_TIMEOUT,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.DOCUMENT_NOT_FOUND,
        ErrorCode.DOCUMENT_SUPERSEDED,
    }
)


class KeelError(Exception):
    """An expected failure with a stable code and a message safe to show a user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.code not in NON_RETRYABLE


_KEEL_CODES = frozenset(ErrorCode)


def public_error(code: str, message: str) -> tuple[str, str]:
    """(code, message) fit for a client: Keel's own codes keep their message; anything
    else (an exception class name and its text, e.g. a database driver's) becomes
    ``internal_error`` with a generic message."""
    if code in _KEEL_CODES:
        return code, message
    return ErrorCode.INTERNAL.value, "an internal error occurred"
