"""schemathesis (4.x, Python API) against the app, for each role: anonymous, a user, an
OrgAdmin. For every operation and generated input: no server error, every response
matches the OpenAPI document (status documented, body valid against its schema), and a
caller who is not an admin only ever gets 401/403 from an admin operation.

Opt-in for now: ``KEEL_SCHEMATHESIS=1 make test`` (or pytest this file with it set). The
one CI run that included it by default (141 cases, all passed) ended with a later,
unrelated-looking test timing out and others failing after it; until that is understood
it stays out of the default run (docs/api.md).

The app runs in-process with its real lifespan (Temporal, Postgres, Redis); operations
that wait for a worker (a chat turn, a knowledge query, tool discovery) are left to the
end-to-end tests, since no worker runs here. Examples are bounded to fit CI.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from infra.settings import Settings
from tests.conftest import free_port
from workers.api_app import build_api
from workers.serving import bind_socket, serving

pytestmark = pytest.mark.skipif(
    os.environ.get("KEEL_SCHEMATHESIS") != "1", reason="opt-in: set KEEL_SCHEMATHESIS=1 (see the module doc)"
)

#: Operations that wait for a worker's answer (none runs in this test).
_NEEDS_A_WORKER = (
    "chat",
    "chat_stream",
    "openai_chat_completions",
    "query_knowledge_base",
    "add_tool_server",
    "turn_events",
)


class _ApiThread:
    """The API served by uvicorn in a thread of its own (its own event loop), so the
    synchronous schemathesis calls go over real HTTP without blocking it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"request_timeout_s": 5.0, "api_port": free_port()})
        self.base_url = f"http://127.0.0.1:{self.settings.api_port}"
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serving(build_api(self.settings), bind_socket("127.0.0.1", self.settings.api_port)):
            await self._stop.wait()

    def __enter__(self) -> _ApiThread:
        self._thread.start()
        for _ in range(300):
            try:
                if requests.get(f"{self.base_url}/health/startup", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("the API did not start")

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.fixture
def app_client(settings: Settings) -> Iterator[_ApiThread]:
    with _ApiThread(settings) as api:
        yield api


_SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
schema = schemathesis.openapi.from_path(str(_SPEC))  # the generated document (test_openapi keeps it current)


def _token(api: _ApiThread, user_id: str, roles: list[str]) -> dict[str, str]:
    body = {"user_id": user_id, "roles": roles}
    resp = requests.post(f"{api.base_url}/api/v1/auth/dev-token", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _check(case: Any, app_client: _ApiThread, name: str) -> None:
    if case.operation.path == "/api/v1/auth/dev-token":
        pytest.skip("mints tokens for anyone by design (dev auth); covered by tests/auth")
    roles = ["OrgAdmin"] if name == "admin" else []
    headers = {} if name == "anonymous" else _token(app_client, f"fuzz-{name}", roles)
    response = case.call(base_url=app_client.base_url, headers=headers, timeout=30)
    case.validate_response(
        response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
    )
    probe = case.method.upper() != case.operation.method.upper()  # an unsupported-method probe: 405
    if "/admin/" in case.operation.path and name != "admin" and not probe:
        # 401/403; or the body refused as malformed before anyone is asked who they are (400/422,
        # which say nothing about the admin resource)
        assert response.status_code in (401, 403, 400, 422), (
            name,
            case.operation.label,
            response.status_code,
        )
        if response.status_code in (400, 422):
            refused = response.json()["error"]["code"]
            assert refused in ("malformed_json", "invalid_request", "invalid_text", "empty_message"), refused


_fuzzed = schema.exclude(operation_id=list(_NEEDS_A_WORKER)).parametrize()
_bounded = settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))


@_fuzzed
@_bounded
def test_anonymous_gets_no_server_error_and_documented_answers(case: Any, app_client: _ApiThread) -> None:
    _check(case, app_client, "anonymous")


@_fuzzed
@_bounded
def test_a_user_gets_no_server_error_and_documented_answers(case: Any, app_client: _ApiThread) -> None:
    _check(case, app_client, "user")


@_fuzzed
@_bounded
def test_an_admin_gets_no_server_error_and_documented_answers(case: Any, app_client: _ApiThread) -> None:
    _check(case, app_client, "admin")
