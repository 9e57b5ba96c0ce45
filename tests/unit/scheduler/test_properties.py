"""Safety properties of a batch, checked by Hypothesis against an independent tally.

- No node gets pods beyond its allocatable cpu or memory.
- No node gets two pods with the same host port (port and protocol).
- A pod is only declared unschedulable when, given the pods placed before it,
  it truly fits on no node (the pass is not lazy).
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.scheduler.pipeline import Placement, Unschedulable, schedule_batch
from controlplane.scheduler.plugins import default_profile
from controlplane.scheduler.snapshot import (
    LEAST_ALLOCATED,
    MOST_ALLOCATED,
    HostPort,
    NodeInfo,
    PodRequest,
    Resources,
    Snapshot,
)

from .builders import MI, node, pod

PORTS: list[HostPort] = [(80, "TCP"), (80, "UDP"), (443, "TCP"), (8080, "TCP")]
PROFILE = default_profile()


@st.composite
def nodes(draw: st.DrawFn) -> list[NodeInfo]:
    count = draw(st.integers(1, 6))
    result = []
    for i in range(count):
        cpu = draw(st.integers(0, 8)) * 500
        memory = draw(st.integers(0, 16)) * 256 * MI
        used = Resources(draw(st.integers(0, cpu)), draw(st.integers(0, memory)))
        ports = frozenset(draw(st.lists(st.sampled_from(PORTS), max_size=2)))
        result.append(node(f"n{i}", cpu=cpu, memory=memory, requested=used, nonzero_requested=used, host_ports=ports))
    return result


@st.composite
def pods(draw: st.DrawFn) -> list[PodRequest]:
    count = draw(st.integers(0, 25))
    return [
        pod(
            f"default/p{i}",
            cpu=draw(st.integers(0, 6)) * 250,
            memory=draw(st.integers(0, 8)) * 256 * MI,
            host_ports=frozenset(draw(st.lists(st.sampled_from(PORTS), max_size=2))),
            owner_uid=draw(st.sampled_from(["", "rs-a", "rs-b"])),
            strategy=draw(st.sampled_from([LEAST_ALLOCATED, MOST_ALLOCATED])),
        )
        for i in range(count)
    ]


def fits(p: PodRequest, n: NodeInfo, used: Resources, ports: set[HostPort]) -> bool:
    cpu_ok = p.requests.cpu_millis == 0 or p.requests.cpu_millis <= n.allocatable.cpu_millis - used.cpu_millis
    mem_ok = p.requests.memory_bytes == 0 or p.requests.memory_bytes <= n.allocatable.memory_bytes - used.memory_bytes
    return cpu_ok and mem_ok and not (p.host_ports & ports)


@settings(max_examples=300, deadline=None)
@given(
    cluster=nodes(),
    pending=pods(),
    start=st.integers(0, 10),
    seed=st.one_of(st.none(), st.integers(0, 2**16)),
)
def test_batch_never_overcommits_and_never_gives_up_early(
    cluster: list[NodeInfo], pending: list[PodRequest], start: int, seed: int | None
) -> None:
    batch = schedule_batch(pending, Snapshot(cluster), PROFILE, start_index=start, rng_seed=seed)
    assert [r.pod for r in batch.results] == [p.key for p in pending]
    by_name = {n.name: n for n in cluster}
    used = {n.name: n.requested for n in cluster}
    ports: dict[str, set[HostPort]] = defaultdict(set, {n.name: set(n.host_ports) for n in cluster})
    for p, result in zip(pending, batch.results, strict=True):
        if isinstance(result, Unschedulable):
            assert not any(fits(p, n, used[n.name], ports[n.name]) for n in cluster), result.message
            continue
        assert isinstance(result, Placement)
        n = by_name[result.node]
        assert fits(p, n, used[n.name], ports[n.name])
        assert not p.host_ports & ports[n.name], "host port used twice"
        ports[n.name] |= p.host_ports
        used[n.name] += p.requests
        assert used[n.name].cpu_millis <= n.allocatable.cpu_millis
        assert used[n.name].memory_bytes <= n.allocatable.memory_bytes
    for n in batch.snapshot:
        assert n.requested == used[n.name]
        assert n.host_ports == ports[n.name]
