"""helm/keel: rendered for each values set, linted, schema-checked, validated, and its facts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    REQUIRED_VALUES,
    VALUE_SETS,
    Rendered,
    deep_merge,
    env_of,
    have_module,
    need,
    values_file,
)

KUBE_VERSION = "1.33.0"
GROUPS = {"chat", "retrieval", "tools", "ingest", "audit"}
#: value names other components and docs rely on
CONTRACT_VALUES = [
    ("api", "replicas"),
    ("autoscaling", "enabled"),
    ("podDisruptionBudget", "enabled"),
    ("monitoring", "enabled"),
    ("slack", "socketMode", "enabled"),
]
RenderFn = Callable[[dict[str, Any]], Rendered]


def with_required(**override: Any) -> dict[str, Any]:
    return deep_merge(REQUIRED_VALUES, override)


def pods(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload: Deployments and Jobs."""
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in rendered.kind("Deployment") + rendered.kind("Job")
    ]


def settings_of(rendered: Rendered, pod: dict[str, Any]) -> dict[str, str]:
    """What a pod's one container sees: the ConfigMap it loads, then its own env."""
    (container,) = pod["containers"]
    seen: dict[str, str] = {}
    for source in container.get("envFrom", []):
        seen.update(rendered.named("ConfigMap", source["configMapRef"]["name"])["data"])
    seen.update(env_of(container))
    return seen


# ------------------------------------------------------------------ lint, schema, validation
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_is_clean(helm: Any, name: str) -> None:
    report = helm.lint(str(CHART), VALUE_SETS[name](), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_default_values_without_the_required_ones_refuse_to_render(chart: Any, helm: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"llm.openai.model"):
        chart.render({}, name="keel", namespace="keel")
    no_db = with_required()
    no_db["secrets"] = {"values": {**REQUIRED_VALUES["secrets"]["values"], "KEEL_DATABASE_URL": ""}}
    with pytest.raises(helm.HelmRenderError, match=r"secrets.values.KEEL_DATABASE_URL is required"):
        chart.render(no_db, name="keel", namespace="keel")


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"api": {"replicas": "3"}}, "/api/replicas"),
        ({"slack": {"socketMode": {"replicas": 11}}}, "/slack/socketMode/replicas"),
        ({"autoscaling": {"enabled": "yes"}}, "/autoscaling/enabled"),
        ({"podDisruptionBudget": {"enabled": 1}}, "/podDisruptionBudget/enabled"),
        ({"monitoring": {"enabled": "true"}}, "/monitoring/enabled"),
        ({"workers": {"chat": {"queues": "chat"}}}, "/workers/chat/queues"),
        ({"workers": {"chat": {"queues": ["chats"]}}}, "/workers/chat/queues/0"),
        ({"worker": {"terminationMarginSeconds": 0}}, "/worker/terminationMarginSeconds"),
        ({"llm": {"provider": "bedrock"}}, "/llm/provider"),
        ({"apiReplicas": 3}, "apiReplicas"),
        ({"containerSecurityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
    ],
)
def test_schema_refuses_bad_values(chart: Any, helm: Any, bad: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(with_required(**bad))
    assert where in str(refused.value)


def test_schema_names_the_contract_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in CONTRACT_VALUES:
        node, value = schema, defaults
        for key in path:
            node = node["properties"][key]
            value = value[key]
        assert node["type"] == ("integer" if path[-1] == "replicas" else "boolean"), path
        assert isinstance(value, int), path  # values.yaml gives it a default (bool is an int)
    assert (
        schema["properties"]["slack"]["properties"]["socketMode"]["properties"]["replicas"]["maximum"] == 10
    )


def test_every_manifest_is_valid_kubernetes(rendered: Rendered) -> None:
    need(have_module("kubernetes_validate"), "kubernetes-validate is not installed (pip install '.[dev]')")
    import kubernetes_validate

    for obj in rendered.objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: test_prometheus_operator_objects_are_well_formed
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")


def test_kubernetes_validate_catches_a_broken_manifest(render: RenderFn) -> None:
    """The check above is not vacuous: a string replica count and an unknown field fail."""
    need(have_module("kubernetes_validate"), "kubernetes-validate is not installed (pip install '.[dev]')")
    import kubernetes_validate

    deployment = render(REQUIRED_VALUES).named("Deployment", "keel-api")
    for broken in ({"replicas": "3"}, {"replica": 3}):
        bad = deep_merge(deployment, {"spec": {**deployment["spec"], **broken}})
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)


