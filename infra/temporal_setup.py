"""Namespace set-up that an external Temporal cluster needs before Keel runs on it.

The embedded dev server registers Keel's search attributes through ``start-dev``
flags (see :mod:`infra.devstack`); a real cluster gets them here, through the
operator service. Temporal Cloud does not expose ``AddSearchAttributes`` on the
namespace endpoint: there, create them with ``tcld``/the Cloud UI and this check
then finds them already present.

Schedules (the audit trail's retention and export) are created or updated by
the worker at start-up through :func:`ensure_schedule`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

import structlog
import temporalio.client
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Schedule, ScheduleAlreadyRunningError, ScheduleUpdate, ScheduleUpdateInput
from temporalio.service import RPCError, RPCStatusCode

_log = structlog.get_logger(__name__)

KEEL_SEARCH_ATTRIBUTES: Final[Mapping[str, IndexedValueType.ValueType]] = {
    "KeelUserId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "KeelSessionId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "KeelKind": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}
"""Custom search attributes Keel's workflows are indexed by, with their types."""

_ATTEMPTS: Final = 3


class SearchAttributeConflictError(RuntimeError):
    """A Keel search attribute already exists on the namespace with another type."""


async def ensure_search_attributes(client: temporalio.client.Client, namespace: str) -> None:
    """Register Keel's search attributes on ``namespace``; a no-op for those already there.

    Idempotent and safe to run from several processes at once. Raises
    :class:`SearchAttributeConflictError` when a name exists with a different type,
    and lets :class:`temporalio.service.RPCError` through for anything else (no
    permission, unknown namespace, ...).
    """
    for _ in range(_ATTEMPTS):
        existing = await _list_custom_attributes(client, namespace)
        _check_types(existing, namespace)
        missing = {name: kind for name, kind in KEEL_SEARCH_ATTRIBUTES.items() if name not in existing}
        if not missing:
            _log.debug("temporal.search_attributes.present", namespace=namespace)
            return
        if await _add(client, namespace, missing):
            _log.info("temporal.search_attributes.added", namespace=namespace, names=sorted(missing))
            return
    raise RuntimeError(f"could not register Keel's search attributes on namespace {namespace!r}")


async def ensure_namespace(client: temporalio.client.Client, namespace: str, *, retention_days: int) -> bool:
    """Register ``namespace`` with a workflow retention of ``retention_days`` unless it
    exists; True when this call created it. An existing namespace is left as it is (its
    retention is the operator's). On Temporal Cloud namespaces are created with ``tcld``
    or the Cloud UI: there it must exist, and this only finds it."""
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), retry=True
        )
        return False
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    request = RegisterNamespaceRequest(
        namespace=namespace,
        description="Keel: durable enterprise agents",
        workflow_execution_retention_period=Duration(seconds=retention_days * 86_400),
    )
    if not await _register(client, request):
        return False  # another process registered it first
    _log.info("temporal.namespace.created", namespace=namespace, retention_days=retention_days)
    return True


async def _register(client: temporalio.client.Client, request: RegisterNamespaceRequest) -> bool:
    try:
        await client.workflow_service.register_namespace(request, retry=True)
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        return False
    return True


async def setup_temporal(client: temporalio.client.Client, namespace: str, *, retention_days: int) -> None:
    """Everything Keel needs on a Temporal namespace: the namespace itself, then its search
    attributes. The one set-up of ``keel dev``, ``keel temporal-setup`` and the chart's
    set-up Job (``temporal/setup.sh``); idempotent."""
    await ensure_namespace(client, namespace, retention_days=retention_days)
    for attempt in range(_ATTEMPTS * 10):  # a new namespace takes a moment to be usable
        try:
            await ensure_search_attributes(client, namespace)
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND or attempt == _ATTEMPTS * 10 - 1:
                raise
            await asyncio.sleep(0.5)


async def _list_custom_attributes(
    client: temporalio.client.Client, namespace: str
) -> dict[str, IndexedValueType.ValueType]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace), retry=True
    )
    return dict(response.custom_attributes)


def _check_types(existing: Mapping[str, IndexedValueType.ValueType], namespace: str) -> None:
    for name, wanted in KEEL_SEARCH_ATTRIBUTES.items():
        have = existing.get(name)
        if have is not None and have != wanted:
            raise SearchAttributeConflictError(
                f"search attribute {name} on namespace {namespace!r} has type "
                f"{IndexedValueType.Name(have)}, Keel needs {IndexedValueType.Name(wanted)}; "
                "remove it or use another namespace"
            )


async def _add(
    client: temporalio.client.Client, namespace: str, attributes: Mapping[str, IndexedValueType.ValueType]
) -> bool:
    """Add ``attributes``; False when another process added one of them first (list again)."""
    request = AddSearchAttributesRequest(namespace=namespace, search_attributes=dict(attributes))
    try:
        await client.operator_service.add_search_attributes(request, retry=True)
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        return False
    return True


async def ensure_schedule(client: temporalio.client.Client, schedule_id: str, schedule: Schedule) -> None:
    """Create the schedule, or bring an existing one up to date (its action, spec and
    policies); an operator's pause (``state``) is kept. Safe from several workers at once."""
    for attempt in range(_ATTEMPTS):
        try:
            await client.create_schedule(schedule_id, schedule)
            _log.info("temporal.schedule.created", schedule_id=schedule_id)
            return
        except ScheduleAlreadyRunningError:
            pass

        def _update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = current.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        try:
            await client.get_schedule_handle(schedule_id).update(_update)
        except RPCError as err:
            # NOT_FOUND: deleted between our create and update; FAILED_PRECONDITION: a concurrent update.
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        _log.debug("temporal.schedule.updated", schedule_id=schedule_id)
        return


async def remove_schedule(client: temporalio.client.Client, schedule_id: str) -> bool:
    """Delete the schedule if it exists; False when there was none."""
    try:
        await client.get_schedule_handle(schedule_id).delete()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    _log.info("temporal.schedule.deleted", schedule_id=schedule_id)
    return True
