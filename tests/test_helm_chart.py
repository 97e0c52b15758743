"""The Helm chart renders, lints and validates, and installs what the repository defines.

Rendering uses Helm's own template engine through ``helm-python-sdk`` (Helm's Go SDK as a shared
library, no ``helm`` binary). Every rendered object is validated against the Kubernetes JSON
schemas of ``kubernetes-validate`` (strict: unknown fields fail) for the oldest supported and the
newest known Kubernetes version; Prometheus Operator objects against the schema of the fields the
chart uses, and their rules with ``promtool``. The rendered exporter config must pass
``lookout-exporter check-config`` and the rendered arguments the exporter's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import helm_python as helm
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from exporter.cli import build_parser
from tests.processes import run, started
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "lookout-exporter"
SCENARIOS = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "lookout", "monitoring"
# What `helm install lookout` names the Service, as the heartbeat docs call it.
FULLNAME = "lookout-exporter"
# apps.kubernetes.io/pod-index (the shard ordinal) exists from 1.28 on.
KUBE_VERSIONS = ("1.28", kubernetes_validate.latest_version())
DEFAULT_RUNBOOK_BASE = "https://github.com/lookout-exporter/lookout/blob/main/docs/runbooks/"

Manifest = dict[str, Any]


def scenario(name: str) -> dict[str, Any]:
    """The values of ``ci/<name>`` (an empty dict for the chart defaults)."""
    if name == "default":
        return {}
    loaded: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text(encoding="utf-8"))
    return loaded


def render(values: dict[str, Any], chart: Path = CHART) -> list[Manifest]:
    """Every object ``helm template`` would produce for ``values``, in template order."""
    with helm.Chart.load(chart) as loaded:
        rendered = loaded.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        document
        for template, text in sorted(rendered.items())
        if not template.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    ]


def notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as loaded:
        rendered = loaded.render(values, name=RELEASE, namespace=NAMESPACE)
    return rendered["lookout-exporter/templates/NOTES.txt"]


def only(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(manifests: list[Manifest]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def workload(manifests: list[Manifest]) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    return found


def container(manifests: list[Manifest]) -> dict[str, Any]:
    (found,) = workload(manifests)["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = found
    return result


# The monitoring.coreos.com/v1 fields this chart writes, as the operator's CRDs define them; no
# other field is allowed, so a misspelt or misplaced key fails.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
            "maxLength": 253,
        },
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}
_RELABEL = {
    "type": "object",
    "properties": {
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
    },
    "additionalProperties": False,
}
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {
                        "type": "object",
                        "properties": {"matchLabels": _STRING_MAP},
                        "additionalProperties": False,
                    },
                    "namespaceSelector": {
                        "type": "object",
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                        "additionalProperties": False,
                    },
                    "scrapeProtocols": {
                        "type": "array",
                        "items": {
                            "enum": [
                                "PrometheusProto",
                                "OpenMetricsText0.0.1",
                                "OpenMetricsText1.0.0",
                                "PrometheusText0.0.4",
                                "PrometheusText1.0.0",
                            ]
                        },
                    },
                    "scrapeClassicHistograms": {"type": "boolean"},
                    "nativeHistogramBucketLimit": {"type": "integer", "minimum": 0},
                    "nativeHistogramMinBucketFactor": {
                        "type": ["integer", "string", "number"],
                        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))$",
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                                "relabelings": {"type": "array", "items": _RELABEL},
                                "metricRelabelings": {"type": "array", "items": _RELABEL},
                            },
                        },
                    },
                },
            },
        },
        "additionalProperties": False,
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "query_offset": _DURATION,
                                "limit": {"type": "integer"},
                                "labels": _STRING_MAP,
                                "partial_response_strategy": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": _DURATION,
                                            "keep_firing_for": _DURATION,
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
        "additionalProperties": False,
    },
}


def validate(manifest: Manifest) -> None:
    """Raises unless ``manifest`` is a valid object of its kind."""
    if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(manifest, OPERATOR_SCHEMAS[manifest["kind"]])
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.fixture(params=["default", *SCENARIOS])
def values(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The chart defaults and every ci/*-values.yaml scenario."""
    return scenario(request.param)


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A copy of the chart, to add rule and dashboard files without touching the repository."""
    target = tmp_path / "lookout-exporter"
    shutil.copytree(CHART, target)
    return target


# --- the chart as a whole -------------------------------------------------------------------


def test_scenarios_cover_persistence_operator_sharding_and_network_policy() -> None:
    assert {
        "persistence-values.yaml",
        "operator-values.yaml",
        "sharding-values.yaml",
        "network-policy-values.yaml",
    } <= set(SCENARIOS)


def test_chart_lints_without_warnings(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


def test_every_rendered_object_is_a_valid_kubernetes_object(values: dict[str, Any]) -> None:
    manifests = render(values)
    assert manifests
    for manifest in manifests:
        validate(manifest)


def test_the_validation_rejects_a_misspelt_field() -> None:
    """Guards the test above: strict validation really looks at every field."""
    deployment = copy.deepcopy(only(render({"persistence": {"enabled": False}}), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor = copy.deepcopy(only(render(scenario("operator-values.yaml")), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intreval"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_every_object_carries_the_standard_labels(values: dict[str, Any]) -> None:
    for manifest in render(values):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "lookout-exporter"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == helm_chart_yaml()["appVersion"]
        assert labels["helm.sh/chart"] == "lookout-exporter-0.1.0"


def helm_chart_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    return loaded


SECRET_STAND_INS = {"LOOKOUT_STORAGE_URL": "postgresql://lookout@db.example.com/lookout"}


def test_rendered_config_passes_check_config(values: dict[str, Any], tmp_path: Path) -> None:
    """The ConfigMap, laid out as the pod sees /etc/lookout, is a valid exporter config."""
    manifests = render(values)
    for name, content in only(manifests, "ConfigMap", FULLNAME)["data"].items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    # The pod gets every variable of `env` (a Secret's value for secretKeyRef).
    environ = dict(os.environ)
    environ.update(
        {
            e["name"]: e.get("value", SECRET_STAND_INS.get(e["name"], "from-a-secret"))
            for e in container(manifests).get("env", [])
        }
    )
    result = run(
        [sys.executable, "-m", "exporter", "check-config", str(tmp_path / "config.yaml")],
        cwd=ROOT,
        env=environ,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_rendered_arguments_are_accepted_by_the_exporter(values: dict[str, Any]) -> None:
    """The container's args, with $(VAR) filled in as the kubelet does, parse as `run` flags."""
    spec = container(render(values))
    args = [a.replace("$(LOOKOUT_SHARD_INDEX)", "0") for a in spec["args"]]
    assert "$(" not in " ".join(args)
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    assert parsed.config == "/etc/lookout/config.yaml"
    assert parsed.listen == (None, spec["ports"][0]["containerPort"])
    assert parsed.location == (values.get("location") or None)