# ------------------------------------------------------------------ the Prometheus Operator's objects
_ENDPOINT = {
    "type": "object",
    "required": ["port", "path"],
    "properties": {"port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"}},
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr", "labels", "annotations"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "expr": {"type": "string"},
                                            "for": {"type": "string"},
                                            "labels": {"type": "object"},
                                            "annotations": {"type": "object"},
                                        },
                                    },
                                }
                            },
                        },
                    }
                },
            },
        },
    },
}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_prometheus_operator_objects_are_well_formed(render: RenderFn) -> None:
    need(have_module("jsonschema"), "jsonschema is not installed (kubernetes-validate brings it)")
    import jsonschema

    rendered = render(values_file("values-ha.yaml"))
    for kind, schema in CRD_SCHEMAS.items():
        assert rendered.kind(kind), kind
        for obj in rendered.kind(kind):
            jsonschema.validate(obj, schema)
    # each ServiceMonitor selects Services that have the ports it scrapes
    services = rendered.kind("Service")
    for monitor in rendered.kind("ServiceMonitor"):
        selected = [
            s
            for s in services
            if _selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert selected, monitor["metadata"]["name"]
        for service in selected:
            ports = {p["name"] for p in service["spec"]["ports"]}
            wanted = {e["port"] for e in monitor["spec"]["endpoints"]}
            if service["metadata"]["name"].endswith("slack-socket-mode"):
                wanted.discard("temporal-metrics")
            assert wanted <= ports, (monitor["metadata"]["name"], service["metadata"]["name"])
    scraped = {
        s["metadata"]["name"] for s in services if s["metadata"]["labels"].get("keel.dev/metrics") == "worker"
    }
    assert {d["metadata"]["name"] for d in rendered.workers()} <= scraped
    # the API's /metrics token is sent when the Secret has one
    (api_monitor,) = [m for m in rendered.kind("ServiceMonitor") if m["metadata"]["name"] == "keel-api"]
    assert api_monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["key"] == "KEEL_METRICS_TOKEN"
    assert api_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_rule_schema_catches_a_broken_rule() -> None:
    need(have_module("jsonschema"), "jsonschema is not installed (kubernetes-validate brings it)")
    import jsonschema

    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**rule, "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]}},
            CRD_SCHEMAS["PrometheusRule"],
        )


def test_prometheus_rule_is_the_alert_file(render: RenderFn) -> None:
    alerts = yaml.safe_load((CHART / "files" / "keel-alerts.yaml").read_text())
    rule = render(with_required(monitoring={"enabled": True})).named("PrometheusRule", "keel")
    assert rule["spec"] == alerts
    # with a runbook base URL, only the URLs' base changes
    base = "https://wiki.example.com/keel/runbook"
    moved = render(with_required(monitoring={"enabled": True, "runbookBaseUrl": base})).named(
        "PrometheusRule", "keel"
    )
    urls = [r["annotations"]["runbook_url"] for g in moved["spec"]["groups"] for r in g["rules"]]
    assert urls and all(u.startswith(base + "#") for u in urls)


