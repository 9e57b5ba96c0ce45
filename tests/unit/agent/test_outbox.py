"""The status outbox (agent/pods/outbox.py): newest status per pod, take and requeue, resend after a
reconnect, forget and drop."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.pods.outbox import StatusOutbox
from protos.corral.v1 import node_service_pb2, pod_pb2


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.namespace, p.metadata.name, p.metadata.uid = "default", name, f"uid-{name}"
    return p


def put(outbox: StatusOutbox, name: str, phase: str, *, terminated: bool = False) -> None:
    outbox.put(pod(name), pod_pb2.PodStatus(phase=phase), terminated=terminated)


def phases(reports: list[node_service_pb2.PodStatusReport]) -> dict[str, str]:
    return {r.name: r.status.phase for r in reports}


def test_a_report_carries_the_pod_and_its_status() -> None:
    outbox = StatusOutbox()
    put(outbox, "a", "Succeeded", terminated=True)
    [report] = outbox.take()
    assert (report.namespace, report.name, report.uid) == ("default", "a", "uid-a")
    assert report.status.phase == "Succeeded" and report.terminated


def test_the_newest_status_of_each_pod_is_queued() -> None:
    outbox = StatusOutbox()
    put(outbox, "a", "Pending")
    put(outbox, "b", "Pending")
    put(outbox, "a", "Running")
    reports = outbox.take()
    assert phases(reports) == {"a": "Running", "b": "Pending"} and len(reports) == 2


def test_take_empties_the_queue_and_clears_ready() -> None:
    outbox = StatusOutbox()
    assert not outbox.ready.is_set()
    put(outbox, "a", "Running")
    assert outbox.ready.is_set()
    assert phases(outbox.take()) == {"a": "Running"}
    assert not outbox.ready.is_set()
    assert outbox.take() == []


@pytest.mark.parametrize(
    ("queued_meanwhile", "expected"),
    [
        pytest.param(None, {"a": "Pending"}, id="nothing-newer"),
        pytest.param("Running", {"a": "Running"}, id="a-newer-status-wins"),
    ],
)
def test_requeue_never_overwrites_a_newer_report(queued_meanwhile: str | None, expected: dict[str, str]) -> None:
    outbox = StatusOutbox()
    put(outbox, "a", "Pending")
    unsent = outbox.take()
    if queued_meanwhile is not None:
        put(outbox, "a", queued_meanwhile)
    outbox.requeue(unsent)
    assert outbox.ready.is_set()
    assert phases(outbox.take()) == expected


def test_requeue_of_nothing_leaves_ready_clear() -> None:
    outbox = StatusOutbox()
    outbox.requeue([])
    assert not outbox.ready.is_set()


def test_resend_all_queues_the_newest_status_of_every_pod_again() -> None:
    outbox = StatusOutbox()
    put(outbox, "a", "Pending")
    put(outbox, "b", "Running")
    outbox.take()
    put(outbox, "a", "Running")
    outbox.take()
    assert not outbox.ready.is_set()
    outbox.resend_all()
    assert outbox.ready.is_set()
    assert phases(outbox.take()) == {"a": "Running", "b": "Running"}


def test_resend_all_with_nothing_reported_leaves_ready_clear() -> None:
    outbox = StatusOutbox()
    outbox.resend_all()
    assert not outbox.ready.is_set()
    assert outbox.take() == []


def forget_a(outbox: StatusOutbox) -> None:
    outbox.forget(["uid-a"])


def drop_a(outbox: StatusOutbox) -> None:
    outbox.drop("uid-a")


@pytest.mark.parametrize(
    ("stop", "still_queued"),
    [
        # The control plane does not know the pod: what is queued still goes (it may be an
        # answer to an older batch), but it is not resent after a reconnect.
        pytest.param(forget_a, {"a": "Running", "b": "Running"}, id="forget"),
        # The pod left this node: nothing of it is sent.
        pytest.param(drop_a, {"b": "Running"}, id="drop"),
    ],
)
def test_a_forgotten_or_dropped_pod_is_not_resent(
    stop: Callable[[StatusOutbox], None], still_queued: dict[str, str]
) -> None:
    outbox = StatusOutbox()
    put(outbox, "a", "Running")
    put(outbox, "b", "Running")
    stop(outbox)
    assert phases(outbox.take()) == still_queued
    outbox.resend_all()
    assert phases(outbox.take()) == {"b": "Running"}


def test_the_volume_root_is_announced_after_each_reconnect_and_deletion_outcomes_go_once() -> None:
    box = StatusOutbox()
    box.resend_all()
    assert not box.ready.is_set()  # no root: nothing to say
    box.volume_root = "/data/storage"
    box.resend_all()
    assert box.ready.is_set()
    assert box.take() == [] and box.take_volume_results() == (True, [])
    assert box.take_volume_results() == (False, [])
    result = node_service_pb2.VolumeDeletionResult(name="pvc-1", uid="u")
    box.put_volume_result(result)
    assert box.ready.is_set()
    assert box.take_volume_results() == (True, [result])
