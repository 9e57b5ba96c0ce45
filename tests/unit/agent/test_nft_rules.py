"""The kernel data path's rules, rendered from Service routes: agent/network/proxy/nft_rules.py."""

from __future__ import annotations

import itertools
import re

import pytest

from agent.network.proxy.endpoints import Backend
from agent.network.proxy.nft_rules import (
    MAX_SLOTS,
    BackendChain,
    affinity_sets,
    backend_chains,
    plan,
    render,
    slots,
    table_name,
)
from protos.corral.v1 import discovery_pb2

ADDRESSES = ["127.0.0.5", "10.1.0.1"]


def backend(port: int, group: str = "", address: str = "10.0.0.1") -> discovery_pb2.RouteBackend:
    return discovery_pb2.RouteBackend(address=address, port=port, pod=f"pod-{port}", group=group)


def route(
    name: str,
    port: int,
    backends: list[discovery_pb2.RouteBackend],
    *,
    weights: dict[str, int] | None = None,
    algorithm: str = "",
    port_name: str = "http",
) -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace="default",
        name=name,
        load_balancing=algorithm,
        weights=weights or {},
        ports=[discovery_pb2.RoutePort(name=port_name, protocol="TCP", port=port, backends=backends)],
    )


def routes(*items: discovery_pb2.ServiceRoute) -> dict[str, discovery_pb2.ServiceRoute]:
    return {f"{r.namespace}/{r.name}": r for r in items}


CANARY_10 = route(
    "web",
    80,
    [backend(9001, "canary"), backend(9002, "stable"), backend(9003, "stable"), backend(9004, "stable")],
    weights={"canary": 10, "stable": 90},
)


def chain_body(text: str, name: str) -> str:
    return text.split(f"chain {name} {{", 1)[1].split("\n\t}", 1)[0]


def map_elements(text: str, port: int) -> list[tuple[int, str]]:
    """`port`'s verdict map, each slot's backend chain followed: (slot, "address . port") in slot order."""
    elements = []
    for i, chain in re.findall(r"(\d+) : jump (\w+)", chain_body(text, f"port_{port}")):
        address, target = re.findall(r"dnat ip to ([\d.]+):(\d+)$", chain_body(text, chain).strip())[0]
        elements.append((int(i), f"{address} . {target}"))
    return elements


# -- slots ---------------------------------------------------------------------------


def test_round_robin_is_every_backend_once_in_order() -> None:
    text = render(plan(routes(route("web", 80, [backend(9001), backend(9002), backend(9003)]))), "t", ADDRESSES)
    assert "numgen inc mod 3 vmap" in text
    assert map_elements(text, 80) == [(0, "10.0.0.1 . 9001"), (1, "10.0.0.1 . 9002"), (2, "10.0.0.1 . 9003")]


def test_one_backend_is_a_plain_jump_to_its_chain() -> None:
    text = render(plan(routes(route("web", 80, [backend(9001)]))), "t", ADDRESSES)
    assert chain_body(text, "port_80").strip().splitlines()[-1].strip() == 'jump port_80_b0 comment "default/web:http"'
    assert chain_body(text, "port_80_b0").strip() == "meta l4proto tcp counter dnat ip to 10.0.0.1:9001"
    assert "numgen" not in text


def test_weights_10_90_give_the_canary_exactly_every_tenth_slot() -> None:
    ports = plan(routes(CANARY_10)).ports
    assert len(ports) == 1
    groups = [b.group for b in ports[0].slots]
    assert len(groups) == 10
    # Over 100 connections (numgen wraps): exactly 10 canary, one in every run of ten, evenly spaced.
    hundred = groups * 10
    canary = [i for i, g in enumerate(hundred) if g == "canary"]
    assert len(canary) == 10
    assert all(b - a == 10 for a, b in itertools.pairwise(canary))
    # The stable backends take turns.
    stable = [b.port for b in ports[0].slots if b.group == "stable"]
    assert stable == [9002, 9003, 9004] * 3


