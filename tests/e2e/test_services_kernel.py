"""The node proxy's kernel data path (`corral agent --proxy-mode nftables`) on
three real agents with Docker: each agent programs its own nftables table,
the kernel NATs new connections to ready endpoints, a rolling update under
load fails no request, and a canary's traffic weight holds — all without
the userspace relay in the data path. The tables go when the agents stop."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.network.proxy.nft_rules import table_name
from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, running_agents, wait_until
from tests.e2e.test_services import (
    CANARY,
    PROXIES,
    Load,
    answers,
    apply,
    backend,
    canary_paused,
    cluster_ip,
    endpoints,
    get,
    pods,
    service_port,
    versions_settled,
)

pytestmark = pytest.mark.docker


def tables() -> set[str]:
    listed = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True, check=True)
    return {item["table"]["name"] for item in json.loads(listed.stdout)["nftables"] if "table" in item}


@pytest.fixture
def kernel_agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    kernel = ("--dns-port", "0", "--proxy-mode", "nftables")
    args = [(f"k{i}-{os.getpid()}", ("--proxy-address", a, *kernel)) for i, a in enumerate(PROXIES)]
    with running_agents(server, tmp_path, args) as procs:
        yield procs


def test_rolling_update_through_the_kernel_fails_no_request(
    server: ServerProcess, kernel_agents: list[AgentProcess]
) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("kroll", "v1", port, replicas=6))
    wait_until(lambda: len(endpoints(cli, "kroll")) == 6, 120, "6 ready endpoints", kernel_agents[0].log)
    # The endpoints are pod addresses: this host reaches them through the kernel from the clusterIP
    # (or a real node address), not from 127.x (the kernel routes no loopback source off lo).
    ip = cluster_ip(cli, "kroll")
    wait_until(lambda: answers(ip, port), 30, "the kernel path answers", kernel_agents[0].log)
    mine = {table_name(a.name) for a in kernel_agents}
    assert mine <= tables()
    # The kernel serves the port: no userspace listener behind it.
    listening = subprocess.run(["ss", "-Hltn", f"src {PROXIES[0]}:{port}"], capture_output=True, text=True, check=True)
    assert listening.stdout.strip() == ""
    load = Load(ip, port).start()
    wait_until(lambda: len(load.bodies) > 50, 30, "load running")
    apply(cli, backend("kroll", "v2", port, replicas=6))
    wait_until(lambda: versions_settled(cli, "kroll", "v2", 6), 180, "rollout done", kernel_agents[0].log)
    wait_until(lambda: len(endpoints(cli, "kroll")) == 6, 60, "6 ready endpoints after the rollout")
    seen = len(load.bodies)
    wait_until(lambda: len(load.bodies) > seen + 100, 30, "requests after the rollout")
    load.stop()
    versions = load.versions()
    print(f"rolling update through nftables under load: {len(load.bodies)} requests ok, {len(load.failures)} failed")
    assert load.failures == []
    assert versions[0] == "v1" and versions[-1] == "v2"
    for agent in kernel_agents:
        agent.stop()
    assert not mine & tables()  # each agent deleted its table on the way out


def test_canary_weight_through_the_kernel(server: ServerProcess, kernel_agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("kcan", "v1", port, strategy=CANARY))
    wait_until(lambda: len(endpoints(cli, "kcan")) == 3, 90, "3 ready endpoints", kernel_agents[0].log)
    apply(cli, backend("kcan", "v2", port, strategy=CANARY))
    wait_until(lambda: canary_paused(cli, "kcan"), 120, "the canary at 10% and paused", kernel_agents[0].log)
    wait_until(lambda: len(endpoints(cli, "kcan")) == 4, 30, "4 ready endpoints")
    versions = [p["spec"]["containers"][0]["env"][0]["value"] for p in pods(cli, "kcan")]
    assert sorted(versions) == ["v1", "v1", "v1", "v2"]
    # Each agent applies the routes on its own; wait until the table serving this host has the canary.
    ip = cluster_ip(cli, "kcan")
    wait_until(lambda: any(get(ip, port).startswith("v2 ") for _ in range(20)), 30, "the canary served")
    bodies = [get(ip, port) for _ in range(2000)]
    share = sum(1 for b in bodies if b.startswith("v2 ")) / len(bodies)
    print(f"canary at 10% through nftables with 1 of 4 replicas: {share:.1%} of 2,000 requests")
    assert 0.07 <= share <= 0.13
