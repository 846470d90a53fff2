"""The alert rules and the Grafana dashboard in helm/keel/files/ (the chart loads the same files)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import CHART, HERE, REPO, promtool

ALERTS = CHART / "files" / "keel-alerts.yaml"
DASHBOARD = CHART / "files" / "keel-dashboard.json"
RUNBOOK = REPO / "docs" / "runbook.md"

#: Every Keel metric the alerts and the dashboard may use, with its labels: the names the
#: API and the workers export (docs/deployment.md#metrics). A new name goes here first.
KNOWN_METRICS: dict[str, set[str]] = {
    "keel_http_requests_total": {"route", "method", "status"},
    "keel_http_request_duration_seconds": {"route", "method"},
    "keel_llm_tokens_total": {"model", "kind"},
    "keel_llm_cost_total": {"model"},
    "keel_llm_request_duration_seconds": {"model", "outcome"},
    "keel_llm_time_to_first_token_seconds": {"model"},
    "keel_retrieval_duration_seconds": {"outcome"},
    "keel_retrieval_results": set(),
    "keel_tool_calls_total": {"server", "tool", "outcome"},
    "keel_tool_call_duration_seconds": {"server", "tool"},
    "keel_circuit_state": {"dependency"},
    "keel_circuit_transitions_total": {"dependency", "state"},
    "keel_circuit_rejections_total": {"dependency"},
    "keel_users_active": {"window"},
    "keel_turns_total": {"outcome"},
    "keel_sessions_started_total": set(),
    "keel_documents": {"status"},
    "keel_knowledge_queries_total": set(),
    "keel_failed_operations": {"status"},
    "keel_budget_refusals_total": {"period"},
    "keel_budget_warnings_total": {"period"},
    "keel_rate_limited_total": set(),
    "keel_overloaded_total": set(),
}
HISTOGRAMS = {
    "keel_http_request_duration_seconds",
    "keel_llm_request_duration_seconds",
    "keel_llm_time_to_first_token_seconds",
    "keel_retrieval_duration_seconds",
    "keel_retrieval_results",
    "keel_tool_call_duration_seconds",
}
#: The Temporal SDK's metrics the dashboard shows (its Prometheus exporter, KEEL_TEMPORAL_METRICS_PORT).
TEMPORAL_METRICS = {
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_worker_task_slots_available",
    "temporal_request_failure",
}
_METRIC = re.compile(r"\b((?:keel|temporal)_[a-z0-9_]+)\b")
_SELECTOR = re.compile(r"\b(keel_[a-z0-9_]+)\{([^}]*)\}")
_BY = re.compile(r"\bby \(([^)]*)\)")


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [r["expr"] for r in rules()] + [t["expr"] for p in panels() for t in p["targets"]]


def base_name(metric: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if metric.endswith(suffix) and metric.removesuffix(suffix) in HISTOGRAMS:
            return metric.removesuffix(suffix)
    return metric


# ------------------------------------------------------------------ promtool
def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_fire_and_stay_silent() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yaml"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_cover_every_alert_both_ways() -> None:
    tests = yaml.safe_load((HERE / "alerts_test.yaml").read_text())
    assert (HERE / tests["rule_files"][0]).resolve() == ALERTS
    fired: set[str] = set()
    silent: set[str] = set()
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else silent).add(case["alertname"])
    names = {r["alert"] for r in rules()}
    assert fired == names
    assert silent == names


def test_promtool_test_fails_on_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule with its threshold moved fails them."""
    tool = promtool()
    broken = ALERTS.read_text().replace("> 0.1", "> 0.5")
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yaml").write_text(broken)
    tests = yaml.safe_load((HERE / "alerts_test.yaml").read_text())
    tests["rule_files"] = ["alerts.yaml"]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [tool, "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "KeelHighErrorRate" in result.stdout + result.stderr


# ------------------------------------------------------------------ the rules themselves
def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_every_alert_has_severity_text_and_a_runbook_section() -> None:
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/runbook.md"), name
        assert anchor == name.lower() and anchor in anchors, (name, url)


def test_the_latency_alert_leaves_out_streaming_routes() -> None:
    (latency,) = [r for r in rules() if r["alert"] == "KeelHighLatency"]
    assert 'route!~".*/(stream|events)"' in latency["expr"]


# ------------------------------------------------------------------ the dashboard
def test_dashboard_panels_have_a_datasource_and_targets() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert len(panels()) >= 20
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_dashboard_shows_each_area() -> None:
    used = {base_name(m) for p in panels() for t in p["targets"] for m in _METRIC.findall(t["expr"])}
    assert set(KNOWN_METRICS) <= used, set(KNOWN_METRICS) - used
    assert used >= TEMPORAL_METRICS, TEMPORAL_METRICS - used


def test_every_metric_name_and_label_is_known() -> None:
    for expr in expressions():
        for metric in _METRIC.findall(expr):
            if metric.startswith("temporal_"):
                assert metric in TEMPORAL_METRICS, (metric, expr)
                continue
            assert base_name(metric) in KNOWN_METRICS, (metric, expr)
        for metric, matchers in _SELECTOR.findall(expr):
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in KNOWN_METRICS[base_name(metric)], (metric, label, expr)
        metrics = [base_name(m) for m in _METRIC.findall(expr) if m.startswith("keel_")]
        if not metrics:
            continue
        allowed = set().union(*(KNOWN_METRICS[m] for m in metrics)) | {"le"}
        for grouping in _BY.findall(expr):
            for label in (x.strip() for x in grouping.split(",")):
                assert label in allowed, (label, expr)
