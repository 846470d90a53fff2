"""Workflows name activities by the protocols in workflows/activity_defs.py, never by their
implementation classes (so importing a workflow loads no activity module). These tests keep
the two in step: every activity a workflow can call is registered, under the name it is
scheduled by and with the same input and result types, on the worker that runs that
workflow (its task queue); and, for mypy, every implementation class satisfies its protocol.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import pytest
from temporalio import activity

import activities.audit
import activities.budget
import activities.chat
import activities.ingest
import activities.knowledge_query
import activities.slack_commands
import activities.slack_files
import activities.slack_relay
import activities.slack_turns
import activities.tools
import slack_app.delivery
from infra.settings import Settings
from workers import audit_worker, chat_worker, ingest_worker, slack_worker
from workflows import activity_defs

_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _implementations_satisfy_protocols(
    chat: activities.chat.ChatActivities,
    tools: activities.tools.ToolActivities,
    budget: activities.budget.BudgetActivities,
    query: activities.knowledge_query.KnowledgeQueryActivities,
    ingest: activities.ingest.IngestActivities,
    audit: activities.audit.AuditActivities,
    slack_turns: activities.slack_turns.SlackTurnActivities,
    slack_relay: activities.slack_relay.SlackRelayActivities,
    slack_delivery: slack_app.delivery.SlackDeliveryActivities,
    slack_files: activities.slack_files.SlackFileActivities,
    slack_commands: activities.slack_commands.SlackCommandActivities,
) -> list[object]:
    """Never called: mypy fails here if a method's signature departs from its protocol."""
    as_chat: activity_defs.ChatActivities = chat
    as_tools: activity_defs.ToolActivities = tools
    as_budget: activity_defs.BudgetActivities = budget
    as_query: activity_defs.KnowledgeQueryActivities = query
    as_ingest: activity_defs.IngestActivities = ingest
    as_audit: activity_defs.AuditActivities = audit
    as_slack_turns: activity_defs.SlackTurnActivities = slack_turns
    as_slack_relay: activity_defs.SlackRelayActivities = slack_relay
    as_slack_delivery: activity_defs.SlackDeliveryActivities = slack_delivery
    as_slack_files: activity_defs.SlackFileActivities = slack_files
    as_slack_commands: activity_defs.SlackCommandActivities = slack_commands
    slack = [as_slack_turns, as_slack_relay, as_slack_delivery, as_slack_files, as_slack_commands]
    return [as_chat, as_tools, as_budget, as_query, as_ingest, as_audit, *slack]


def _definition(fn: Callable[..., Any]) -> Any:
    # The SDK's own reading of an @activity.defn callable: the name a workflow schedules
    # (workflow.execute_activity_method) and the one a worker registers come from it.
    return activity._Definition.must_from_callable(fn)


def _bare(cls: type[T]) -> T:
    """An instance without its clients: the worker only reads its bound methods' definitions."""
    return cls.__new__(cls)


@dataclass
class _Registered:
    task_queue: str
    workflows: list[type]
    activities: list[Callable[..., Any]]


class _RecordingWorker:
    built: list[_Registered] = []

    def __init__(
        self,
        client: object,
        *,
        task_queue: str,
        activities: list[Any],
        workflows: list[type] | None = None,
        **_: Any,
    ):
        _RecordingWorker.built.append(_Registered(task_queue, list(workflows or []), list(activities)))


@pytest.fixture(scope="module")
def workers() -> list[_Registered]:
    """The workers' registrations, built the way workers/ build them."""
    settings = Settings()
    patch = pytest.MonkeyPatch()
    _RecordingWorker.built = []
    try:
        for module in (chat_worker, ingest_worker, audit_worker, slack_worker):
            patch.setattr(module, "Worker", _RecordingWorker)
        chat = chat_worker.ChatWorkerActivities(
            chat=_bare(activities.chat.ChatActivities),
            tools=_bare(activities.tools.ToolActivities),
            budget=_bare(activities.budget.BudgetActivities),
            query=_bare(activities.knowledge_query.KnowledgeQueryActivities),
        )
        for build in (
            chat_worker.build_chat_worker,
            chat_worker.build_retrieval_worker,
            chat_worker.build_tools_worker,
        ):
            build(None, settings, chat)  # type: ignore[arg-type]
        ingest_worker.build_ingest_worker(None, settings, _bare(activities.ingest.IngestActivities))  # type: ignore[arg-type]
        audit_worker.build_audit_worker(None, settings, _bare(activities.audit.AuditActivities))  # type: ignore[arg-type]
        slack_worker.build_slack_worker(
            None,  # type: ignore[arg-type]
            settings,
            slack_worker.SlackWorkerActivities(
                turns=_bare(activities.slack_turns.SlackTurnActivities),
                relay=_bare(activities.slack_relay.SlackRelayActivities),
                delivery=_bare(slack_app.delivery.SlackDeliveryActivities),
                files=_bare(activities.slack_files.SlackFileActivities),
                commands=_bare(activities.slack_commands.SlackCommandActivities),
            ),
        )
    finally:
        patch.undo()
    return list(_RecordingWorker.built)


