"""The one Temporal client factory (API, Slack, workers, tests): pydantic data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from infra.settings import Settings


async def connect_temporal(settings: Settings, *, address: str | None = None) -> Client:
    return await Client.connect(
        address or settings.resolved_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
