"""`corral get` of claims, volumes and classes: kubectl's columns plus the node, kind/name for mixed kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from corral.cli import printers, resources
from protos import storage as st
from protos.corral.v1 import meta_pb2, storage_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _claim() -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name="data", namespace="default"))
    c.metadata.creation_timestamp.FromDatetime(NOW)
    c.metadata.annotations[st.SELECTED_NODE] = "n1"
    c.spec.storage_class_name = "local-path"
    c.spec.volume_name = "pvc-1"
    c.status.phase = st.BOUND
    c.status.access_modes.append(st.RWO)
    c.status.capacity["storage"] = "1Gi"
    return c


def _volume() -> storage_pb2.PersistentVolume:
    v = storage_pb2.PersistentVolume(metadata=meta_pb2.ObjectMeta(name="pvc-1"))
    v.metadata.creation_timestamp.FromDatetime(NOW)
    v.spec.capacity["storage"] = "1Gi"
    v.spec.access_modes.extend([st.RWO, st.RWOP])
    v.spec.persistent_volume_reclaim_policy = st.DELETE
    v.spec.storage_class_name = "local-path"
    v.spec.claim_ref.namespace, v.spec.claim_ref.name = "default", "data"
    term = v.spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=["n1"])
    v.status.phase = st.BOUND
    return v


@pytest.mark.parametrize(
    ("obj", "headers", "row"),
    [
        pytest.param(
            _claim(),
            ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE", "NODE"],
            ["data", "Bound", "pvc-1", "1Gi", "RWO", "local-path", "0s", "n1"],
            id="pvc",
        ),
        pytest.param(
            _volume(),
            [
                "NAME",
                "CAPACITY",
                "ACCESS MODES",
                "RECLAIM POLICY",
                "STATUS",
                "CLAIM",
                "STORAGECLASS",
                "REASON",
                "AGE",
                "NODE",
            ],
            ["pvc-1", "1Gi", "RWO,RWOP", "Delete", "Bound", "default/data", "local-path", "", "0s", "n1"],
            id="pv",
        ),
        pytest.param(
            st.default_class(),
            ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"],
            ["local-path (default)", "corral.io/local-path", "Delete", "WaitForFirstConsumer", "false", "<unknown>"],
            id="sc",
        ),
    ],
)
def test_storage_tables(obj: object, headers: list[str], row: list[str]) -> None:
    info = by_kind(type(obj).__name__)
    assert printers.table_headers(info, wide=False, all_namespaces=False) == headers
    assert printers.table_row(info, obj, NOW, wide=False, all_namespaces=False) == row  # type: ignore[arg-type]


def test_mixed_kinds_are_named_kind_slash_name(capsys: pytest.CaptureFixture[str]) -> None:
    resources._print([_claim(), _volume()], None, NOW, all_namespaces=False, single=False)
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line and not line.startswith("NAME")]
    assert names == ["persistentvolumeclaim/data", "persistentvolume/pvc-1"]