def test_weighted_period_covers_every_backend_rotation() -> None:
    # 1:1 over 2 and 3 backends: each group's round robin needs its own number of cycles.
    backends = [Backend("10.0.0.1", port, group="a" if port < 3 else "b") for port in range(1, 6)]
    chosen = slots(backends, {"a": 1, "b": 1})
    assert len(chosen) == 12  # 2 groups x lcm(2, 3)
    assert sorted(b.port for b in chosen) == [1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [b.group for b in chosen] == ["a", "b"] * 6


def test_long_periods_are_cut_to_whole_weight_cycles() -> None:
    backends = [Backend("10.0.0.1", 1000 + i, group="a") for i in range(97)]
    backends += [Backend("10.0.0.1", 2000 + i, group="b") for i in range(89)]
    chosen = slots(backends, {"a": 1, "b": 2})  # exact period: 3 x 97 x 89 slots
    assert len(chosen) <= MAX_SLOTS
    assert len(chosen) % 3 == 0
    assert sum(1 for b in chosen if b.group == "a") * 3 == len(chosen)


def test_a_zero_weight_group_gets_no_slot() -> None:
    blue_green = route("web", 80, [backend(9001, "blue"), backend(9002, "green")], weights={"blue": 100, "green": 0})
    text = render(plan(routes(blue_green)), "t", ADDRESSES)
    assert "dnat ip to 10.0.0.1:9001" in text
    assert "9002" not in text


@pytest.mark.parametrize(
    "dead",
    [
        pytest.param(route("web", 80, []), id="no-backends"),
        pytest.param(route("web", 80, [backend(9001, "blue")], weights={"blue": 0}), id="only-zero-weight"),
    ],
)
def test_a_port_without_backends_is_rejected(dead: discovery_pb2.ServiceRoute) -> None:
    text = render(plan(routes(dead, route("api", 81, [backend(9001)]))), "t", ADDRESSES)
    reject = "ip daddr . meta l4proto . th dport { 127.0.0.5 . tcp . 80, 10.1.0.1 . tcp . 80 } reject with tcp reset"
    assert text.count(reject) == 3  # filter input (other hosts), forward (pods) and output (this host)
    assert "port_80" not in text
    assert "vmap { 127.0.0.5 . tcp . 81 : jump port_81, 10.1.0.1 . tcp . 81 : jump port_81 }" in text


# -- the counting chains ---------------------------------------------------------------


def test_each_distinct_backend_of_a_port_has_one_counting_chain() -> None:
    api = route("api", 81, [backend(9001), backend(9005, address="10.0.0.2")])
    result = plan(routes(CANARY_10, api))
    text = render(result, "t", ADDRESSES)
    chains = backend_chains(result)
    # Per port, in the order of each backend's first slot (the canary's first slot is the fifth).
    assert {name: (c.service, c.pod, c.port) for name, c in chains.items()} == {
        "port_80_b0": ("default/web", "pod-9002", 80),
        "port_80_b1": ("default/web", "pod-9003", 80),
        "port_80_b2": ("default/web", "pod-9004", 80),
        "port_80_b3": ("default/web", "pod-9001", 80),
        "port_81_b0": ("default/api", "pod-9001", 81),
        "port_81_b1": ("default/api", "pod-9005", 81),
    }
    assert chains["port_81_b1"] == BackendChain("default/api", "pod-9005", 81, result.ports[1].slots[1])
    for name, chain in chains.items():
        body = f"meta l4proto tcp counter dnat ip to {chain.backend.address}:{chain.backend.port}"
        assert chain_body(text, name).strip() == body
    assert set(re.findall(r"chain (port_\d+_b\d+) \{", text)) == set(chains)
    # Every slot jumps to a chain; the 10% canary still has exactly every tenth one.
    slot_chains = re.findall(r"\d+ : jump (port_80_b\d+)", chain_body(text, "port_80"))
    assert slot_chains == [f"port_80_b{i}" for i in (0, 1, 2, 0, 3, 1, 2, 0, 1, 2)]


def test_ports_list_every_backend_pod_even_without_a_slot() -> None:
    blue_green = route("web", 80, [backend(9001, "blue"), backend(9002, "green")], weights={"blue": 100, "green": 0})
    result = plan(routes(blue_green))
    assert result.ports[0].pods == ("pod-9001", "pod-9002")
    assert list(backend_chains(result)) == ["port_80_b0"]


def test_a_rejected_port_has_no_chains() -> None:
    result = plan(routes(route("web", 80, [])))
    assert backend_chains(result) == {}
    assert "port_80" not in render(result, "t", ADDRESSES)


# -- the split with the userspace proxy -----------------------------------------------


def test_least_connections_ports_stay_with_the_userspace_proxy() -> None:
    least = route("lc", 90, [backend(9001), backend(9002)], algorithm="LeastConnections")
    result = plan(routes(least, CANARY_10))
    assert [p.port for p in result.ports] == [80]
    assert list(result.leftover) == ["default/lc"]
    assert result.leftover["default/lc"] is least
    text = render(result, "t", ADDRESSES)
    assert "90" not in re.sub(r":90\d\d", "", text)


def test_a_service_is_cut_to_the_ports_the_kernel_does_not_take() -> None:
    mixed = discovery_pb2.ServiceRoute(
        namespace="default",
        name="mixed",
        ports=[
            discovery_pb2.RoutePort(name="v4", protocol="TCP", port=80, backends=[backend(9001)]),
            discovery_pb2.RoutePort(name="v6", protocol="TCP", port=81, backends=[backend(9001, address="fd00::1")]),
            discovery_pb2.RoutePort(name="dns", protocol="UDP", port=53, backends=[backend(53)]),
        ],
    )
    result = plan(routes(mixed))
    assert [(p.port, p.frontend.protocol) for p in result.ports] == [(53, "udp"), (80, "tcp")]
    assert [p.name for p in result.leftover["default/mixed"].ports] == ["v6"]
    assert [p.name for p in mixed.ports] == ["v4", "v6", "dns"]  # the input is left alone


def test_a_port_claimed_twice_goes_to_the_first_service_by_name() -> None:
    result = plan(routes(route("b", 80, [backend(9002)]), route("a", 80, [backend(9001)])))
    assert [(p.service, p.port) for p in result.ports] == [("default/a", 80)]
    assert result.leftover == {}
    assert result.conflicts == ((80, "default/b", "default/a"),)


# -- the table -----------------------------------------------------------------------


def test_the_table_hooks_nat_prerouting_and_output_for_every_proxy_address() -> None:
    text = render(plan(routes(CANARY_10, route("api", 81, [backend(9001)]))), "corral_n1", ADDRESSES)
    assert text.startswith("table ip corral_n1 {\n")
    assert "type nat hook prerouting priority dstnat; policy accept;\n\t\tjump services" in text
    assert "type nat hook output priority -100; policy accept;\n\t\tjump services" in text
    assert (
        "ip daddr . meta l4proto . th dport vmap { 127.0.0.5 . tcp . 80 : jump port_80, 10.1.0.1 . tcp . 80 : "
        "jump port_80, 127.0.0.5 . tcp . 81 : jump port_81, 10.1.0.1 . tcp . 81 : jump port_81 }"
    ) in text
    assert "numgen inc mod 10 vmap" in text
    assert 'ct status dnat oifname != "lo" ct mark & 0x00004000 == 0x00004000 masquerade' in text
    assert "ct mark set ct mark | 0x00004000" in chain_body(text, "port_80")


def test_no_routes_leave_empty_chains() -> None:
    text = render(plan({}), "t", ADDRESSES)
    assert "dnat" not in text
    assert "reject" not in re.sub(r"reject_(input|forward|output)", "", text)
    assert "chain services {\n\t}" in text


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param("node-1", "corral_node_1", id="dash"),
        pytest.param("edge.Box-2", "corral_edge_box_2", id="dot-and-case"),
        pytest.param("a" * 100, "corral_" + "a" * 64, id="long"),
    ],
)
def test_table_name(node: str, expected: str) -> None:
    assert table_name(node) == expected