def test_grafana_dashboard_configmap_holds_the_dashboard_file(render: RenderFn) -> None:
    assert not [
        c for c in render(REQUIRED_VALUES).kind("ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    rendered = render(with_required(monitoring={"grafanaDashboard": {"enabled": True}}))
    dashboard = rendered.named("ConfigMap", "keel-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    on_disk = json.loads((CHART / "files" / "keel-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["keel-dashboard.json"]) == on_disk


# ------------------------------------------------------------------ facts
def test_probes_on_the_api_and_every_worker(rendered: Rendered) -> None:
    (api,) = rendered.named("Deployment", "keel-api")["spec"]["template"]["spec"]["containers"]
    assert api["startupProbe"]["httpGet"] == {"path": "/health/startup", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert {"name": "http", "containerPort": 8000} in api["ports"]
    workers = rendered.workers()
    socket_mode = [
        d for d in rendered.kind("Deployment") if d["metadata"]["name"] == "keel-slack-socket-mode"
    ]
    assert workers
    for deployment in workers + socket_mode:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == 8081 == int(env_of(container)["KEEL_WORKER_HEALTH_PORT"])
        assert env_of(container)["KEEL_WORKER_HEALTH_HOST"] == "0.0.0.0"  # the kubelet probes from outside
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "health"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "health"}
    for deployment in workers:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["temporal-metrics"] == 9464 == int(env_of(container)["KEEL_TEMPORAL_METRICS_PORT"])


def test_worker_termination_grace_outlasts_its_drain(rendered: Rendered, render: RenderFn) -> None:
    for deployment in rendered.workers():
        pod = deployment["spec"]["template"]["spec"]
        drain = int(env_of(pod["containers"][0])["KEEL_WORKER_SHUTDOWN_GRACE_S"])
        assert pod["terminationGracePeriodSeconds"] > drain, deployment["metadata"]["name"]
    # a long per-group drain raises that group's grace period with it
    long_ingest = render(with_required(workers={"ingest": {"shutdownGraceSeconds": 900}}))
    pod = long_ingest.named("Deployment", "keel-worker-ingest")["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["KEEL_WORKER_SHUTDOWN_GRACE_S"] == "900"
    assert pod["terminationGracePeriodSeconds"] == 915


def test_one_worker_deployment_per_group_each_with_queues(render: RenderFn) -> None:
    def groups(rendered: Rendered) -> dict[str, list[str]]:
        found = {}
        for deployment in rendered.workers():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            command = container["command"]
            assert command[:2] == ["keel", "worker"], command
            assert "--queues" in command, command
            queues = command[command.index("--queues") + 1]
            assert queues, command
            found[deployment["metadata"]["labels"]["keel.dev/worker-group"]] = queues.split(",")
        return found

    assert groups(render(REQUIRED_VALUES)) == {g: [g] for g in GROUPS}
    ha = groups(render(values_file("values-ha.yaml")))
    assert ha == {g: [g] for g in [*GROUPS, "slack"]}
    assert set(groups(render(values_file("values-minimal.yaml")))) == GROUPS - {"tools"}
    merged = render(
        with_required(workers={"tools": {"enabled": False}, "audit": {"queues": ["audit", "tools"]}})
    )
    assert groups(merged)["audit"] == ["audit", "tools"]


def test_autoscaling_and_disruption_budgets_only_when_enabled(render: RenderFn) -> None:
    plain = render(REQUIRED_VALUES)
    assert not plain.kind("HorizontalPodAutoscaler") and not plain.kind("PodDisruptionBudget")
    assert plain.named("Deployment", "keel-api")["spec"]["replicas"] == 2
    assert render(with_required(api={"replicas": 5})).named("Deployment", "keel-api")["spec"]["replicas"] == 5

    ha = render(values_file("values-ha.yaml"))
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in ha.kind("HorizontalPodAutoscaler")}
    assert set(hpas) == {"keel-api", "keel-worker-chat", "keel-worker-retrieval"}
    assert [m["resource"]["name"] for m in hpas["keel-api"]["spec"]["metrics"]] == ["cpu"]
    assert all(h["apiVersion"] == "autoscaling/v2" for h in hpas.values())
    # an HPA owns the replica count of what it scales
    assert "replicas" not in ha.named("Deployment", "keel-api")["spec"]
    assert "replicas" not in ha.named("Deployment", "keel-worker-chat")["spec"]
    assert ha.named("Deployment", "keel-worker-ingest")["spec"]["replicas"] == 2

    pdbs = {p["metadata"]["name"]: p["spec"] for p in ha.kind("PodDisruptionBudget")}
    workloads = {d["metadata"]["name"] for d in ha.kind("Deployment")}
    assert set(pdbs) == workloads
    for name, spec in pdbs.items():
        assert spec["maxUnavailable"] == 1
        deployment = ha.named("Deployment", name)
        assert spec["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_monitoring_objects_only_when_enabled(rendered: Rendered, render: RenderFn) -> None:
    monitoring = rendered.kind("ServiceMonitor") + rendered.kind("PrometheusRule")
    enabled = any(o["kind"] == "PrometheusRule" for o in rendered.objects)
    assert bool(monitoring) == enabled
    assert not render(REQUIRED_VALUES).kind("ServiceMonitor")
    assert not render(REQUIRED_VALUES).kind("PrometheusRule")
    on = render(with_required(monitoring={"enabled": True}))
    assert len(on.kind("ServiceMonitor")) == 2 and len(on.kind("PrometheusRule")) == 1


def test_socket_mode_receiver_only_when_enabled(render: RenderFn, chart: Any, helm: Any) -> None:
    assert not [d for d in render(REQUIRED_VALUES).kind("Deployment") if "slack" in d["metadata"]["name"]]
    ha = render(values_file("values-ha.yaml"))
    receiver = ha.named("Deployment", "keel-slack-socket-mode")
    assert receiver["spec"]["replicas"] == 2
    (container,) = receiver["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["keel", "slack"]
    assert "KEEL_SLACK_APP_TOKEN_FILE" in env_of(container)
    http_only = render(
        deep_merge(values_file("values-ha.yaml"), {"slack": {"socketMode": {"enabled": False}}})
    )
    names = {d["metadata"]["name"] for d in http_only.kind("Deployment")}
    assert "keel-worker-slack" in names and "keel-slack-socket-mode" not in names
    with pytest.raises(helm.HelmRenderError, match=r"slack\.socketMode\.enabled needs slack\.enabled"):
        chart.render(with_required(slack={"socketMode": {"enabled": True}}), name="keel", namespace="keel")


def test_no_workload_uses_an_embedded_engine(rendered: Rendered) -> None:
    workloads = pods(rendered)
    assert workloads
    for name, pod in workloads:
        seen = settings_of(rendered, pod)
        assert seen["KEEL_ENV"] == "production", name
        assert seen["KEEL_AUTH_MODE"] == "oidc", name
        assert seen["KEEL_LOG_JSON"] == "true", name
        assert seen["KEEL_QDRANT_URL"].startswith("http"), name
        assert ":" in seen["KEEL_TEMPORAL_ADDRESS"], name
        assert seen["KEEL_METRICS_PORT"] == "9100", name
        assert {"KEEL_DATABASE_URL", "KEEL_REDIS_URL", "KEEL_SECRET_KEY"} <= {
            k.removesuffix("_FILE") for k in seen
        } | _secret_ref_names(pod), name


def _secret_ref_names(pod: dict[str, Any]) -> set[str]:
    return {e["name"] for e in pod["containers"][0].get("env", []) if "valueFrom" in e}


def test_api_listens_on_all_interfaces_with_metrics_apart(rendered: Rendered) -> None:
    pod = rendered.named("Deployment", "keel-api")["spec"]["template"]["spec"]
    seen = settings_of(rendered, pod)
    assert (seen["KEEL_API_HOST"], seen["KEEL_API_PORT"], seen["KEEL_METRICS_PORT"]) == (
        "0.0.0.0",
        "8000",
        "9100",
    )
    service = rendered.named("Service", "keel-api")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "http": "http",
        "metrics": "metrics",
    }


def test_secret_files_name_keys_the_secret_has(rendered: Rendered) -> None:
    secrets = {s["metadata"]["name"]: s for s in rendered.kind("Secret")}
    for name, pod in pods(rendered):
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret_name = volumes["secrets"]["secret"]["secretName"]
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        files = {k: v for k, v in env_of(container).items() if k.endswith("_FILE")}
        assert files, name
        for var, path in files.items():
            assert path == f"{mount['mountPath']}/{var.removesuffix('_FILE')}", (name, var)
        if secret_name in secrets:  # made by the chart (else the operator's existingSecret)
            held = set(secrets[secret_name]["stringData"])
            assert {v.removesuffix("_FILE") for v in files} <= held, (name, secret_name)


def test_existing_secret_and_env_mode(render: RenderFn) -> None:
    minimal = render(values_file("values-minimal.yaml"))
    assert not minimal.kind("Secret")
    for name, pod in pods(minimal):
        assert {v["name"]: v for v in pod["volumes"]}["secrets"]["secret"]["secretName"] == "keel-managed", (
            name
        )
    extra = render(
        values_file("values-minimal.yaml")
        | {"secrets": {"existingSecret": "keel-managed", "existingSecretExtraKeys": ["KEEL_AUDIT_HMAC_KEY"]}}
    )
    api = extra.named("Deployment", "keel-api")["spec"]["template"]["spec"]["containers"][0]
    assert "KEEL_AUDIT_HMAC_KEY_FILE" in env_of(api)
    as_env = render(with_required(secrets={"mountAsFiles": False}))
    api = as_env.named("Deployment", "keel-api")["spec"]["template"]["spec"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in api["containers"][0]["env"] if "valueFrom" in e
    }
    assert refs["KEEL_DATABASE_URL"] == {"name": "keel-secrets", "key": "KEEL_DATABASE_URL"}
    assert "secrets" not in {v["name"] for v in api["volumes"]}


def test_temporal_mtls_is_mounted_as_files(render: RenderFn) -> None:
    ha = render(values_file("values-ha.yaml"))
    config = ha.named("ConfigMap", "keel-config")["data"]
    assert config["KEEL_TEMPORAL_ADDRESS"] == "keel-prod.a1b2c.tmprl.cloud:7233"
    assert config["KEEL_TEMPORAL_NAMESPACE"] == "keel-prod.a1b2c"
    paths = {
        k: config[k]
        for k in ("KEEL_TEMPORAL_TLS_CERT_PATH", "KEEL_TEMPORAL_TLS_KEY_PATH", "KEEL_TEMPORAL_TLS_CA_PATH")
    }
    for name, pod in pods(ha):
        tls = {v["name"]: v for v in pod["volumes"]}["temporal-tls"]
        assert tls["secret"]["secretName"] == "keel-temporal-mtls", name
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "temporal-tls")
        assert mount["readOnly"] is True
        for path in paths.values():
            assert path.startswith(mount["mountPath"] + "/"), (name, path)
    assert not [k for k in render(REQUIRED_VALUES).named("ConfigMap", "keel-config")["data"] if "TLS" in k]
    api_key = render(
        with_required(
            temporal={"apiKey": {"enabled": True}}, secrets={"values": {"KEEL_TEMPORAL_API_KEY": "k"}}
        )
    )
    api = api_key.named("Deployment", "keel-api")["spec"]["template"]["spec"]["containers"][0]
    assert "KEEL_TEMPORAL_API_KEY_FILE" in env_of(api)


def test_blob_store_is_one_read_write_many_volume(render: RenderFn) -> None:
    rendered = render(REQUIRED_VALUES)
    (claim,) = rendered.kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    mounted = set()
    for name, pod in pods(rendered):
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        ]
        if claims:
            assert claims == [claim["metadata"]["name"]]
            mounted.add(name)
            seen = settings_of(rendered, pod)
            mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "blobs")
            assert mount["mountPath"] == seen["KEEL_BLOB_PATH"]
    assert mounted == {"keel-api", "keel-worker-ingest"}
    ha = render(values_file("values-ha.yaml"))
    assert {n for n, p in pods(ha) if any("persistentVolumeClaim" in v for v in p["volumes"])} == {
        "keel-api",
        "keel-worker-ingest",
        "keel-worker-slack",
    }
    assert not render(values_file("values-minimal.yaml")).kind("PersistentVolumeClaim")


