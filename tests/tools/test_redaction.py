"""The one redaction rule for tool-call arguments (core/policy/redaction.py)."""

from __future__ import annotations

import re

import pytest

from core.policy.redaction import DEFAULT_KEY_PATTERN, MASK, redact

KEYS = re.compile(DEFAULT_KEY_PATTERN, re.IGNORECASE)


def test_secret_keys_are_masked_at_any_depth() -> None:
    arguments = {
        "user": "svc",
        "Password": "p",
        "config": {"api_key": "k", "region": "eu", "nested": [{"client_secret": "s"}, "plain"]},
        "AUTHORIZATION": "x",
        "refresh_token": "t",
        "credentials": {"a": 1},
        "private_key": "pk",
    }
    assert redact(arguments, KEYS) == {
        "user": "svc",
        "Password": MASK,
        "config": {"api_key": MASK, "region": "eu", "nested": [{"client_secret": MASK}, "plain"]},
        "AUTHORIZATION": MASK,
        "refresh_token": MASK,
        "credentials": MASK,
        "private_key": MASK,
    }


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abcdefghijklmnop",
        "curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
        "sk-proj-0123456789abcdefghij",
        "keel_0123456789abcdefghij",
        "ghp_0123456789abcdefghijklmnop",
        "AKIAABCDEFGHIJKLMNOP",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
    ],
)
def test_credential_looking_values_are_masked_whatever_the_key(value: str) -> None:
    assert redact({"note": value, "list": [value]}, KEYS) == {"note": MASK, "list": [MASK]}


@pytest.mark.parametrize("value", ["deploy the bearer of good news", "sk-short", "hello world", "42"])
def test_ordinary_values_are_kept(value: str) -> None:
    assert redact({"text": value, "n": 3}, KEYS) == {"text": value, "n": 3}