# -- clusterIPs, nodePorts, LoadBalancers, UDP -----------------------------------------------


def service_route(
    name: str,
    *,
    cluster_ip: str = "10.43.0.10",
    kind: str = "ClusterIP",
    port: int = 80,
    node_port: int = 0,
    protocol: str = "TCP",
    policy: str = "",
    ranges: tuple[str, ...] = (),
    backends: list[discovery_pb2.RouteBackend] | None = None,
    namespace: str = "default",
    internal: str = "",
    affinity: int = 0,
) -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace=namespace,
        name=name,
        cluster_ip=cluster_ip,
        type=kind,
        external_traffic_policy=policy,
        internal_traffic_policy=internal,
        session_affinity_seconds=affinity,
        load_balancer_source_ranges=list(ranges),
        ports=[
            discovery_pb2.RoutePort(
                protocol=protocol,
                port=port,
                node_port=node_port,
                backends=backends if backends is not None else [backend(9001)],
            )
        ],
    )


def dispatched(text: str) -> list[str]:
    """The services chain's verdict map elements."""
    found = re.search(r"vmap \{ (.*) \}", chain_body(text, "services"))
    return found.group(1).split(", ") if found else []


def test_a_cluster_ip_service_is_served_on_its_address_only() -> None:
    text = render(plan(routes(service_route("web"))), "t", ADDRESSES)
    assert dispatched(text) == ["10.43.0.10 . tcp . 80 : jump ip_10_43_0_10_80"]
    assert chain_body(text, "ip_10_43_0_10_80_b0").strip() == "meta l4proto tcp counter dnat ip to 10.0.0.1:9001"