def test_pods_run_locked_down(rendered: Rendered) -> None:
    for name, pod in pods(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        hf_home = settings_of(rendered, pod)["HF_HOME"]
        cache = next(path for path in mounts if hf_home.startswith(path + "/"))
        assert "emptyDir" in volumes[mounts[cache]], name


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(rendered: Rendered) -> None:
    (job,) = rendered.kind("Job")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["keel", "migrate"]
    (setup,) = job["spec"]["template"]["spec"]["initContainers"]  # before the migrations
    assert setup["command"] == ["keel-temporal-setup"]  # temporal/setup.sh in the image
    assert setup["env"] == container["env"] and setup["volumeMounts"] == container["volumeMounts"]
    assert "envFrom" not in container  # the ConfigMap does not exist yet on a first install
    secret_name = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}["secrets"]["secret"][
        "secretName"
    ]
    made = {s["metadata"]["name"]: s for s in rendered.kind("Secret")}
    if made:  # the chart's Secret: the Job reads a hook-made copy, made before it
        hook_secret = made[secret_name]["metadata"]["annotations"]
        assert hook_secret["helm.sh/hook"] == hooks["helm.sh/hook"]
        assert int(hook_secret["helm.sh/hook-weight"]) < int(hooks["helm.sh/hook-weight"])