async def test_the_exporter_runs_with_the_rendered_pod_and_answers_its_probes(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The container's args and config start the exporter; liveness and readiness paths answer."""
    address = f"127.0.0.1:{unused_tcp_port}"
    values = {
        "location": "eu-west-1",
        "config": {
            "defaults": {"interval": "1s", "timeout": "1s"},
            "targets": [{"name": "self", "kind": "http", "url": f"http://{address}/-/healthy"}],
        },
    }
    manifests = render(values)
    (tmp_path / "config.yaml").write_text(
        only(manifests, "ConfigMap", FULLNAME)["data"]["config.yaml"], encoding="utf-8"
    )
    spec = container(manifests)
    replaced = {
        "--config=/etc/lookout/config.yaml": f"--config={tmp_path / 'config.yaml'}",
        "--web.listen-address=:9471": f"--web.listen-address={address}",
    }
    assert set(replaced) <= set(spec["args"])
    args = [replaced.get(arg, arg) for arg in spec["args"]]
    # A directory of its own stands in for the working directory, the data volume.
    workdir = tmp_path / "data-volume"
    workdir.mkdir()
    argv = [sys.executable, "-m", "exporter", *args]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with (
        started(argv, tmp_path / "exporter.log", cwd=workdir, env=environment),
        aiohttp.ClientSession() as session,
        asyncio.timeout(30),
    ):
        while True:
            try:
                async with session.get(f"http://{address}/metrics") as response:
                    metrics = await response.text()
            except aiohttp.ClientConnectionError:
                metrics = ""
            if 'lookout_probe_success{target="self",kind="http",location="eu-west-1"} 1' in (
                metrics
            ):
                break
            await asyncio.sleep(0.1)
        for probe in ("livenessProbe", "readinessProbe"):
            path = spec[probe]["httpGet"]["path"]
            async with session.get(f"http://{address}{path}") as response:
                assert response.status == 200, path


def test_the_image_tag_follows_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert helm_chart_yaml()["appVersion"] == pyproject["project"]["version"]
    image = container(render({}))["image"]
    assert image == f"ghcr.io/lookout-exporter/lookout-exporter:{pyproject['project']['version']}"
    pinned = container(render({"image": {"digest": "sha256:" + "ab" * 32}}))["image"]
    assert pinned == "ghcr.io/lookout-exporter/lookout-exporter@sha256:" + "ab" * 32


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_install_one_hardened_pod_that_keeps_its_heartbeats() -> None:
    manifests = render({})
    assert kinds(manifests) == [
        "ConfigMap",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]
    statefulset = only(manifests, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (exporter,) = pod["containers"]
    hardening = exporter["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"] == {"drop": ["ALL"]}
    assert hardening["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(exporter["resources"]) == {"requests", "limits"}
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    mounts = {m["mountPath"]: m["name"] for m in exporter["volumeMounts"]}
    assert mounts == {"/etc/lookout": "config", "/var/lib/lookout": "data", "/tmp": "tmp"}
    assert exporter["workingDir"] == "/var/lib/lookout"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "data" not in volumes, "the data volume is the claim"
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert not any(a.startswith("--shard") for a in exporter["args"])


def test_the_pod_disruption_budget_and_service_select_the_pods() -> None:
    manifests = render({})
    pod_labels = only(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for selector in (
        only(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        only(manifests, "Service", FULLNAME)["spec"]["selector"],
        only(manifests, "StatefulSet")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert only(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    port = only(manifests, "Service", FULLNAME)["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (9471, "http")


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = workload(render(values))["spec"]["template"]
        result: str = pod["metadata"]["annotations"]["checksum/config"]
        return result

    other = {"config": {"defaults": {"interval": "1m", "timeout": "10s"}, "targets": []}}
    assert checksum({}) == checksum({})
    assert checksum({}) != checksum(other)
    assert checksum({}) != checksum({"configFiles": {"schema.json": "{}"}})


def test_secrets_come_from_existing_secrets_as_env_and_read_only_files() -> None:
    manifests = render(scenario("service-values.yaml"))
    config_map = only(manifests, "ConfigMap", FULLNAME)["data"]
    assert "${ORDERS_API_TOKEN}" in config_map["config.yaml"]
    assert "orders.schema.json" in config_map
    exporter = container(manifests)
    (token,) = [e for e in exporter["env"] if e["name"] == "ORDERS_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "orders-api", "key": "token"}
    (mount,) = [m for m in exporter["volumeMounts"] if m["mountPath"] == "/run/secrets/orders-api"]
    assert mount["readOnly"] is True
    pod = workload(manifests)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "orders-api-client-cert"
    assert volume["secret"]["defaultMode"] == 0o440


# --- scenarios --------------------------------------------------------------------------------


def test_persistence_runs_a_statefulset_with_a_volume_claim() -> None:
    manifests = render(scenario("persistence-values.yaml"))
    assert "Deployment" not in kinds(manifests)
    statefulset = only(manifests, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "standard"
    pod = statefulset["spec"]["template"]["spec"]
    assert "data" not in {v["name"] for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/var/lib/lookout"
    headless = only(manifests, "Service", f"{FULLNAME}-pods")
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == f"{FULLNAME}-pods"


def test_helm_install_lookout_names_the_service_as_the_heartbeat_docs_do() -> None:
    docs = (ROOT / "docs" / "heartbeats.md").read_text(encoding="utf-8")
    assert f"http://{FULLNAME}.{NAMESPACE}:9471" in docs
    assert only(render({}), "Service", FULLNAME)["spec"]["ports"][0]["port"] == 9471
    with helm.Chart.load(CHART) as loaded:
        other = loaded.render({}, name="prod", namespace=NAMESPACE)
    assert "name: prod-lookout-exporter\n" in other["lookout-exporter/templates/service.yaml"]


def test_replicas_sharing_a_postgresql_store_have_no_volumes_and_probe_every_target() -> None:
    manifests = render(scenario("shared-store-values.yaml"))
    deployment = only(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert "StatefulSet" not in kinds(manifests)
    pod = deployment["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["data"] == {"name": "data", "emptyDir": {}}
    exporter = container(manifests)
    assert not any(a.startswith("--shard") for a in exporter["args"])
    (url,) = [e for e in exporter["env"] if e["name"] == "LOOKOUT_STORAGE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "lookout-db", "key": "url"}
    config_text = only(manifests, "ConfigMap", FULLNAME)["data"]["config.yaml"]
    assert yaml.safe_load(config_text)["storage"] == "${LOOKOUT_STORAGE_URL}"
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert "shared by every replica" in notes(scenario("shared-store-values.yaml"))


def test_redundant_probing_with_sqlite_keeps_a_claim_per_pod_without_shards() -> None:
    manifests = render({"replicas": 2, "probing": "redundant"})
    statefulset = only(manifests, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 2
    assert statefulset["spec"]["volumeClaimTemplates"]
    assert not any(a.startswith("--shard") for a in container(manifests)["args"])
    assert "each probing every target" in notes({"replicas": 2, "probing": "redundant"})


def test_a_postgresql_store_needs_the_secret_of_its_url() -> None:
    with pytest.raises(Exception, match=r"urlSecret|minLength|name"):
        render({"heartbeatStore": {"type": "postgresql"}})


async def test_the_rendered_pod_with_a_postgresql_store_turns_ready_with_the_database(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The shared-store scenario's args, config and environment start the exporter against a
    real PostgreSQL server; its readiness follows the store."""
    from tests.postgres import postgres_server

    manifests = render(scenario("shared-store-values.yaml"))
    for name, content in only(manifests, "ConfigMap", FULLNAME)["data"].items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    address = f"127.0.0.1:{unused_tcp_port}"
    spec = container(manifests)
    args = [
        {
            "--config=/etc/lookout/config.yaml": f"--config={tmp_path / 'config.yaml'}",
            "--web.listen-address=:9471": f"--web.listen-address={address}",
        }.get(arg, arg)
        for arg in spec["args"]
    ]
    workdir = tmp_path / "data-volume"
    workdir.mkdir()
    with postgres_server() as server:
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LOOKOUT_STORAGE_URL": server.create_database(),
        }
        argv = [sys.executable, "-m", "exporter", *args]
        async with (
            started(argv, tmp_path / "exporter.log", cwd=workdir, env=environment),
            aiohttp.ClientSession() as session,
            asyncio.timeout(60),
        ):
            ready = f"http://{address}{spec['readinessProbe']['httpGet']['path']}"
            status = 0
            while status != 200:
                await asyncio.sleep(0.1)
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(ready) as response:
                        status = response.status
            async with session.post(f"http://{address}/ping/nightly-billing") as response:
                assert response.status == 200
            await asyncio.to_thread(server.stop)
            while status != 503:
                await asyncio.sleep(0.2)
                async with session.get(ready) as response:
                    status = response.status
                async with session.post(f"http://{address}/ping/nightly-billing") as response:
                    assert response.status == 503
            await asyncio.to_thread(server.start)
            while status != 200:
                await asyncio.sleep(0.2)
                async with session.get(ready) as response:
                    status = response.status
    assert list(workdir.iterdir()) == [], "nothing is written to the pod's volume"


def test_replicas_shard_the_targets_by_statefulset_ordinal() -> None:
    manifests = render(scenario("sharding-values.yaml"))
    statefulset = only(manifests, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    exporter = container(manifests)
    assert "--shard=$(LOOKOUT_SHARD_INDEX)/3" in exporter["args"]
    assert "--location=eu-west-1" in exporter["args"]
    (index,) = [e for e in exporter["env"] if e["name"] == "LOOKOUT_SHARD_INDEX"]
    field = index["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert only(manifests, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": statefulset["spec"]["selector"],
    }


def test_every_shard_ordinal_is_a_valid_shard_and_together_they_cover_every_target() -> None:
    from exporter.scheduler import Shard

    values = scenario("sharding-values.yaml")
    arg = next(a for a in container(render(values))["args"] if a.startswith("--shard="))
    names = [t["name"] for t in values["config"]["targets"]]
    owners: dict[str, list[int]] = {name: [] for name in names}
    for ordinal in range(values["replicas"]):
        shard = Shard.parse(
            arg.removeprefix("--shard=").replace("$(LOOKOUT_SHARD_INDEX)", str(ordinal))
        )
        for name in names:
            if shard.owns(name):
                owners[name].append(ordinal)
    assert all(len(found) == 1 for found in owners.values()), owners


def test_network_policy_admits_only_prometheus_and_the_ping_namespaces() -> None:
    values = scenario("network-policy-values.yaml")
    policy = only(render(values), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "lookout-exporter",
        "app.kubernetes.io/instance": RELEASE,
    }
    scrape, ping = policy["ingress"]
    assert scrape["from"] == values["networkPolicy"]["prometheus"]
    namespaces, *others = ping["from"]
    assert namespaces["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["jobs", "workers"]}
    ]
    assert others == values["networkPolicy"]["pingFrom"]
    for rule in (scrape, ping):
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_network_policy_without_ping_sources_admits_only_prometheus() -> None:
    policy = only(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"]
    assert len(policy["ingress"]) == 1


def test_ingress_exposes_only_the_ping_endpoint() -> None:
    ingress = only(render(scenario("network-policy-values.yaml")), "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    (rule,) = ingress["rules"]
    assert rule["host"] == "heartbeats.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/ping/", "Prefix")
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"number": 9471}}
    assert ingress["tls"] == [{"secretName": "heartbeats-tls", "hosts": ["heartbeats.example.com"]}]


def test_ingress_can_publish_the_public_status_page() -> None:
    values = scenario("network-policy-values.yaml")
    values["ingress"] = {**values["ingress"], "publicStatusPage": True}
    (rule,) = only(render(values), "Ingress")["spec"]["rules"]
    paths = [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]
    assert paths == [
        ("/ping/", "Prefix"),
        ("/status", "Exact"),
        ("/status.json", "Exact"),
        ("/status/badge/", "Prefix"),
    ]
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"] == {"name": FULLNAME, "port": {"number": 9471}}


def test_ingress_without_hosts_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"ingress\.hosts"):
        render({"ingress": {"enabled": True}})


def test_service_monitor_scrapes_the_service_as_job_lookout() -> None:
    values = {**scenario("operator-values.yaml"), **scenario("sharding-values.yaml")}
    manifests = render(values)
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "monitoring"
    selector = monitor["spec"]["selector"]["matchLabels"]
    service = only(manifests, "Service", FULLNAME)
    headless = only(manifests, "Service", f"{FULLNAME}-pods")
    # Each pod once: through the Service, not also through the StatefulSet's headless Service.
    assert selector.items() <= service["metadata"]["labels"].items()
    assert not selector.items() <= headless["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert endpoint["relabelings"][0] == {
        "action": "replace",
        "targetLabel": "job",
        "replacement": "lookout",
    }
    assert endpoint["metricRelabelings"] == values["serviceMonitor"]["metricRelabelings"]


def test_service_monitor_asks_for_protobuf_and_keeps_classic_histograms_when_told() -> None:
    native = {
        "scrapeClassicHistograms": True,
        "nativeHistogramBucketLimit": 160,
        "nativeHistogramMinBucketFactor": "1.1",
    }
    values = {
        "serviceMonitor": {
            "enabled": True,
            "scrapeProtocols": ["PrometheusProto", "PrometheusText0.0.4"],
            "nativeHistograms": native,
        }
    }
    monitor = only(render(values), "ServiceMonitor")
    spec = monitor["spec"]
    assert spec["scrapeProtocols"] == ["PrometheusProto", "PrometheusText0.0.4"]
    assert native.items() <= spec.items()
    plain = only(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")["spec"]
    assert not {"scrapeProtocols", *native} & set(plain)


def test_operator_objects_are_off_by_default() -> None:
    assert not {"ServiceMonitor", "PrometheusRule"} & set(kinds(render({})))
    dashboards = [m for m in render({}) if "grafana_dashboard" in m["metadata"]["labels"]]
    assert dashboards == []


# --- rules and dashboards ---------------------------------------------------------------------

SAMPLE_RULES = f"""\
# A sample rule file in the layout of rules/.
groups:
  - name: sample-recording
    rules:
      - record: job:lookout_probe_success:avg
        expr: avg without (instance) (lookout_probe_success)
  - name: sample-alerts
    rules:
      - alert: SampleExporterDown
        expr: up{{job="lookout"}} == 0
        for: 5m
        labels:
          severity: critical
          team: exporter-owners
        annotations:
          summary: Exporter {{{{ $labels.instance }}}} is down.
          runbook_url: {DEFAULT_RUNBOOK_BASE}sample-exporter-down.md
          dashboard_url: /d/lookout-overview/lookout-overview
      - alert: SampleProbeFailing
        expr: lookout_probe_success == 0
        annotations:
          runbook_url: {DEFAULT_RUNBOOK_BASE}sample-probe-failing.md
"""

SAMPLE_DASHBOARD = {
    "uid": "sample-dashboard",
    "title": "Sample: {{ braces }} and 'quotes'",
    "templating": {"list": [{"name": "job", "query": 'label_values(up{job=~".+"}, job)'}]},
    "panels": [{"type": "timeseries", "targets": [{"expr": "rate(x[5m])\n  # two lines"}]}],
}


def expected_groups(path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The groups of a rule file after the chart's documented rewrites."""
    rules = values["prometheusRule"]
    text = path.read_text(encoding="utf-8").replace(DEFAULT_RUNBOOK_BASE, rules["runbookUrlBase"])
    groups: list[dict[str, Any]] = yaml.safe_load(text)["groups"]
    job = (
        rules.get("jobSelector")
        or f'job="{values.get("serviceMonitor", {}).get("job", "lookout")}"'
    )
    for group in groups:
        for rule in group["rules"]:
            rule["expr"] = str(rule["expr"]).replace('job="lookout"', job)
            if "alert" in rule and rules.get("alertLabels"):
                rule["labels"] = {**rules["alertLabels"], **rule.get("labels", {})}
    return groups


def rule_files(chart: Path) -> list[Path]:
    """The rule files the chart renders by default (``optional/`` only when selected)."""
    files = chart / "files" / "rules"
    return sorted(
        p
        for p in files.rglob("*")
        if p.suffix in (".yml", ".yaml") and p.relative_to(files).parts[0] != "optional"
    )


def test_prometheus_rules_are_the_rule_files_with_the_documented_rewrites(
    chart_copy: Path, tmp_path: Path
) -> None:
    """Every rule file in the chart (the synced rules/ plus a sample) becomes one PrometheusRule."""
    sample = chart_copy / "files" / "rules" / "sample" / "Exporter_Sample.yml"
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_text(SAMPLE_RULES, encoding="utf-8")
    values = scenario("operator-values.yaml")
    values["prometheusRule"]["jobSelector"] = 'job="lookout-eu",namespace="monitoring"'
    manifests = render(values, chart_copy)
    objects = {
        m["metadata"]["annotations"]["lookout-exporter.github.io/source"]: m
        for m in manifests
        if m["kind"] == "PrometheusRule"
    }
    files = rule_files(chart_copy)
    assert sorted(objects) == sorted(p.relative_to(chart_copy / "files").as_posix() for p in files)
    for path in files:
        rule = objects[path.relative_to(chart_copy / "files").as_posix()]
        validate(rule)
        assert rule["metadata"]["labels"]["release"] == "monitoring"
        assert rule["spec"]["groups"] == expected_groups(path, values)
    sample_rule = objects["rules/sample/Exporter_Sample.yml"]
    assert sample_rule["metadata"]["name"] == f"{FULLNAME}-sample-exporter-sample"
    down, failing = sample_rule["spec"]["groups"][1]["rules"]
    assert down["expr"] == 'up{job="lookout-eu",namespace="monitoring"} == 0'
    assert down["labels"] == {"severity": "critical", "team": "exporter-owners"}
    assert failing["labels"] == {"team": "platform"}
    assert down["annotations"]["runbook_url"] == (
        "https://wiki.example.com/runbooks/lookout/sample-exporter-down.md"
    )
    assert down["annotations"]["summary"] == "Exporter {{ $labels.instance }} is down."
    # What Prometheus gets must be a valid rule file.
    promtool = require_tool("promtool")
    for number, rule in enumerate(objects.values()):
        rendered = tmp_path / f"rendered-{number}.yml"
        rendered.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
        check = run([promtool, "check", "rules", str(rendered)])
        assert check.returncode == 0, check.stdout + check.stderr


def test_an_optional_rule_file_is_rendered_instead_of_the_default_it_replaces() -> None:
    values = {"prometheusRule": {"enabled": True, "optionalRules": ["sla-excluding-maintenance"]}}
    objects = {
        m["metadata"]["annotations"]["lookout-exporter.github.io/source"]: m
        for m in render(values)
        if m["kind"] == "PrometheusRule"
    }
    assert "rules/recording/sla.yml" not in objects
    assert "rules/optional/slo-excluding-maintenance.yml" not in objects
    assert "rules/recording/slo.yml" in objects
    rule = objects["rules/optional/sla-excluding-maintenance.yml"]
    assert rule["metadata"]["name"] == f"{FULLNAME}-optional-sla-excluding-maintenance"
    path = CHART / "files" / "rules" / "optional" / "sla-excluding-maintenance.yml"
    defaults = {"prometheusRule": {"runbookUrlBase": DEFAULT_RUNBOOK_BASE}}
    assert rule["spec"]["groups"] == expected_groups(path, defaults)


def test_the_values_schema_offers_every_optional_rule_file() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    offered = schema["properties"]["prometheusRule"]["properties"]["optionalRules"]["items"]
    assert sorted(offered["enum"]) == sorted(
        p.stem for p in (ROOT / "rules" / "optional").glob("*.yml")
    )


def test_rules_follow_the_service_monitor_job_label(chart_copy: Path) -> None:
    sample = chart_copy / "files" / "rules" / "sample.yml"
    sample.write_text(SAMPLE_RULES, encoding="utf-8")
    values = {"prometheusRule": {"enabled": True}, "serviceMonitor": {"job": "lookout-eu"}}
    (rule,) = [
        m
        for m in render(values, chart_copy)
        if m["kind"] == "PrometheusRule" and m["metadata"]["name"].endswith("-sample")
    ]
    assert rule["spec"]["groups"][1]["rules"][0]["expr"] == 'up{job="lookout-eu"} == 0'
    url = rule["spec"]["groups"][1]["rules"][0]["annotations"]["runbook_url"]
    assert url == f"{DEFAULT_RUNBOOK_BASE}sample-exporter-down.md"


def test_dashboards_are_config_maps_for_the_grafana_sidecar(chart_copy: Path) -> None:
    """Every dashboard in the chart (the synced grafana-dashboards/ plus a sample), unchanged."""
    sample = chart_copy / "files" / "dashboards" / "Sample_Dashboard.json"
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_text(json.dumps(SAMPLE_DASHBOARD, indent=2) + "\n", encoding="utf-8")
    values = scenario("operator-values.yaml")
    manifests = render(values, chart_copy)
    maps = [m for m in manifests if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = sorted((chart_copy / "files" / "dashboards").glob("*.json"))
    assert sorted(name for m in maps for name in m["data"]) == sorted(p.name for p in files)
    for config_map in maps:
        validate(config_map)
        assert config_map["metadata"]["namespace"] == "grafana"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Lookout"}
        ((name, content),) = config_map["data"].items()
        source = (chart_copy / "files" / "dashboards" / name).read_text(encoding="utf-8")
        assert content == source.rstrip("\n")
        assert json.loads(content) == json.loads(source)
    (sample_map,) = [m for m in maps if "Sample_Dashboard.json" in m["data"]]
    assert sample_map["metadata"]["name"] == f"{FULLNAME}-dashboard-sample-dashboard"


def test_the_chart_copies_of_rules_and_dashboards_match_the_sources() -> None:
    """helm/sync.py --check: files/ holds exactly rules/ and grafana-dashboards/, byte for byte."""
    result = run([sys.executable, str(ROOT / "helm" / "sync.py"), "--check"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A small repository: rule files (and files that are not), a dashboard, an empty chart."""
    (tmp_path / "rules" / "alerts").mkdir(parents=True)
    (tmp_path / "rules" / "alerts" / "probes.yml").write_text(SAMPLE_RULES, encoding="utf-8")
    (tmp_path / "rules" / "recording.yaml").write_text("groups: []\n", encoding="utf-8")
    (tmp_path / "rules" / "optional").mkdir()
    (tmp_path / "rules" / "optional" / "recording-variant.yml").write_text(
        "groups: []\n", encoding="utf-8"
    )
    (tmp_path / "rules" / "alertmanager").mkdir()
    (tmp_path / "rules" / "alertmanager" / "routing.yml").write_text(
        "route:\n  receiver: default\n", encoding="utf-8"
    )
    (tmp_path / "rules" / "README.md").write_text("# rules\n", encoding="utf-8")
    (tmp_path / "grafana-dashboards").mkdir()
    (tmp_path / "grafana-dashboards" / "overview.json").write_text(
        json.dumps(SAMPLE_DASHBOARD), encoding="utf-8"
    )
    (tmp_path / "grafana-dashboards" / "generate.py").write_text("print()\n", encoding="utf-8")
    (tmp_path / "helm" / "lookout-exporter").mkdir(parents=True)
    return tmp_path


def sync(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(ROOT / "helm" / "sync.py"), "--root", str(root), *args])


def test_sync_copies_rule_files_and_dashboards_and_nothing_else(repository: Path) -> None:
    assert sync(repository, "--check").returncode == 1
    assert sync(repository).returncode == 0
    files = repository / "helm" / "lookout-exporter" / "files"
    copied = sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file())
    assert copied == [
        "dashboards/overview.json",
        "rules/alerts/probes.yml",
        "rules/optional/recording-variant.yml",
        "rules/recording.yaml",
    ]
    assert (files / "rules/alerts/probes.yml").read_bytes() == (
        repository / "rules/alerts/probes.yml"
    ).read_bytes()
    check = sync(repository, "--check")
    assert (check.returncode, check.stdout) == (0, "")


def test_sync_check_names_changed_and_removed_sources(repository: Path) -> None:
    sync(repository)
    (repository / "rules" / "alerts" / "probes.yml").write_text(
        SAMPLE_RULES.replace("5m", "10m"), encoding="utf-8"
    )
    (repository / "grafana-dashboards" / "overview.json").unlink()
    check = sync(repository, "--check")
    assert check.returncode == 1
    assert check.stdout.splitlines() == [
        "differs: helm/lookout-exporter/files/rules/alerts/probes.yml from rules/alerts/probes.yml",
        "stale: helm/lookout-exporter/files/dashboards/overview.json"
        " (no grafana-dashboards/overview.json)",
    ]
    assert sync(repository).returncode == 0
    assert not (repository / "helm/lookout-exporter/files/dashboards/overview.json").exists()
    assert sync(repository, "--check").returncode == 0


def test_sync_names_a_source_that_does_not_parse(repository: Path) -> None:
    (repository / "rules" / "broken.yml").write_text("groups: [\n", encoding="utf-8")
    result = sync(repository, "--check")
    assert result.returncode == 2
    assert "rules/broken.yml: not valid YAML" in result.stderr


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        pytest.param({"replica": 3}, "replica", id="top-level-typo"),
        pytest.param({"image": {"tga": "1.0"}}, "tga", id="nested-typo"),
        pytest.param({"serviceMonitor": {"enable": True}}, "enable", id="operator-typo"),
        pytest.param({"replicas": 0}, "/replicas", id="no-replicas"),
        pytest.param({"persistence": {"size": "lots"}}, "/persistence/size", id="bad-size"),
        pytest.param({"location": "eu west"}, "/location", id="bad-location"),
        pytest.param(
            {
                "config": {
                    "targets": [
                        {
                            "name": "a",
                            "kind": "http",
                            "url": "https://a.example",
                            "http": {"bearer_token": "s3cr3t"},
                        }
                    ]
                }
            },
            "bearer_token",
            id="inline-bearer-token",
        ),
        pytest.param(
            {"config": {"heartbeats": [{"name": "nightly", "token": "s3cr3t"}]}},
            "token",
            id="inline-heartbeat-token",
        ),
    ],
)
def test_values_schema_rejects(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match=where):
        chart.validate_schema(values)


def test_values_schema_accepts_secret_references() -> None:
    values = {
        "config": {
            "targets": [
                {
                    "name": "a",
                    "kind": "http",
                    "url": "https://a.example",
                    "http": {"bearer_token": "${A_TOKEN}"},
                }
            ]
        }
    }
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        chart.validate_schema(scenario("service-values.yaml"))


def test_notes_tell_how_to_reach_the_metrics_and_send_a_ping() -> None:
    text = notes(scenario("network-policy-values.yaml"))
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:9471/metrics" in text
    assert f"port-forward service/{FULLNAME} 9471:9471" in text
    assert f"curl -fsS -X POST http://{FULLNAME}.{NAMESPACE}.svc:9471/ping/NAME" in text
    assert "curl -fsS -X POST https://heartbeats.example.com/ping/NAME" in text
