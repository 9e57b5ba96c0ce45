"""The metrics relay's pure core: the peer set from the replicas prefix, and the batching outbox."""

from __future__ import annotations

import pytest

from controlplane.replicas.relay import dialable_address
from controlplane.replicas.sharing import Outbox, Peers, replicas_prefix, split
from controlplane.store.base import EventType, WatchEvent
from protos.corral.v1 import metrics_pb2

PREFIX = replicas_prefix("/corral/")
ME = "h1:1:127.0.0.1:7443"


def event(kind: EventType, holder: str, address: str = "") -> WatchEvent:
    return WatchEvent(kind, PREFIX + holder, address.encode(), 7, 0 if kind is EventType.DELETE else 5, None)


def report(node: str, cpu: int = 1) -> metrics_pb2.MetricsReport:
    sent = metrics_pb2.MetricsReport(node_name=node)
    sent.node.cpu_millis = cpu
    return sent


def test_prefix_is_under_the_key_prefix() -> None:
    assert PREFIX == "/corral/replicas/"


def test_peers_are_the_other_replicas_as_announced_and_withdrawn() -> None:
    peers = Peers(PREFIX, ME)
    peers.reset([(PREFIX + ME, b"127.0.0.1:7443"), (PREFIX + "h2:2:a", b"10.0.0.2:7443")])
    assert peers.targets() == ["10.0.0.2:7443"]
    peers.apply(event(EventType.PUT, "h3:3:b", "10.0.0.3:7443"))
    peers.apply(event(EventType.PUT, "h4:4:c", ""))  # no address: not dialable
    assert peers.targets() == ["10.0.0.2:7443", "10.0.0.3:7443"]
    peers.apply(event(EventType.DELETE, "h2:2:a"))
    assert peers.targets() == ["10.0.0.3:7443"]
    peers.reset([])
    assert peers.targets() == []


def test_a_lone_replica_keeps_nothing() -> None:
    outbox = Outbox()
    outbox.add(report("n1"), sharing=False)
    assert outbox.reports == {}
    assert outbox.take(100.0) == []


def test_the_outbox_keeps_the_newest_report_per_node_and_flushes_at_most_every_period() -> None:
    outbox = Outbox(flush_every=2.0)
    outbox.add(report("n1", cpu=1), sharing=True)
    outbox.add(report("n2", cpu=5), sharing=True)
    outbox.add(report("n1", cpu=2), sharing=True)  # replaces the earlier one
    assert outbox.due(100.0) == 0.0
    assert [(r.node_name, r.node.cpu_millis) for r in outbox.take(100.0)] == [("n1", 2), ("n2", 5)]
    outbox.add(report("n1", cpu=3), sharing=True)
    assert outbox.due(101.0) == pytest.approx(1.0)
    assert outbox.take(101.0) == []  # too soon: kept for the next batch
    assert [r.node.cpu_millis for r in outbox.take(102.0)] == [3]
    assert outbox.take(110.0) == []  # nothing waiting


def test_the_outbox_is_bounded_by_nodes() -> None:
    outbox = Outbox(max_nodes=2)
    for node in ("n1", "n2", "n3"):
        outbox.add(report(node), sharing=True)
    outbox.add(report("n1", cpu=9), sharing=True)  # a known node still updates
    assert sorted(outbox.reports) == ["n1", "n2"]
    assert outbox.reports["n1"].node.cpu_millis == 9
    assert outbox.dropped == 1


def test_a_large_batch_is_cut_into_calls_under_the_message_limit() -> None:
    batch = [report(f"n{i}", cpu=i + 1) for i in range(10)]
    one = batch[0].ByteSize() + 8
    parts = split(batch, max_bytes=one * 4)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert [r for p in parts for r in p] == batch
    assert split([], max_bytes=10) == []
    assert [len(p) for p in split(batch[:2], max_bytes=1)] == [1, 1]  # a report larger than the limit goes alone


@pytest.mark.parametrize(
    ("host", "san", "address"),
    [
        pytest.param("10.0.0.5", [], "10.0.0.5:7443", id="listen host"),
        pytest.param("0.0.0.0", ["cp1.example"], "cp1.example:7443", id="wildcard: first tls-san"),
        pytest.param("::1", [], "[::1]:7443", id="ipv6 bracketed"),
        pytest.param("[::]", ["fd00::5"], "[fd00::5]:7443", id="ipv6 wildcard: tls-san bracketed"),
    ],
)
def test_dialable_address(host: str, san: list[str], address: str) -> None:
    assert dialable_address(host, 7443, san) == address