def test_otel_and_extra_env_reach_every_container(render: RenderFn) -> None:
    ha = render(values_file("values-ha.yaml"))
    services = set()
    for name, pod in pods(ha):
        seen = settings_of(ha, pod)
        assert seen["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4317", name
        assert seen["TZ"] == "UTC", name
        assert seen["KEEL_RATE_LIMIT_PER_MINUTE"] == "120", name
        services.add(seen["OTEL_SERVICE_NAME"])
    assert len(services) == len(pods(ha))
    assert (
        "OTEL_EXPORTER_OTLP_ENDPOINT" not in render(REQUIRED_VALUES).named("ConfigMap", "keel-config")["data"]
    )


def test_the_chart_settings_win_over_config(render: RenderFn) -> None:
    forced = render(with_required(config={"KEEL_ENV": "development", "KEEL_AUTH_MODE": "dev"}))
    data = forced.named("ConfigMap", "keel-config")["data"]
    assert (data["KEEL_ENV"], data["KEEL_AUTH_MODE"]) == ("production", "oidc")


def test_ingress_only_when_enabled(render: RenderFn) -> None:
    assert not render(REQUIRED_VALUES).kind("Ingress")
    ha = render(values_file("values-ha.yaml"))
    (ingress,) = ha.kind("Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "keel.example.com"
    assert ingress["spec"]["tls"] == [{"hosts": ["keel.example.com"], "secretName": "keel-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "keel-api", "port": {"name": "http"}}
