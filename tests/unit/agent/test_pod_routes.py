"""The pod network between nodes: which routes and forwarding rules a node wants (pure), and the
commands the route programmer runs for them (a recorded runner, no I/O)."""

from __future__ import annotations

import json

import pytest

from agent.network.pod_routes import PeerRoute, Reach, changes, forward_rules, nat_rules, plan
from agent.network.pod_routing import ROUTE_PROTO, PodRouting
from agent.network.routes import ServiceTable
from protos.corral.v1 import node_service_pb2


def table(*nodes: tuple[str, str, str], cluster: str = "10.42.0.0/16") -> node_service_pb2.PodNetwork:
    t = node_service_pb2.PodNetwork(cluster_cidr=cluster)
    for name, subnet, address in nodes:
        t.nodes.add(node=name, pod_cidr=subnet, address=address)
    return t


THREE = table(
    ("a", "10.42.0.0/24", "192.168.1.10"),
    ("b", "10.42.1.0/24", "192.168.1.11"),
    ("c", "10.42.2.0/24", "192.168.1.12"),
)


def direct(_: str) -> Reach:
    return Reach.DIRECT


@pytest.mark.parametrize(
    ("reach", "routes", "skipped"),
    [
        pytest.param(
            {"192.168.1.11": Reach.DIRECT, "192.168.1.12": Reach.DIRECT},
            [("10.42.1.0/24", "192.168.1.11"), ("10.42.2.0/24", "192.168.1.12")],
            {},
            id="one-l2-network",
        ),
        pytest.param(
            {"192.168.1.11": Reach.LOCAL, "192.168.1.12": Reach.LOCAL},
            [],
            {"b": "local", "c": "local"},
            id="agents-on-one-host",
        ),
        pytest.param(
            {"192.168.1.11": Reach.DIRECT, "192.168.1.12": Reach.GATEWAY},
            [("10.42.1.0/24", "192.168.1.11")],
            {"c": "not_direct"},
            id="a-node-behind-a-router",
        ),
        pytest.param(
            {"192.168.1.11": Reach.NONE, "192.168.1.12": Reach.DIRECT},
            [("10.42.2.0/24", "192.168.1.12")],
            {"b": "not_direct"},
            id="unreachable",
        ),
    ],
)
def test_routes_go_to_directly_connected_peers_only(
    reach: dict[str, Reach], routes: list[tuple[str, str]], skipped: dict[str, str]
) -> None:
    got = plan(THREE, "a", lambda address: reach[address])
    assert [(r.subnet, r.via) for r in got.routes] == routes
    assert got.skipped == skipped
    assert got.own_subnet == "10.42.0.0/24" and got.cluster_cidr == "10.42.0.0/16"


def test_nodes_without_subnet_or_address_get_no_route() -> None:
    got = plan(
        table(("a", "10.42.0.0/24", "192.168.1.10"), ("b", "", "192.168.1.11"), ("c", "10.42.2.0/24", "")),
        "a",
        direct,
    )
    assert got.routes == () and got.skipped == {"c": "no_address"}


@pytest.mark.parametrize(
    ("nodes", "cluster", "routes", "skipped"),
    [
        pytest.param(
            [("b", "0.0.0.0/0", "192.168.1.11"), ("c", "10.42.2.0/24", "192.168.1.12")],
            "10.42.0.0/16",
            ["10.42.2.0/24"],
            {"b": "outside_cluster_cidr"},
            id="a-default-route-is-never-taken",
        ),
        pytest.param(
            [("b", "192.168.1.0/24", "192.168.1.11")],
            "10.42.0.0/16",
            [],
            {"b": "outside_cluster_cidr"},
            id="the-lan-itself",
        ),
        pytest.param(
            [("b", "10.42.1.0/24", "192.168.1.11"), ("c", "10.42.1.0/24", "192.168.1.12")],
            "10.42.0.0/16",
            [],
            {"b": "subnet_shared", "c": "subnet_shared"},
            id="two-nodes-one-subnet",
        ),
        pytest.param(
            [("b", "10.7.1.0/24", "192.168.1.11")],
            "",
            ["10.7.1.0/24"],
            {},
            id="no-cluster-cidr-from-an-older-control-plane",
        ),
    ],
)
def test_only_subnets_inside_the_cluster_cidr_held_by_one_node_are_routed(
    nodes: list[tuple[str, str, str]], cluster: str, routes: list[str], skipped: dict[str, str]
) -> None:
    got = plan(table(("a", "10.42.0.0/24", "192.168.1.10"), *nodes, cluster=cluster), "a", direct)
    assert [r.subnet for r in got.routes] == routes
    assert got.skipped == skipped


