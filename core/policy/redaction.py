"""Masking secrets in tool-call arguments: the ONE redaction rule (audit, logs, approvals,
the event stream, workflow history).

A value is masked when its key matches the key pattern (``KEEL_TOOL_REDACT_PATTERN``:
password, token, secret, api_key, authorization, credential, ...) or when the value
itself looks like a credential: ``Bearer …``/``Basic …`` headers, JSON Web Tokens,
well-known key formats (``sk-…``, ``keel_…``, ``ghp_…``, ``xox?-…``, AWS access key
ids, PEM private keys). Nested objects and lists are walked.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DEFAULT_KEY_PATTERN", "MASK", "looks_secret", "redact"]

MASK = "***"
#: ``KEEL_TOOL_REDACT_PATTERN``'s default (searched in argument keys, case-insensitively).
DEFAULT_KEY_PATTERN = r"pass(word)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key"

_SECRET_VALUE = re.compile(
    r"(?:^|\s)(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"  # an Authorization header value
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"  # a JWT
    r"|\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}"  # OpenAI / Stripe style keys
    r"|\bkeel_[A-Za-z0-9_-]{16,}"  # Keel API keys
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bxox[abpors]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key ids
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
    re.IGNORECASE,
)


def looks_secret(value: str) -> bool:
    return bool(_SECRET_VALUE.search(value))


def redact(arguments: dict[str, Any], pattern: re.Pattern[str]) -> dict[str, Any]:
    """A copy of ``arguments`` with secret-looking values masked (see the module doc)."""
    return {
        key: MASK if pattern.search(key) else _redact_value(value, pattern)
        for key, value in arguments.items()
    }


def _redact_value(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, dict):
        return redact(value, pattern)
    if isinstance(value, list):
        return [_redact_value(v, pattern) for v in value]
    if isinstance(value, str) and looks_secret(value):
        return MASK
    return value
