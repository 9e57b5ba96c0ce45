"""A pod's host name and domain, as the kubelet gives them, reach the runtime spec and Docker's
create arguments (not in the host's network, where Docker refuses a host name)."""

from __future__ import annotations

import pytest

from agent.pods.worker import build_spec
from agent.runtime.base import ContainerSpec
from agent.runtime.docker import container_config
from protos import pods as podutil
from protos.corral.v1 import pod_pb2


def pod(name: str, *, hostname: str = "", subdomain: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "prod", "uid-1234567890"
    p.spec.hostname, p.spec.subdomain = hostname, subdomain
    p.spec.containers.add(name="main", image="busybox:1")
    return p


@pytest.mark.parametrize(
    ("the_pod", "hostname", "domain"),
    [
        pytest.param(pod("web-7d9f-abcde"), "web-7d9f-abcde", "", id="the-pods-name"),
        pytest.param(pod("db-0", hostname="db-0", subdomain="db"), "db-0", "db.prod.svc.cluster.local", id="stateful"),
        pytest.param(pod("x", hostname="custom"), "custom", "", id="spec-hostname"),
        pytest.param(pod("a" * 62 + "-b" + "c" * 10), "a" * 62, "", id="long-name-cut-without-dash"),
    ],
)
def test_hostname_and_domain(the_pod: pod_pb2.Pod, hostname: str, domain: str) -> None:
    assert (podutil.hostname(the_pod), podutil.host_domain(the_pod)) == (hostname, domain)
    spec = build_spec(the_pod, the_pod.spec.containers[0], 0, node="n1", epoch=1, extra_env={})
    assert (spec.hostname, spec.domainname) == (hostname, domain)


def test_docker_create_arguments_carry_the_hostname() -> None:
    config = container_config(ContainerSpec(name="c", image="busybox:1", hostname="db-0", domainname="db.prod.svc"))
    assert (config["Hostname"], config["Domainname"]) == ("db-0", "db.prod.svc")
    plain = container_config(ContainerSpec(name="c", image="busybox:1", hostname="web"))
    assert plain["Hostname"] == "web" and "Domainname" not in plain
    host = container_config(ContainerSpec(name="c", image="busybox:1", hostname="web", host_network=True))
    assert "Hostname" not in host