def test_two_services_on_port_80_each_have_their_address() -> None:
    one = service_route("web", cluster_ip="10.43.0.10")
    two = service_route("web", cluster_ip="10.43.0.11", namespace="other", backends=[backend(9002)])
    result = plan(routes(one, two))
    assert result.conflicts == ()
    text = render(result, "t", ADDRESSES)
    assert dispatched(text) == [
        "10.43.0.10 . tcp . 80 : jump ip_10_43_0_10_80",
        "10.43.0.11 . tcp . 80 : jump ip_10_43_0_11_80",
    ]
    assert "dnat ip to 10.0.0.1:9002" in chain_body(text, "ip_10_43_0_11_80_b0")


def test_a_node_port_service_is_also_on_every_node_address() -> None:
    text = render(plan(routes(service_route("web", kind="NodePort", node_port=30080))), "t", ADDRESSES)
    assert dispatched(text) == [
        "127.0.0.5 . tcp . 30080 : jump port_30080",
        "10.1.0.1 . tcp . 30080 : jump port_30080",
        "10.43.0.10 . tcp . 80 : jump ip_10_43_0_10_80",
    ]


def test_a_load_balancer_takes_its_port_and_node_port_on_node_addresses() -> None:
    lb = service_route("web", kind="LoadBalancer", node_port=30080, ranges=("192.168.1.0/24", "10.0.0.0/8"))
    text = render(plan(routes(lb)), "t", ["127.0.0.5"])
    assert dispatched(text) == [
        "127.0.0.5 . tcp . 80 : jump port_80",
        "127.0.0.5 . tcp . 30080 : jump port_30080",
        "10.43.0.10 . tcp . 80 : jump ip_10_43_0_10_80",
    ]
    assert "ip saddr != { 192.168.1.0/24, 10.0.0.0/8 } drop" in chain_body(text, "port_80")
    assert "ip saddr" not in chain_body(text, "ip_10_43_0_10_80")  # source ranges guard node addresses