def _protocols() -> dict[str, type]:
    return {
        name: value
        for name, value in vars(activity_defs).items()
        if inspect.isclass(value) and Protocol in value.__mro__ and value.__module__ == activity_defs.__name__
    }


def _calls_in(
    module: ModuleType, protocols: dict[str, type], seen: set[str]
) -> set[tuple[str, str, str | None]]:
    """``(protocol, method, queue group)`` for every ``Protocol.method`` in ``module`` and in the
    workflows helper modules it imports (chat_turn, chat_approvals), not in other workflow
    modules. The group is ``x`` when the call passes ``task_queue=<input>.queues.x`` (a
    bulkhead: the activity runs on that group's queue), else ``None`` (the workflow's own)."""
    if module.__name__ in seen:
        return set()
    seen.add(module.__name__)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    routed: dict[tuple[str, str], str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Attribute):
            target = node.args[0]
            for kw in node.keywords:
                if kw.arg == "task_queue" and isinstance(kw.value, ast.Attribute):
                    assert isinstance(target.value, ast.Name)
                    routed[(target.value.id, target.attr)] = kw.value.attr
    calls = {
        (node.value.id, node.attr, routed.get((node.value.id, node.attr)))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in protocols
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workflows."):
            helper = importlib.import_module(node.module)
            if helper is not activity_defs and not _defines_workflow(helper):
                calls |= _calls_in(helper, protocols, seen)
    return calls


def _defines_workflow(module: ModuleType) -> bool:
    return any(
        inspect.isclass(v)
        and v.__module__ == module.__name__
        and hasattr(v, "__temporal_workflow_definition")
        for v in vars(module).values()
    )


def test_every_protocol_method_is_an_activity_definition() -> None:
    names: list[str] = []
    for proto in _protocols().values():
        for name, fn in vars(proto).items():
            if inspect.iscoroutinefunction(fn):
                defn = _definition(fn)
                assert defn.name == name, f"{proto.__name__}.{name} is scheduled as {defn.name!r}"
                names.append(defn.name)
    assert len(names) == len(set(names)), "two protocols declare the same activity name"
    assert len(names) >= 20


def test_every_activity_a_workflow_calls_is_registered_alike_on_its_worker(
    workers: list[_Registered],
) -> None:
    protocols = _protocols()
    settings = Settings()
    by_queue = {w.task_queue: w for w in workers}
    checked = routed = 0
    for worker in workers:
        for wf in worker.workflows:
            calls = _calls_in(importlib.import_module(wf.__module__), protocols, set())
            for proto_name, method, group in sorted(calls, key=str):
                queue = getattr(settings, f"{group}_task_queue") if group else worker.task_queue
                registered = {d.name: d for d in map(_definition, by_queue[queue].activities)}
                scheduled = _definition(getattr(protocols[proto_name], method))
                where = f"{wf.__name__} calls {proto_name}.{method} as {scheduled.name!r}"
                impl = registered.get(scheduled.name)
                assert impl is not None, f"{where}: not registered on task queue {queue!r}"
                assert impl.arg_types == scheduled.arg_types, f"{where}: input types differ"
                assert impl.ret_type == scheduled.ret_type, f"{where}: result type differs"
                checked += 1
                routed += group is not None
    assert checked >= 20  # the scan still finds the calls (BatchIngestWorkflow alone makes none)
    assert routed >= 2  # retrieve and call_tool go to their bulkheads


def test_bulkhead_activities_run_only_in_their_own_pool(workers: list[_Registered]) -> None:
    """The chat worker does not also serve knowledge searches or tool calls: a slow tool or
    index fills only its own pool's slots."""
    settings = Settings()
    names = {w.task_queue: {_definition(fn).name for fn in w.activities} for w in workers}
    assert {"retrieve", "search_knowledge"} <= names[settings.retrieval_task_queue]
    assert {"call_tool", "discover_tools"} <= names[settings.tools_task_queue]
    assert (
        not {"retrieve", "search_knowledge", "call_tool", "discover_tools"} & names[settings.chat_task_queue]
    )
    assert "call_llm" in names[settings.chat_task_queue]


def test_every_declared_activity_is_registered_by_some_worker(workers: list[_Registered]) -> None:
    registered = {_definition(fn).name for w in workers for fn in w.activities}
    declared = {
        _definition(fn).name
        for proto in _protocols().values()
        for fn in vars(proto).values()
        if inspect.iscoroutinefunction(fn)
    }
    assert declared <= registered, f"declared, registered nowhere: {sorted(declared - registered)}"


def test_workflow_modules_import_no_activity_module() -> None:
    for path in sorted((_ROOT / "workflows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n == "activities" or n.startswith("activities.") for n in names), path.name
