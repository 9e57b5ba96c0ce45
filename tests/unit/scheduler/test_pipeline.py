"""The algorithm: filter, score, select, explain; batches; sampling."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.scheduler.framework import Profile, Status, WeightedScore
from controlplane.scheduler.pipeline import (
    Placement,
    Result,
    Unschedulable,
    Verdicts,
    feasible_nodes_to_find,
    schedule_batch,
    schedule_one,
    score_node,
)
from controlplane.scheduler.plugins import default_profile
from controlplane.scheduler.snapshot import (
    LEAST_ALLOCATED,
    MOST_ALLOCATED,
    NodeInfo,
    PodRequest,
    Resources,
    Snapshot,
    Taint,
    Toleration,
)

from .builders import GI, node, pod

PROFILE = default_profile()


def placed(result: Result) -> str:
    assert isinstance(result, Placement), getattr(result, "message", result)
    return result.node


# -- explaining a "no" -----------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "p", "message"),
    [
        pytest.param(
            [node("a", memory=GI), node("b", memory=GI), node("c", ready=False)],
            pod(memory=2 * GI),
            "0/3 nodes available: 2 insufficient memory, 1 node not ready.",
            id="brief-example",
        ),
        pytest.param(
            [
                node("a", cpu=500, memory=GI),
                node("b", memory=GI),
                node("c", ready=False, unschedulable=True),
                node("d", taints=(Taint("gpu", "yes", "NoSchedule"),)),
                node("e", runtimes=frozenset({"process"})),
            ],
            pod(cpu=1000, memory=2 * GI),
            "0/5 nodes available: 2 insufficient memory, 1 insufficient cpu, 1 node is cordoned, "
            "1 node not ready, 1 runtime docker not offered, 1 untolerated taint {gpu=yes:NoSchedule}.",
            id="mix-sorted-by-count-then-name",
        ),
        pytest.param(
            [node("a", labels={"zone": "a"}), node("b", labels={"zone": "b"}, host_ports=frozenset({(80, "TCP")}))],
            pod(node_selector={"zone": "c"}, host_ports=frozenset({(80, "TCP")})),
            "0/2 nodes available: 1 didn't match node selector, 1 host port 80/TCP in use.",
            id="first-failing-filter-ends-a-node",
        ),
        pytest.param([], pod(), "0/0 nodes available: no nodes in the cluster.", id="no-nodes"),
    ],
)
def test_unschedulable_message(nodes: list[NodeInfo], p: PodRequest, message: str) -> None:
    result = schedule_one(p, Snapshot(nodes), PROFILE)
    assert isinstance(result, Unschedulable)
    assert result.message == message
    assert result.pod == p.key
    assert result.examined == len(nodes)


def test_unschedulable_reasons_are_counted_per_node() -> None:
    nodes = [node("a", cpu=500, memory=GI), node("b", cpu=500, memory=GI), node("c", memory=GI)]
    result = schedule_one(pod(cpu=1000, memory=2 * GI), Snapshot(nodes), PROFILE)
    assert isinstance(result, Unschedulable)
    assert result.reasons == (("insufficient memory", 3), ("insufficient cpu", 2))


# -- choosing a node -------------------------------------------------------------


def test_only_feasible_nodes_are_chosen() -> None:
    nodes = [node("a", ready=False), node("b", memory=GI), node("c", memory=4 * GI)]
    result = schedule_one(pod(memory=2 * GI), Snapshot(nodes), PROFILE)
    assert isinstance(result, Placement)
    assert (result.node, result.feasible, result.examined) == ("c", 1, 3)


def test_least_allocated_prefers_the_emptiest_node() -> None:
    nodes = [
        node("a", nonzero_requested=Resources(3000, 6 * GI)),
        node("b", nonzero_requested=Resources(1000, 2 * GI)),
        node("c", nonzero_requested=Resources(2000, 4 * GI)),
    ]
    assert placed(schedule_one(pod(cpu=500, memory=GI), Snapshot(nodes), PROFILE)) == "b"


def test_bin_packing_chooses_the_fullest_feasible_node() -> None:
    nodes = [
        node("empty"),
        node("half", requested=Resources(2000, 4 * GI), nonzero_requested=Resources(2000, 4 * GI)),
        node("most", requested=Resources(3000, 6 * GI), nonzero_requested=Resources(3000, 6 * GI)),
        node("full", requested=Resources(3900, 7 * GI), nonzero_requested=Resources(3900, 7 * GI)),
    ]
    packer = pod(cpu=500, memory=GI, strategy=MOST_ALLOCATED)
    assert placed(schedule_one(packer, Snapshot(nodes), PROFILE)) == "most"
    spreader = pod(cpu=500, memory=GI, strategy=LEAST_ALLOCATED)
    assert placed(schedule_one(spreader, Snapshot(nodes), PROFILE)) == "empty"


def test_score_is_the_weighted_sum() -> None:
    result = schedule_one(pod(cpu=1000, memory=2 * GI, owner_uid="rs"), Snapshot([node("a")]), PROFILE)
    assert isinstance(result, Placement)
    assert result.score == 100 * 1 + 75 * 1  # Spread (no siblings) + LeastAllocated


def test_ties_go_to_the_first_node_by_name() -> None:
    nodes = [node(name) for name in ("c", "a", "b")]
    assert placed(schedule_one(pod(), Snapshot(nodes), PROFILE)) == "a"


def test_seeded_tie_breaking_is_deterministic_and_among_the_tied() -> None:
    nodes = Snapshot([node(f"n{i}") for i in range(5)] + [node("busy", nonzero_requested=Resources(3000, 6 * GI))])
    chosen = {placed(schedule_one(pod(), nodes, PROFILE, rng=random.Random(seed))) for seed in range(40)}
    assert chosen <= {f"n{i}" for i in range(5)}
    assert len(chosen) > 1
    again = [placed(schedule_one(pod(), nodes, PROFILE, rng=random.Random(7))) for _ in range(3)]
    assert len(set(again)) == 1


@dataclass
class OutOfRange:
    name: str = "Broken"

    def score(self, pod: PodRequest, node: NodeInfo) -> int:
        return 101


def test_out_of_range_score_is_a_bug() -> None:
    with pytest.raises(ValueError, match="Broken returned 101"):
        score_node(pod(), node(), [WeightedScore(OutOfRange())])


# -- batches ---------------------------------------------------------------------


def test_batch_accounts_for_earlier_placements() -> None:
    snapshot = Snapshot([node("a", memory=2 * GI), node("b", memory=2 * GI)])
    pods = [pod(f"default/p{i}", memory=GI) for i in range(5)]
    batch = schedule_batch(pods, snapshot, PROFILE)
    nodes = [r.node if isinstance(r, Placement) else None for r in batch.results]
    assert nodes[:2] == ["a", "b"]  # the second pod avoids the node the first took
    assert nodes[2] in {"a", "b"}  # the third goes where room remains
    assert nodes[3] == ({"a", "b"} - {nodes[2]}).pop()
    last = batch.results[4]
    assert isinstance(last, Unschedulable)
    assert last.message == "0/2 nodes available: 2 insufficient memory."
    assert batch.snapshot["a"].requested.memory_bytes == 2 * GI
    assert batch.snapshot["b"].requested.memory_bytes == 2 * GI
    assert snapshot["a"].requested.memory_bytes == 0  # the input snapshot is untouched


def test_three_pods_of_1gi_on_2gi_nodes_use_two_nodes() -> None:
    snapshot = Snapshot([node("a", memory=2 * GI), node("b", memory=2 * GI)])
    batch = schedule_batch([pod(f"default/p{i}", memory=GI) for i in range(3)], snapshot, PROFILE)
    assert all(isinstance(r, Placement) for r in batch.results)
    assert {placed(r) for r in batch.results} == {"a", "b"}
    assert sorted(n.requested.memory_bytes for n in batch.snapshot) == [GI, 2 * GI]


def test_replicas_of_one_owner_spread_one_per_node() -> None:
    snapshot = Snapshot([node("a"), node("b"), node("c")])
    replicas = [pod(f"default/web-{i}", cpu=100, memory=128 * 1024**2, owner_uid="rs-web") for i in range(3)]
    batch = schedule_batch(replicas, snapshot, PROFILE)
    assert sorted(placed(r) for r in batch.results) == ["a", "b", "c"]
    assert all(n.pods_per_owner == {"rs-web": 1} for n in batch.snapshot)


def test_best_effort_replicas_spread_too() -> None:
    snapshot = Snapshot([node("a"), node("b"), node("c")])
    batch = schedule_batch([pod(f"default/be-{i}") for i in range(3)], snapshot, PROFILE)
    assert sorted(placed(r) for r in batch.results) == ["a", "b", "c"]


def test_bin_packing_batch_fills_one_node_first() -> None:
    snapshot = Snapshot([node("a", memory=4 * GI), node("b", memory=4 * GI)])
    pods = [pod(f"default/p{i}", cpu=100, memory=GI, strategy=MOST_ALLOCATED) for i in range(5)]
    batch = schedule_batch(pods, snapshot, PROFILE)
    assert [placed(r) for r in batch.results] == ["a", "a", "a", "a", "b"]


def test_batch_is_deterministic_for_a_seed() -> None:
    snapshot = Snapshot([node(f"n{i}") for i in range(8)])
    pods = [pod(f"default/p{i}", cpu=100) for i in range(6)]
    first = schedule_batch(pods, snapshot, PROFILE, rng_seed=3)
    second = schedule_batch(pods, snapshot, PROFILE, rng_seed=3)
    assert first.results == second.results


# -- sampling --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "percentage", "expected"),
    [
        pytest.param(0, 0, 0, id="empty"),
        pytest.param(50, 0, 50, id="small-cluster-all"),
        pytest.param(100, 0, 100, id="hundred"),
        pytest.param(200, 0, 100, id="at-least-100"),
        pytest.param(1000, 0, 420, id="adaptive-42-percent"),
        pytest.param(5000, 0, 500, id="adaptive-10-percent"),
        pytest.param(10_000, 0, 500, id="floor-5-percent"),
        pytest.param(1000, 10, 100, id="fixed-percentage"),
        pytest.param(1000, 5, 100, id="fixed-but-at-least-100"),
        pytest.param(1000, 100, 1000, id="all"),
    ],
)
def test_feasible_nodes_to_find(total: int, percentage: int, expected: int) -> None:
    assert feasible_nodes_to_find(total, percentage) == expected


@dataclass
class Recorder:
    """A filter that records which nodes it saw, and rejects the listed ones."""

    name: str = "Recorder"
    rejected: frozenset[str] = frozenset()
    seen: list[str] = field(default_factory=list)

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        self.seen.append(node.name)
        return Status.reject("rejected") if node.name in self.rejected else Status()


BIG = Snapshot([node(f"node-{i:04d}") for i in range(1000)])
NAMES = [f"node-{i:04d}" for i in range(1000)]


def recording_profile(rejected: frozenset[str] = frozenset()) -> tuple[Profile, Recorder]:
    recorder = Recorder(rejected=rejected)
    return Profile("recording", (recorder,), PROFILE.scores, PROFILE.strategies), recorder


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param(0, NAMES[:420], id="from-zero"),
        pytest.param(500, NAMES[500:920], id="from-500"),
        pytest.param(900, NAMES[900:] + NAMES[:320], id="wraps-around"),
    ],
)
def test_sampling_examines_only_the_sample(start: int, expected: list[str]) -> None:
    profile, recorder = recording_profile()
    result = schedule_one(pod(), BIG, profile, start_index=start)
    assert isinstance(result, Placement)
    assert recorder.seen == expected
    assert (result.examined, result.feasible) == (420, 420)
    assert result.node in expected


def test_different_start_index_looks_at_different_nodes() -> None:
    first, second = recording_profile(), recording_profile()
    schedule_one(pod(), BIG, first[0], start_index=0)
    schedule_one(pod(), BIG, second[0], start_index=420)
    assert not set(first[1].seen) & set(second[1].seen)


def test_filtering_stops_once_enough_feasible_nodes_are_found() -> None:
    odd = frozenset(NAMES[1::2])
    profile, recorder = recording_profile(rejected=odd)
    result = schedule_one(pod(), BIG, profile)
    assert isinstance(result, Placement)
    assert (result.feasible, result.examined) == (420, 839)
    assert recorder.seen == NAMES[:839]


def test_explicit_sample_size() -> None:
    profile, recorder = recording_profile()
    result = schedule_one(pod(), BIG, profile, sample_size=3, start_index=10)
    assert recorder.seen == NAMES[10:13]
    assert placed(result) == "node-0010"
    with pytest.raises(ValueError, match="sample_size"):
        schedule_one(pod(), BIG, profile, sample_size=0)


def test_unschedulable_examines_every_node() -> None:
    profile, recorder = recording_profile(rejected=frozenset(NAMES))
    result = schedule_one(pod(), BIG, profile, start_index=123)
    assert isinstance(result, Unschedulable)
    assert result.message == "0/1000 nodes available: 1000 rejected."
    assert sorted(recorder.seen) == NAMES


def test_batch_rotates_the_start_index() -> None:
    profile, recorder = recording_profile()
    # Three owners: three shapes, so every pod's walk runs the filters anew.
    pods = [pod("default/a", owner_uid="a"), pod("default/b", owner_uid="b"), pod("default/c", owner_uid="c")]
    batch = schedule_batch(pods, BIG, profile, start_index=100)
    # 3 pods x 420 nodes from index 100: 100..999, then 0..359.
    assert recorder.seen == NAMES[100:] + NAMES[:360]
    assert batch.next_start_index == 360
    assert [placed(r) for r in batch.results] == ["node-0100", "node-0520", "node-0000"]
    assert all(r.examined == 420 for r in batch.results)


def test_batch_on_an_empty_cluster() -> None:
    batch = schedule_batch([pod()], Snapshot(), PROFILE, start_index=5)
    assert isinstance(batch.results[0], Unschedulable)
    assert batch.next_start_index == 0


def test_pods_of_one_shape_reuse_the_verdicts_of_unchanged_nodes() -> None:
    """Replicas of one Deployment: after the first, only the node each placement changed is
    evaluated again — and the placements are those of evaluating every node every time."""
    nodes = Snapshot([node(f"n{i}") for i in range(10)])
    replicas = [pod(f"default/web-{i}", cpu=1000, owner_uid="rs-web") for i in range(25)]
    profile, recorder = recording_profile()
    schedule_batch(replicas, nodes, profile)
    assert len(recorder.seen) == 10 + 24  # every node once, then the one node each placement changed
    batch = schedule_batch(replicas, nodes, PROFILE)
    fresh = [schedule_one(p, snapshot, PROFILE) for p, snapshot in _one_by_one(replicas, nodes)]
    assert [r.node if isinstance(r, Placement) else r.message for r in batch.results] == [
        r.node if isinstance(r, Placement) else r.message for r in fresh
    ]
    # 10 nodes x 4 cpus: 25 pods of 1 cpu fit, and they are spread before any node is doubled up.
    counts = Counter(placed(r) for r in batch.results)
    assert max(counts.values()) - min(counts.values()) <= 1


def web(key: str = "default/x", **fields: Any) -> PodRequest:
    """A replica of the web ReplicaSet, or (with ``fields``) a pod that differs from one in that."""
    return pod(key, **{"owner_uid": "rs-web", "cpu": 500, **fields})


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(web(cpu=1000), id="more-cpu"),
        pytest.param(web(memory=GI), id="memory"),
        pytest.param(web(owner_uid="rs-api"), id="other-owner"),
        pytest.param(web(node_selector={"zone": "a"}), id="node-selector"),
        pytest.param(web(host_ports=frozenset({(8080, "TCP")})), id="host-port"),
        pytest.param(web(tolerations=(Toleration("gpu", "Equal", "yes", "NoSchedule"),)), id="toleration"),
        pytest.param(web(runtime="process"), id="runtime"),
        pytest.param(web(strategy=MOST_ALLOCATED), id="strategy"),
    ],
)
def test_pods_of_one_shape_share_verdicts_and_other_shapes_do_not(other: PodRequest) -> None:
    verdicts = Verdicts(PROFILE)
    replicas = [web(f"default/web-{i}") for i in range(3)]
    shared = verdicts.of(replicas[0])
    assert verdicts.of(replicas[0]) is shared  # the same pod, asked again
    assert all(verdicts.of(r) is shared for r in replicas)  # its replicas: the name is not the shape
    assert verdicts.of(other) is not shared
    assert verdicts.of(other) is verdicts.of(other)
    assert verdicts.of(replicas[2]) is shared  # back to the first shape after another one


def test_shape_verdicts_evaluate_a_node_again_once_it_is_replaced() -> None:
    profile, recorder = recording_profile(rejected=frozenset({"b"}))
    first, second = web("default/web-0"), web("default/web-1")
    known = Verdicts(profile).of(first)
    a, b = node("a"), node("b")
    assert known.status(first, a).ok and not known.status(first, b).ok
    assert known.status(second, a).ok and not known.status(second, b).ok
    assert recorder.seen == ["a", "b"]  # asked again about the same nodes: not evaluated again
    a_score = known.score(first, a)
    replaced = a.with_pod(first)
    assert known.status(second, replaced).ok
    assert recorder.seen == ["a", "b", "a"]
    assert known.status(second, replaced).ok and known.status(second, b).reasons == ("rejected",)
    assert recorder.seen == ["a", "b", "a"]
    # The score follows the node too: the replaced one is fuller, so it scores lower (least allocated).
    assert known.score(second, a) == a_score
    assert known.score(second, replaced) < a_score


def _one_by_one(pods: list[PodRequest], snapshot: Snapshot) -> list[tuple[PodRequest, Snapshot]]:
    """Each pod with the snapshot it would see, every earlier pod placed, evaluated from scratch."""
    out = []
    for p in pods:
        out.append((p, snapshot))
        result = schedule_one(p, snapshot, PROFILE)
        if isinstance(result, Placement):
            snapshot = snapshot.with_binding(p, result.node)
    return out
