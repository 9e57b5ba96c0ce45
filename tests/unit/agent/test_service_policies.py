"""sessionAffinity: ClientIP and internalTrafficPolicy: Local in the pure cores both data paths share:
the balancer's affinity table (agent/network/proxy/endpoints.py) on a driven clock, and the
frontends a route gets (agent/network/proxy/frontends.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from agent.network.proxy import endpoints
from agent.network.proxy.endpoints import Backend, Balancer
from agent.network.proxy.frontends import NODE, frontends
from protos.corral.v1 import discovery_pb2

A = Backend("10.0.0.1", 8080, pod="a", node="n1", group="blue")
B = Backend("10.0.0.2", 8080, pod="b", node="n2", group="blue")
C = Backend("10.0.0.3", 8080, pod="c", node="n2", group="green")
T0 = 1000.0
HOUR = 3600.0


def pods(balancer: Balancer, clients: list[str], now: float = T0) -> list[str]:
    chosen = []
    for client in clients:
        backend = balancer.pick(now, client=client)
        chosen.append(backend.pod if backend else "-")
    return chosen


# -- ClientIP affinity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("affinity", "expected"),
    [
        pytest.param(HOUR, {"a": 20}, id="client-ip-sticks"),
        pytest.param(0.0, {"a": 7, "b": 7, "c": 6}, id="none-spreads"),
    ],
)
def test_one_client_gets_one_backend_for_20_connections_with_affinity(
    affinity: float, expected: dict[str, int]
) -> None:
    balancer = Balancer([A, B, C], affinity_seconds=affinity)
    chosen = [balancer.pick(T0 + i, client="192.168.1.7") for i in range(20)]
    assert Counter(b.pod for b in chosen if b) == expected


def test_new_clients_are_still_balanced() -> None:
    balancer = Balancer([A, B, C], affinity_seconds=HOUR)
    assert pods(balancer, ["x", "y", "z", "x", "y", "z", "w"]) == ["a", "b", "c", "a", "b", "c", "a"]


def test_affinity_expires_after_the_timeout_without_a_connection() -> None:
    balancer = Balancer([A, B, C], affinity_seconds=60)
    assert pods(balancer, ["x", "y"], T0) == ["a", "b"]
    # Each connection renews it: 59 s after the previous one it still holds.
    assert pods(balancer, ["x"], T0 + 59) == ["a"]
    assert pods(balancer, ["x"], T0 + 118) == ["a"]
    assert balancer.affine("x", T0 + 177) == "10.0.0.1:8080"
    # 60 s idle: gone; the round robin decides (after b comes c).
    assert balancer.affine("x", T0 + 178) is None
    assert pods(balancer, ["x"], T0 + 178) == ["c"]
    assert pods(balancer, ["x"], T0 + 200) == ["c"]


def test_a_backend_that_goes_away_takes_its_clients_with_it() -> None:
    balancer = Balancer([A, B, C], affinity_seconds=HOUR)
    assert pods(balancer, ["x", "y"]) == ["a", "b"]
    assert balancer.update([B, C], affinity_seconds=HOUR) == {"10.0.0.1:8080"}
    assert balancer.affine("x", T0) is None
    moved = pods(balancer, ["x"], T0 + 1)[0]
    assert moved in ("b", "c")
    assert pods(balancer, ["x", "x", "y"], T0 + 2) == [moved, moved, "b"]
    # A backend that comes back does not get its old clients back.
    balancer.update([A, B, C], affinity_seconds=HOUR)
    assert pods(balancer, ["x"], T0 + 3) == [moved]


def test_a_group_weighted_0_gives_up_its_clients() -> None:
    """Blue-green: once traffic is switched to green, pinned blue clients move too."""
    balancer = Balancer([A, B, C], weights={"blue": 100, "green": 0}, affinity_seconds=HOUR)
    assert pods(balancer, ["x", "y"]) == ["a", "b"]
    balancer.update([A, B, C], weights={"blue": 0, "green": 100}, affinity_seconds=HOUR)
    assert pods(balancer, ["x", "y"], T0 + 1) == ["c", "c"]


def test_a_canary_weight_decides_for_new_clients_only() -> None:
    balancer = Balancer([A, C], weights={"blue": 90, "green": 10}, affinity_seconds=HOUR)
    first = pods(balancer, [f"10.9.0.{i}" for i in range(100)])
    assert Counter(first) == {"a": 90, "c": 10}
    again = pods(balancer, [f"10.9.0.{i}" for i in range(100)], T0 + 1)
    assert again == first


def test_an_ejected_or_failed_backend_loses_its_clients_while_others_are_healthy() -> None:
    balancer = Balancer([A, B], affinity_seconds=HOUR)
    assert pods(balancer, ["x"]) == ["a"]
    # The connect to a failed: the proxy tries another for this client, which pins it there.
    retry = balancer.pick(T0, exclude={A.key}, client="x")
    assert retry == B
    assert balancer.affine("x", T0) == B.key
    balancer.failed(B.key, T0 + 1)
    assert pods(balancer, ["x"], T0 + 2) == ["a"]


def test_changing_or_turning_off_affinity_forgets_every_client() -> None:
    balancer = Balancer([A, B, C], affinity_seconds=HOUR)
    assert pods(balancer, ["x"]) == ["a"]
    balancer.update([A, B, C], affinity_seconds=60)
    assert balancer.affine("x", T0) is None
    assert pods(balancer, ["x", "x"]) == ["b", "b"]
    balancer.update([A, B, C])
    assert pods(balancer, ["x", "x"]) == ["c", "a"]
    assert balancer.affine("x", T0) is None


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoints, "MAX_AFFINITY", 2)
    balancer = Balancer([A, B, C], affinity_seconds=HOUR)
    assert pods(balancer, ["x", "y", "z"]) == ["a", "b", "c"]
    assert [balancer.affine(c, T0) for c in ("x", "y", "z")] == [None, B.key, C.key]


# -- the frontends a route gets ------------------------------------------------------------


def route(**fields: object) -> discovery_pb2.ServiceRoute:
    base: dict[str, object] = {"namespace": "default", "name": "web", "cluster_ip": "10.43.0.10", "type": "NodePort"}
    base.update(fields)
    return discovery_pb2.ServiceRoute(**base)  # type: ignore[arg-type]


PORT = discovery_pb2.RoutePort(protocol="TCP", port=80, node_port=30080)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, [("10.43.0.10", False, 0), (NODE, False, 0)], id="cluster"),
        pytest.param(
            {"internal_traffic_policy": "Local"}, [("10.43.0.10", True, 0), (NODE, False, 0)], id="internal-local"
        ),
        pytest.param(
            {"external_traffic_policy": "Local"}, [("10.43.0.10", False, 0), (NODE, True, 0)], id="external-local"
        ),
        pytest.param(
            {"session_affinity_seconds": 10800},
            [("10.43.0.10", False, 10800), (NODE, False, 10800)],
            id="client-ip-affinity",
        ),
    ],
)
def test_internal_policy_guards_the_cluster_ip_and_affinity_every_frontend(
    fields: dict[str, object], expected: list[tuple[str, bool, int]]
) -> None:
    fronts = frontends(route(**fields), PORT)
    assert [(f.address, f.local_only, f.affinity_seconds) for f in fronts] == expected
    # Only a Local node frontend keeps the client's address (no masquerade); the clusterIP never does.
    assert [f.keeps_client for f in fronts] == [False, fields.get("external_traffic_policy") == "Local"]