def test_reserved_ports_are_left_out_on_node_addresses_only() -> None:
    lb = service_route("web", kind="LoadBalancer", port=7443, node_port=30080)
    text = render(plan(routes(lb), reserved={7443: "--server"}), "t", ["127.0.0.5"])
    assert dispatched(text) == [
        "127.0.0.5 . tcp . 30080 : jump port_30080",
        "10.43.0.10 . tcp . 7443 : jump ip_10_43_0_10_7443",
    ]


def test_external_traffic_policy_local_keeps_local_backends_and_the_client_address() -> None:
    here = discovery_pb2.RouteBackend(address="127.0.0.5", port=9001, pod="here", node="n1")
    there = discovery_pb2.RouteBackend(address="127.0.0.6", port=9002, pod="there", node="n2")
    local = service_route("web", kind="NodePort", node_port=30080, policy="Local", backends=[here, there])
    text = render(plan(routes(local), node="n1"), "t", ["127.0.0.5"])
    node_chain = chain_body(text, "port_30080")
    assert "ct mark" not in node_chain and "numgen" not in node_chain
    assert chain_body(text, "port_30080_b0").strip().endswith("dnat ip to 127.0.0.5:9001")
    # The clusterIP still balances over every endpoint, masqueraded.
    assert "numgen inc mod 2" in chain_body(text, "ip_10_43_0_10_80")
    # A node without a local endpoint rejects Local traffic instead of sending it away.
    text = render(plan(routes(local), node="n3"), "t", ["127.0.0.5"])
    assert "ip daddr . meta l4proto . th dport { 127.0.0.5 . tcp . 30080 } reject with tcp reset" in text


def test_udp_services_are_dnated_and_rejected_with_icmp() -> None:
    dns = service_route("dns", port=53, protocol="UDP", backends=[backend(5353)])
    dead = service_route("dead", cluster_ip="10.43.0.11", port=53, protocol="UDP", backends=[])
    text = render(plan(routes(dns, dead)), "t", ADDRESSES)
    assert dispatched(text) == ["10.43.0.10 . udp . 53 : jump ip_10_43_0_10_53_udp"]
    assert chain_body(text, "ip_10_43_0_10_53_udp_b0").strip() == "meta l4proto udp counter dnat ip to 10.0.0.1:5353"
    assert "ip daddr . meta l4proto . th dport { 10.43.0.11 . udp . 53 } reject\n" in text


def test_a_route_without_cluster_ip_is_served_on_node_addresses_as_before() -> None:
    """From a control plane before virtual IPs, or a Service not yet given one."""
    text = render(plan(routes(service_route("web", cluster_ip=""))), "t", ["127.0.0.5"])
    assert dispatched(text) == ["127.0.0.5 . tcp . 80 : jump port_80"]


def test_the_rendered_table_is_accepted_by_nft() -> None:
    """Syntax check with `nft -c` where nft is installed (no change to the ruleset)."""
    import shutil
    import subprocess

    if shutil.which("nft") is None:
        pytest.skip("nft not installed")
    here = discovery_pb2.RouteBackend(address="127.0.0.5", port=9001, pod="here", node="n1")
    text = render(
        plan(
            routes(
                service_route("a", kind="LoadBalancer", node_port=30080, ranges=("10.0.0.0/8",)),
                service_route(
                    "b", cluster_ip="10.43.0.11", kind="NodePort", node_port=30081, policy="Local", backends=[here]
                ),
                service_route("c", cluster_ip="10.43.0.12", port=53, protocol="UDP", backends=[]),
                service_route("d", cluster_ip="10.43.0.13", internal="Local", affinity=60, backends=[here]),
                service_route("e", cluster_ip="10.43.0.14", affinity=10800, backends=[backend(9001), backend(9002)]),
                CANARY_10,
            ),
            node="n1",
        ),
        "corral_syntax_check",
        ADDRESSES,
    )
    checked = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True, check=False)
    if "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert checked.returncode == 0, checked.stderr


