"""The Helm chart setting that kind: icmp needs, as docs/probes.md and docs/helm.md give it: the
namespaced sysctl in the pod security context, or NET_RAW, merged with the chart's defaults."""

from __future__ import annotations

from tests.test_helm_chart import container, render, workload

PING_GROUP = {"name": "net.ipv4.ping_group_range", "value": "10001 10001"}


def test_the_ping_group_sysctl_reaches_the_pod_with_the_default_security_context() -> None:
    values = {"podSecurityContext": {"sysctls": [PING_GROUP]}}  # merged with the defaults
    pod = workload(render(values))["spec"]["template"]["spec"]
    assert pod["securityContext"]["sysctls"] == [PING_GROUP]
    assert pod["securityContext"]["runAsGroup"] == 10001
    # The container keeps dropping every capability: the sysctl needs none.
    assert container(render(values))["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_net_raw_can_be_granted_instead() -> None:
    values = {
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]},
        }
    }
    capabilities = container(render(values))["securityContext"]["capabilities"]
    assert capabilities == {"drop": ["ALL"], "add": ["NET_RAW"]}
