"""The deployment artefacts (helm/keel, Dockerfile), checked offline without a ``helm`` binary.

The chart is rendered, linted and schema-checked by helm-python-sdk (Helm v4's Go SDK in a
wheel), manifests are validated by kubernetes-validate, the alert rules by Debian's promtool.
A missing tool skips its tests with the reason, unless ``KEEL_DEPLOY_TESTS_REQUIRED=1``
(``.ci/run`` sets it), where it fails them instead.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "keel"
HERE = Path(__file__).resolve().parent
RELEASE = "keel"
NAMESPACE = "keel"

#: The values every install must give (the chart refuses to render without them); "defaults"
#: means the chart's values.yaml plus only these.
REQUIRED_VALUES: dict[str, Any] = {
    "llm": {"openai": {"baseUrl": "https://llm.example.internal/v1", "model": "gpt-4o-mini"}},
    "entra": {"tenantId": "tenant-1", "clientId": "client-1"},
    "secrets": {
        "values": {
            "KEEL_SECRET_KEY": "test-secret-key-0123456789",
            "KEEL_DATABASE_URL": "postgresql://keel:pw@db:5432/keel",
            "KEEL_REDIS_URL": "redis://redis:6379/0",
            "KEEL_LLM_API_KEY": "sk-test",
            "KEEL_ENTRA_CLIENT_SECRET": "entra-secret",
        }
    },
}


def required() -> bool:
    return os.environ.get("KEEL_DEPLOY_TESTS_REQUIRED", "") not in ("", "0")


def need(ok: bool, reason: str) -> None:
    """Skip (or, with KEEL_DEPLOY_TESTS_REQUIRED=1, fail) when a tool is missing."""
    if ok:
        return
    if required():
        pytest.fail(f"{reason} (KEEL_DEPLOY_TESTS_REQUIRED=1)")
    pytest.skip(reason)


def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def promtool() -> str:
    path = shutil.which("promtool")
    need(path is not None, "promtool is not installed (apt-get install prometheus)")
    assert path is not None
    return path


def values_file(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((HERE / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


#: The values sets every structural test runs over.
VALUE_SETS: dict[str, Callable[[], dict[str, Any]]] = {
    "defaults": lambda: REQUIRED_VALUES,
    "ha": lambda: values_file("values-ha.yaml"),
    "minimal": lambda: values_file("values-minimal.yaml"),
}


@pytest.fixture(scope="session")
def helm() -> Any:
    need(have_module("helm_python"), "helm-python-sdk is not installed (pip install '.[dev]')")
    import helm_python

    return helm_python


@pytest.fixture(scope="session")
def chart(helm: Any) -> Any:
    return helm.Chart.load(str(CHART))


class Rendered:
    """One render of the chart: its manifests, as parsed objects."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.objects: list[dict[str, Any]] = [
            doc
            for path, text in files.items()
            if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text)
            if isinstance(doc, dict)
        ]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def workers(self) -> list[dict[str, Any]]:
        return [
            d
            for d in self.kind("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("worker-")
        ]


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[[dict[str, Any]], Rendered]:
    def _render(values: dict[str, Any]) -> Rendered:
        chart.validate_schema(values)
        return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))

    return _render


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, render: Callable[[dict[str, Any]], Rendered]) -> Rendered:
    return render(VALUE_SETS[request.param]())


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
