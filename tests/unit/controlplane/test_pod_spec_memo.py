"""Pod spec validation is remembered per spec: a ReplicaSet's pods share their template's."""

from __future__ import annotations

import pytest

from controlplane.apiserver import validation
from controlplane.apiserver.defaults import apply_defaults
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind


def pod(name: str, image: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.restart_policy = "Always"
    p.spec.containers.add(name="main", image=image)
    apply_defaults(by_kind("Pod"), p)
    return p


def test_pods_of_one_spec_are_validated_once_and_each_gets_its_causes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_SPEC_CAUSES", {})
    calls: list[str] = []
    real = validation.validate_pod_spec

    def counting(p: validation.Problems, path: str, spec: pod_pb2.PodSpec) -> None:
        calls.append(spec.containers[0].image)
        real(p, path, spec)

    monkeypatch.setattr(validation, "validate_pod_spec", counting)
    info = by_kind("Pod")
    assert [validation.validate(info, pod(f"web-{i}", "httpd:1")) for i in range(3)] == [[], [], []]
    bad = [validation.validate(info, pod(f"bad-{i}", "")) for i in range(2)]
    assert bad[0] == bad[1] and any(c.field == "spec.containers[0].image" for c in bad[0])
    assert calls == ["httpd:1", ""]


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_SPEC_CAUSES", {})
    monkeypatch.setattr(validation, "SPEC_MEMO", 2)
    for image in ("a:1", "b:1", "c:1"):
        validation.validate(by_kind("Pod"), pod("p", image))
    assert len(validation._SPEC_CAUSES) == 2