def test_a_node_without_its_own_subnet_still_routes_to_the_others_but_accepts_nothing_routed() -> None:
    got = plan(table(("b", "10.42.1.0/24", "192.168.1.11")), "a", direct)
    assert got.routes == (PeerRoute("10.42.1.0/24", "192.168.1.11", "b"),)
    rules = forward_rules(got, "corral-podnet-a")
    assert rules == [
        [
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
            "--ctreplsrc",
            "10.42.0.0/16",
            "-m",
            "comment",
            "--comment",
            "corral-podnet-a",
            "-j",
            "ACCEPT",
        ]
    ]


def test_forward_rules_let_in_the_cluster_and_the_nodes_only() -> None:
    rules = forward_rules(plan(THREE, "a", direct), "c1")
    sources = [r[r.index("-s") + 1] for r in rules if "-s" in r]
    assert sources == ["10.42.0.0/16", "192.168.1.11/32", "192.168.1.12/32"]
    assert all(r[r.index("-d") + 1] == "10.42.0.0/24" for r in rules if "-s" in r)


def test_traffic_from_the_pod_subnet_to_the_cluster_returns_before_dockers_masquerade() -> None:
    assert nat_rules(plan(THREE, "a", direct), "c1") == [
        ["-s", "10.42.0.0/24", "-d", "10.42.0.0/16", "-m", "comment", "--comment", "c1", "-j", "RETURN"]
    ]
    # No subnet of its own (range exhausted): Docker masquerades as before.
    assert nat_rules(plan(table(("b", "10.42.1.0/24", "192.168.1.11")), "a", direct), "c1") == []


@pytest.mark.parametrize(
    ("installed", "wanted", "add", "remove"),
    [
        pytest.param([], [PeerRoute("10.42.1.0/24", "h1")], ["10.42.1.0/24"], [], id="new"),
        pytest.param([PeerRoute("10.42.1.0/24", "h1")], [PeerRoute("10.42.1.0/24", "h1")], [], [], id="same"),
        pytest.param(
            [PeerRoute("10.42.1.0/24", "h1")], [PeerRoute("10.42.1.0/24", "h2")], ["10.42.1.0/24"], [], id="moved"
        ),
        pytest.param([PeerRoute("10.42.1.0/24", "h1")], [], [], ["10.42.1.0/24"], id="node-gone"),
    ],
)
def test_route_changes(installed: list[PeerRoute], wanted: list[PeerRoute], add: list[str], remove: list[str]) -> None:
    added, removed = changes(installed, wanted)
    assert [r.subnet for r in added] == add and removed == remove


class Recorder:
    """A command runner answering `ip route get` from a table, recording everything else."""

    def __init__(self, reach: dict[str, str], found: list[dict[str, str]] | None = None) -> None:
        self.reach = reach
        self.found = found or []
        self.commands: list[list[str]] = []

    async def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        if argv[:4] == ["ip", "-j", "route", "get"]:
            kind = self.reach[argv[4]]
            answer = {"dst": argv[4], **({"type": "local"} if kind == "local" else {})}
            if kind == "gateway":
                answer["gateway"] = "192.0.2.1"
            return 0, json.dumps([answer]), ""
        self.commands.append(argv)
        if argv[:5] == ["ip", "-j", "route", "show", "proto"]:
            return 0, json.dumps(self.found), ""
        return 0, "", ""