# -- internalTrafficPolicy: Local and ClientIP affinity ------------------------------------

HERE = discovery_pb2.RouteBackend(address="127.0.0.5", port=9001, pod="here", node="n1")
THERE = discovery_pb2.RouteBackend(address="127.0.0.6", port=9002, pod="there", node="n2")


def test_internal_traffic_policy_local_keeps_the_cluster_ip_on_this_node() -> None:
    local = service_route("web", kind="NodePort", node_port=30080, internal="Local", backends=[HERE, THERE])
    text = render(plan(routes(local), node="n1"), "t", ["127.0.0.5"])
    cluster_chain = chain_body(text, "ip_10_43_0_10_80")
    assert "numgen" not in cluster_chain and "jump ip_10_43_0_10_80_b0" in cluster_chain
    assert chain_body(text, "ip_10_43_0_10_80_b0").strip().endswith("dnat ip to 127.0.0.5:9001")
    assert "ct mark set" in cluster_chain  # still masqueraded: only externalTrafficPolicy keeps the client
    # The node port follows externalTrafficPolicy (Cluster): every endpoint.
    assert "numgen inc mod 2" in chain_body(text, "port_30080")
    # A node without a local endpoint refuses traffic to the clusterIP (the node port still serves).
    text = render(plan(routes(local), node="n3"), "t", ["127.0.0.5"])
    assert "ip daddr . meta l4proto . th dport { 10.43.0.10 . tcp . 80 } reject with tcp reset" in text
    assert "numgen inc mod 2" in chain_body(text, "port_30080")


def test_client_ip_affinity_gets_a_set_per_backend_checked_before_the_slots() -> None:
    sticky = service_route("web", affinity=10800, backends=[backend(9001), backend(9002)])
    result = plan(routes(sticky))
    text = render(result, "t", ADDRESSES)
    front = chain_body(text, "ip_10_43_0_10_80").strip().splitlines()
    assert [line.strip() for line in front[:3]] == [
        "ct mark set ct mark | 0x00004000",
        "ip saddr @ip_10_43_0_10_80_b0_aff jump ip_10_43_0_10_80_b0",
        "ip saddr @ip_10_43_0_10_80_b1_aff jump ip_10_43_0_10_80_b1",
    ]
    assert front[3].strip().startswith("numgen inc mod 2 vmap")
    assert [line.strip() for line in chain_body(text, "ip_10_43_0_10_80_b1").strip().splitlines()] == [
        "update @ip_10_43_0_10_80_b1_aff { ip saddr }",
        "meta l4proto tcp counter dnat ip to 10.0.0.1:9002",
    ]
    affinity = "type ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout 10800s\n\t}"
    assert f"set ip_10_43_0_10_80_b0_aff {{\n\t\t{affinity}" in text
    assert affinity_sets(result) == {
        "ip_10_43_0_10_80_b0_aff": ("ip_10_43_0_10_80", "10.0.0.1:9001"),
        "ip_10_43_0_10_80_b1_aff": ("ip_10_43_0_10_80", "10.0.0.1:9002"),
    }
    assert "_aff" not in render(plan(routes(service_route("web"))), "t", ADDRESSES)


def test_pinned_clients_are_written_back_for_the_backends_that_remain() -> None:
    sticky = service_route("web", affinity=600, backends=[backend(9002)])
    pinned = {
        ("ip_10_43_0_10_80", "10.0.0.1:9001"): {"192.168.1.9": 300},  # a backend gone: forgotten
        ("ip_10_43_0_10_80", "10.0.0.1:9002"): {"192.168.1.7": 120, "192.168.1.8": 0, "192.168.1.6": 9000},
    }
    text = render(plan(routes(sticky)), "t", ADDRESSES, pinned=pinned)
    elements = re.findall(r"elements = \{ (.*) \}", text)
    assert elements == ["192.168.1.6 timeout 600s expires 600s, 192.168.1.7 timeout 600s expires 120s"]
