"""The embedded development stack (`keel dev`), against the real engines.

CI also has Postgres/Redis on 127.0.0.1, but these tests deliberately leave every
address unset so the embedded path itself is exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from infra.devstack import DevStack, DevStackError, temporal_command
from infra.settings import Settings
from infra.temporal_setup import KEEL_SEARCH_ATTRIBUTES, ensure_search_attributes

NAMESPACE = "keel-test"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def embedded_settings(data_dir: Path, **overrides: object) -> Settings:
    grpc_port, ui_port = free_ports(2)
    values: dict[str, object] = {
        "env": "test",
        "data_dir": data_dir,
        "temporal_address": None,
        "database_url": None,
        "redis_url": None,
        "temporal_port": grpc_port,
        "temporal_ui_port": ui_port,
        "temporal_namespace": NAMESPACE,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.contextmanager
def listening_on(port: int) -> Iterator[None]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


async def list_custom_attributes(client: Client, namespace: str) -> dict[str, int]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(response.custom_attributes)


async def _when_namespace_ready(client: Client, namespace: str, timeout_s: float = 20) -> dict[str, int]:
    """A just-registered namespace reaches the server's namespace cache a few seconds later."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await list_custom_attributes(client, namespace)
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.25)


async def write_probe_data(settings: Settings) -> None:
    assert settings.database_url and settings.redis_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "keel"
        await conn.execute("CREATE TABLE probe (id int PRIMARY KEY, body text NOT NULL)")
        await conn.execute("INSERT INTO probe VALUES (1, 'survives a restart')")
    finally:
        await conn.close()
    client = redis.asyncio.from_url(settings.redis_url)
    try:
        await client.set("keel:probe", "survives a restart")
        assert await client.get("keel:probe") == b"survives a restart"
    finally:
        await client.aclose()


async def read_probe_data(settings: Settings) -> tuple[object, object]:
    assert settings.database_url and settings.redis_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchval("SELECT body FROM probe WHERE id = 1")
    finally:
        await conn.close()
    client = redis.asyncio.from_url(settings.redis_url)
    try:
        value = await client.get("keel:probe")
    finally:
        await client.aclose()
    return row, value


async def check_temporal(settings: Settings) -> None:
    assert settings.temporal_address == f"127.0.0.1:{settings.temporal_port}"
    client = await Client.connect(settings.temporal_address, namespace=NAMESPACE)
    await ensure_search_attributes(client, NAMESPACE)
    listed = await list_custom_attributes(client, NAMESPACE)
    for name in KEEL_SEARCH_ATTRIBUTES:
        assert listed.get(name) == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


@pytest.mark.slow
async def test_embedded_stack_serves_and_keeps_data_across_restart(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data")
    stack = DevStack(settings)
    resolved = await stack.start()
    try:
        assert resolved.database_url and resolved.database_url.startswith("postgresql://")
        assert resolved.redis_url and resolved.redis_url.startswith("unix://")
        await write_probe_data(resolved)
        await check_temporal(resolved)
    finally:
        await stack.stop()
    await stack.stop()  # idempotent

    data_dir = tmp_path / "data"
    assert (data_dir / "temporal" / "temporal.db").is_file()
    assert (data_dir / "redis" / "redis.db").is_file()
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "postgres still running after stop"

    async with DevStack(settings) as again:
        assert await read_probe_data(again) == ("survives a restart", b"survives a restart")
        await check_temporal(again)


@pytest.mark.slow
async def test_ensure_search_attributes_registers_on_a_bare_namespace(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data", database_url="postgresql://unused", redis_url="unix:///x")
    async with DevStack(settings) as resolved:
        assert resolved.temporal_address
        client = await Client.connect(resolved.temporal_address)
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace="bare", workflow_execution_retention_period=Duration(seconds=86400)
            )
        )
        before = await _when_namespace_ready(client, "bare")
        await ensure_search_attributes(client, "bare")
        await ensure_search_attributes(client, "bare")  # idempotent
        after = await list_custom_attributes(client, "bare")
    assert set(KEEL_SEARCH_ATTRIBUTES) - set(before) == set(KEEL_SEARCH_ATTRIBUTES), before
    assert {name: after.get(name) for name in KEEL_SEARCH_ATTRIBUTES} == dict(KEEL_SEARCH_ATTRIBUTES)


@pytest.mark.slow
async def test_configured_addresses_start_nothing(tmp_path: Path) -> None:
    settings = embedded_settings(
        tmp_path / "data",
        temporal_address="temporal.example:7233",
        database_url="postgresql://keel@db.example/keel",
        redis_url="redis://cache.example:6379/0",
    )
    async with DevStack(settings) as resolved:
        assert resolved == settings
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
async def test_temporal_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data", database_url="postgresql://unused", redis_url="unix:///x")
    with listening_on(settings.temporal_port), pytest.raises(DevStackError) as caught:
        await DevStack(settings).start()
    message = str(caught.value)
    assert f"127.0.0.1:{settings.temporal_port} is in use" in message
    assert "KEEL_TEMPORAL_PORT" in message
    assert not (tmp_path / "data" / "temporal" / "server.pid").exists()


@pytest.mark.slow
async def test_one_stack_per_data_dir(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data", database_url="postgresql://unused", redis_url="unix:///x")
    other = settings.model_copy(update={"temporal_port": free_ports(1)[0]})
    async with DevStack(settings):
        with pytest.raises(DevStackError, match="in use by another `keel dev`"):
            await DevStack(other).start()


def test_temporal_command_registers_namespace_and_search_attributes(tmp_path: Path) -> None:
    command = temporal_command(
        Path("/bin/temporal"), db_file=tmp_path / "t.db", port=7233, ui_port=8233, namespace="keel"
    )
    joined = " ".join(command)
    assert joined.startswith("/bin/temporal server start-dev --ip 127.0.0.1 --port 7233 --ui-port 8233")
    assert f"--db-filename {tmp_path / 't.db'}" in joined
    assert "--namespace keel" in joined
    for name in KEEL_SEARCH_ATTRIBUTES:
        assert f"--search-attribute {name}=Keyword" in joined
    default = temporal_command(Path("t"), db_file=tmp_path / "t.db", port=1, ui_port=2, namespace="default")
    assert "--namespace" not in default