async def test_the_programmer_adds_replaces_and_removes_routes_of_its_own_protocol() -> None:
    runner = Recorder(
        {"192.168.1.11": "direct", "192.168.1.12": "gateway"},
        found=[{"dst": "10.42.9.0/24", "gateway": "192.168.1.99"}],  # a node gone while the agent was away
    )
    routing = PodRouting("a", forwarding=False, runner=runner)
    await routing.sync(THREE)
    assert runner.commands == [
        ["ip", "-j", "route", "show", "proto", ROUTE_PROTO],
        ["ip", "route", "replace", "10.42.1.0/24", "via", "192.168.1.11", "proto", ROUTE_PROTO],
        ["ip", "route", "del", "10.42.9.0/24", "proto", ROUTE_PROTO],
    ]
    runner.commands.clear()
    await routing.sync(table(("a", "10.42.0.0/24", "192.168.1.10")))
    assert runner.commands == [["ip", "route", "del", "10.42.1.0/24", "proto", ROUTE_PROTO]]


class Chains(Recorder):
    """A recorder that also keeps iptables chains (`-S`, `-I … 1`, `-D`) as lists of rule specs."""

    def __init__(self, reach: dict[str, str], chains: dict[tuple[str, str], list[list[str]]]) -> None:
        super().__init__(reach)
        self.chains = chains

    async def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        if argv[:2] != ["iptables", "-w"]:
            return await super().__call__(argv)
        self.commands.append(argv)
        table, op, chain, rest = argv[3], argv[4], argv[5], argv[6:]
        rules = self.chains.setdefault((table, chain), [])
        if op == "-S":
            return 0, "".join(f"-A {chain} {' '.join(r)}\n" for r in rules), ""
        if op == "-I":
            rules.insert(int(rest[0]) - 1, rest[1:])
        elif op == "-D":
            rules.remove(rest)
        return 0, "", ""


DOCKER_MASQUERADE = ["-s", "10.42.0.0/24", "!", "-o", "br-a", "-j", "MASQUERADE"]
RETURN_A = ["-s", "10.42.0.0/24", "-d", "10.42.0.0/16", "-m", "comment", "--comment", "corral-podnet-a", "-j", "RETURN"]


async def test_the_nat_rule_goes_above_dockers_masquerade_once_across_restarts_and_goes_with_the_subnet() -> None:
    chains: dict[tuple[str, str], list[list[str]]] = {("nat", "POSTROUTING"): [DOCKER_MASQUERADE]}
    reach = {"192.168.1.11": "direct", "192.168.1.12": "direct"}
    await PodRouting("a", forwarding=True, runner=Chains(reach, chains)).sync(THREE)
    assert chains[("nat", "POSTROUTING")] == [RETURN_A, DOCKER_MASQUERADE]
    assert len(chains[("filter", "DOCKER-USER")]) == 4

    # A restarted agent adopts its rules: one of each, still on top.
    restarted = Chains(reach, chains)
    routing = PodRouting("a", forwarding=True, runner=restarted)
    await routing.sync(THREE)
    assert chains[("nat", "POSTROUTING")] == [RETURN_A, DOCKER_MASQUERADE]
    assert len(chains[("filter", "DOCKER-USER")]) == 4

    # Unchanged and on top: only listed.
    restarted.commands.clear()
    await routing.sync(THREE)
    assert [c[4] for c in restarted.commands if c[0] == "iptables"] == ["-S", "-S"]

    # Docker put a new network's masquerade above it: moved back on top.
    chains[("nat", "POSTROUTING")].insert(0, ["-s", "172.18.0.0/16", "!", "-o", "br-x", "-j", "MASQUERADE"])
    await routing.sync(THREE)
    assert chains[("nat", "POSTROUTING")][0] == RETURN_A

    # The node's subnet gone from the table: its rules go with it.
    await routing.sync(table(("b", "10.42.1.0/24", "192.168.1.11")))
    assert RETURN_A not in chains[("nat", "POSTROUTING")]


async def test_the_service_table_hands_the_pod_network_to_its_listeners() -> None:
    heard: list[node_service_pb2.PodNetwork] = []

    class Listener:
        def update_pod_network(self, t: node_service_pb2.PodNetwork) -> None:
            heard.append(t)

    services = ServiceTable(pod_network_listeners=[Listener()])
    services.apply(node_service_pb2.ServiceRoutes(full=True))
    services.apply(node_service_pb2.ServiceRoutes(full=True, pod_network=THREE))
    assert heard == [THREE]
