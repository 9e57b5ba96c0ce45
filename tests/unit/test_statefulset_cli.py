"""The CLI's view of StatefulSets: `corral get sts` (NAME READY AGE, as kubectl) and the
`rollout status` lines kubectl's statefulset viewer prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from corral.cli import printers
from corral.cli.statefulset_view import NotRollingError, status_line
from protos.corral.v1 import workloads_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def sts(
    *,
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    generation: int = 3,
    observed: int = 3,
    partition: int | None = 0,
    current: str = "db-abc",
    update: str = "db-abc",
    strategy: str = "RollingUpdate",
) -> workloads_pb2.StatefulSet:
    s = workloads_pb2.StatefulSet()
    s.metadata.name, s.metadata.generation = "db", generation
    s.metadata.creation_timestamp.FromDatetime(NOW - timedelta(minutes=5))
    s.spec.replicas = replicas
    s.spec.update_strategy.type = strategy
    if partition is not None:
        s.spec.update_strategy.rolling_update.partition = partition
    s.spec.template.spec.containers.add(name="db", image="redis:7")
    st = s.status
    st.observed_generation, st.ready_replicas, st.updated_replicas = observed, ready, updated
    st.current_replicas, st.current_revision, st.update_revision = updated, current, update
    return s


def test_get_shows_ready_and_age() -> None:
    info = by_kind("StatefulSet")
    assert printers.table_headers(info, wide=False, all_namespaces=False) == ["NAME", "READY", "AGE"]
    assert printers.table_row(info, sts(ready=1), NOW, wide=False, all_namespaces=False) == ["db", "1/2", "5m"]
    assert printers.table_row(info, sts(), NOW, wide=True, all_namespaces=False)[-2:] == ["db", "redis:7"]


@pytest.mark.parametrize(
    ("the_set", "line", "done"),
    [
        pytest.param(sts(observed=2), "Waiting for statefulset spec update to be observed...", False, id="unobserved"),
        pytest.param(sts(ready=1), "Waiting for 1 pods to be ready...", False, id="not-ready"),
        pytest.param(
            sts(updated=1),
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
            False,
            id="rolling",
        ),
        pytest.param(sts(), "partitioned roll out complete: 2 new pods have been updated...", True, id="complete"),
        pytest.param(
            sts(partition=1, updated=1),
            "partitioned roll out complete: 1 new pods have been updated...",
            True,
            id="partition-reached",
        ),
        pytest.param(
            sts(partition=None, update="db-new"),
            "waiting for statefulset rolling update to complete 2 pods at revision db-new...",
            False,
            id="no-partition-revisions-differ",
        ),
        pytest.param(
            sts(partition=None),
            "statefulset rolling update complete 2 pods at revision db-abc...",
            True,
            id="no-partition-complete",
        ),
    ],
)
def test_rollout_status_lines(the_set: workloads_pb2.StatefulSet, line: str, done: bool) -> None:
    assert status_line(the_set) == (line, done)


def test_on_delete_has_no_rollout_status() -> None:
    with pytest.raises(NotRollingError, match="only available for RollingUpdate"):
        status_line(sts(strategy="OnDelete", partition=None))


def test_describe_shows_spec_and_status() -> None:
    from corral.cli.describe import describe

    text = describe(sts(), [], NOW)
    assert "Kind:               StatefulSet (apps/v1)" in text
    assert "updateRevision: db-abc" in text or "updateRevision" in text


def test_get_endpoints_of_a_headless_service_shows_pod_addresses() -> None:
    from corral.cli.endpoints import table
    from protos.corral.v1 import discovery_pb2

    route = discovery_pb2.ServiceRoute(name="db", namespace="default", headless=True)
    route.endpoints.add(address="172.18.0.5", pod="db-0", node="n1", hostname="db-0")
    route.endpoints.add(address="172.18.0.6", pod="db-1", node="n1", hostname="db-1")
    lines = table([route], wide=True, all_namespaces=False).splitlines()
    assert lines[1].split() == ["db", "172.18.0.5,172.18.0.6", "db-0,db-1", "n1"]
