"""No secret reaches a log line: API keys, the LLM api key, the dev-token signing
secret, bearer tokens (good and bad) and session cookies, through a few requests
that authenticate, fail to, and run a chat turn against the fake model."""

from __future__ import annotations

import logging
import uuid

import pytest
import structlog
from pydantic import SecretStr
from temporalio.client import Client

from infra.logging import configure_logging
from infra.settings import Settings
from tests.conftest import fresh_database, running_platform
from tests.fakes.openai_server import FakeOpenAI


async def test_no_secret_appears_in_the_logs(
    settings: Settings,
    temporal_client: Client,
    llm: FakeOpenAI,
    capsys: pytest.CaptureFixture[str],
    service_urls: tuple[str, str],
) -> None:
    marker = uuid.uuid4().hex
    secrets = {
        "llm api key": f"sk-fake-llm-{marker}",
        "signing secret": f"dev-signing-secret-{marker}",
        "forged bearer": f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged{marker}",
        "unknown api key": f"keel_unknown{marker}",
        "session cookie": f"cookie{marker}",
        "csrf token": f"csrf{marker}",
    }
    # Its own database: the audit chain is keyed by the secret this test changes, and the
    # suite's shared chain must stay verifiable with the usual key.
    async with fresh_database(service_urls[0], "keel_logs") as database_url:
        configured = settings.model_copy(
            update={
                "llm_api_key": SecretStr(secrets["llm api key"]),
                "secret_key": SecretStr(secrets["signing secret"]),
                "log_level": "DEBUG",
                "database_url": database_url,
            }
        )
        await _run_requests(configured, temporal_client, llm, secrets)
    captured = capsys.readouterr()
    logs = captured.err + captured.out
    assert "api.started" in logs  # the capture saw the log lines
    leaked = [name for name, value in secrets.items() if value in logs]
    assert not leaked, f"secrets in the logs: {leaked}"


async def _run_requests(
    configured: Settings, temporal_client: Client, llm: FakeOpenAI, secrets: dict[str, str]
) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(level="DEBUG", json=True)  # as `keel api` does, at the most verbose level
    # ...but loggers must not keep these processors after the test (later tests capture logs).
    structlog.configure(cache_logger_on_first_use=False)
    try:
        async with running_platform(configured, temporal_client) as api:
            token = await api.token("log-alice")
            secrets["dev token"] = token
            auth = {"Authorization": f"Bearer {token}"}
            created = await api.http.post(
                "/api/v1/api-keys", headers=auth, json={"name": "logged?", "scopes": ["use_agent"]}
            )
            assert created.status_code == 201, created.text
            secrets["api key"] = created.json()["key"]
            chat = await api.http.post(
                "/api/v1/chat",
                headers={"Authorization": f"Bearer {secrets['api key']}"},
                json={"message": "hi"},
            )
            assert chat.status_code == 200, chat.text
            assert llm.request_count >= 1
            for bad in (secrets["forged bearer"], secrets["unknown api key"], f"{secrets['api key']}x"):
                resp = await api.http.get("/api/v1/sessions", headers={"Authorization": f"Bearer {bad}"})
                assert resp.status_code == 401
            resp = await api.http.post(
                "/api/v1/auth/logout",
                headers={
                    "Cookie": f"keel_session={secrets['session cookie']}",
                    "X-CSRF-Token": secrets["csrf token"],
                },
            )
            assert resp.status_code == 401
            rotated = await api.http.post(f"/api/v1/api-keys/{created.json()['id']}/rotate", headers=auth)
            secrets["rotated api key"] = rotated.json()["key"]
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
        structlog.reset_defaults()
