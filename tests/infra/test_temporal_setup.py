"""``temporal/setup.sh`` (``keel temporal-setup``) against a real Temporal server: a
missing namespace is created with the configured retention and Keel's search attributes
are registered; a second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from infra.temporal_setup import KEEL_SEARCH_ATTRIBUTES

_SCRIPT = Path(__file__).resolve().parents[2] / "temporal" / "setup.sh"


def _run_setup(temporal_address: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # the venv's keel
            "KEEL_TEMPORAL_ADDRESS": temporal_address,
            "KEEL_TEMPORAL_NAMESPACE": namespace,
            "KEEL_TEMPORAL_NAMESPACE_RETENTION_DAYS": "9",
            "KEEL_LOG_JSON": "false",
        }
    )
    return subprocess.run([str(_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


async def test_setup_creates_the_namespace_and_search_attributes_once(temporal_address: str) -> None:
    namespace = f"keel-setup-{uuid.uuid4().hex[:8]}"
    first = _run_setup(temporal_address, namespace)
    assert first.returncode == 0, first.stderr
    assert f"namespace '{namespace}' ready" in first.stdout
    client = await Client.connect(temporal_address, namespace=namespace)
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    assert described.config.workflow_execution_retention_ttl.seconds == 9 * 86_400
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert {n: listed.custom_attributes.get(n) for n in KEEL_SEARCH_ATTRIBUTES} == dict(
        KEEL_SEARCH_ATTRIBUTES
    )

    again = _run_setup(temporal_address, namespace)
    assert again.returncode == 0, again.stderr
    assert "temporal.namespace.created" not in again.stdout + again.stderr  # already there: left alone
