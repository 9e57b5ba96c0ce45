"""ConfigMaps: the kind and its validation; envFrom and configMapKeyRef validated, and resolved
for a pod's node (precedence, prefix, invalid names, optional, missing objects)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent.pods import lifecycle
from agent.pods.worker import _same_for_worker, build_spec
from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi
from controlplane.informer import CacheEvent, Informer
from controlplane.nodeapi import configenv
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos import codec, kinds, wellknown
from protos.corral.v1 import configmap_pb2, pod_pb2, secret_pb2


def config_map(binary: dict[str, bytes] | None = None, **data: str) -> configmap_pb2.ConfigMap:
    return named_config_map("app", data, binary)


def named_config_map(
    name: str, data: dict[str, str], binary: dict[str, bytes] | None = None
) -> configmap_pb2.ConfigMap:
    cm = configmap_pb2.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = name, "default"
    cm.data.update(data)
    cm.binary_data.update(binary or {})
    return cm


def secret(name: str = "db", **data: str) -> secret_pb2.Secret:
    s = secret_pb2.Secret()
    s.metadata.name, s.metadata.namespace = name, "default"
    for k, v in data.items():
        s.data[k] = v.encode()
    return s


def api() -> ObjectApi:
    return ObjectApi(ObjectStore(MemoryStore()))


def causes(e: pytest.ExceptionInfo[errors.InvalidError]) -> list[str]:
    return [str(c) for c in e.value.causes]


# -- the kind ------------------------------------------------------------------------


def test_configmap_is_a_kind_with_its_short_name_and_manifest_form() -> None:
    info = kinds.resolve("cm")
    assert (info.kind, info.api_version, info.plural, info.namespaced) == ("ConfigMap", "v1", "configmaps", True)
    assert kinds.resolve("configmaps") is info
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app"},
        "data": {"mode": "prod"},
        "binaryData": {"logo": "AAE="},
        "immutable": True,
    }
    cm, problems = codec.from_dict(doc, configmap_pb2.ConfigMap)
    assert problems == []
    assert cm.data["mode"] == "prod" and cm.binary_data["logo"] == b"\x00\x01" and cm.immutable
    assert codec.to_dict(cm) == doc


async def test_a_configmap_is_stored_as_written_and_applied_again_unchanged() -> None:
    a = api()
    created = await a.create(config_map(mode="prod"))
    assert isinstance(created, configmap_pb2.ConfigMap) and dict(created.data) == {"mode": "prod"}
    _, outcome = await a.apply(config_map(mode="prod"))
    assert outcome is ApplyOutcome.UNCHANGED
    stored, outcome = await a.apply(config_map(mode="dev"))
    assert outcome is ApplyOutcome.CONFIGURED and isinstance(stored, configmap_pb2.ConfigMap)
    assert stored.data["mode"] == "dev"


@pytest.mark.parametrize(
    ("cm", "expected"),
    [
        pytest.param(
            named_config_map("app", {"bad/key": "x"}), 'data.bad/key: invalid key "bad/key"', id="slash-in-key"
        ),
        pytest.param(config_map(binary={"a b": b"x"}), 'binaryData.a b: invalid key "a b"', id="space-binary-key"),
        pytest.param(named_config_map("app", {"..": "x"}), "data...: invalid key", id="dot-dot"),
        pytest.param(
            named_config_map("app", {"..data": "x"}),
            "data...data: invalid key \"..data\": must not start with '..'",
            id="dot-dot-prefix",
        ),
        pytest.param(named_config_map("app", {"k" * 254: "x"}), f"data.{'k' * 254}: invalid key", id="key-over-253"),
        pytest.param(
            config_map(binary={"mode": b"x"}, mode="y"), 'binaryData.mode: duplicate of key "mode" in data', id="both"
        ),
        pytest.param(
            config_map(binary={"b": b"x" * (512 * 1024)}, a="y" * (512 * 1024 + 1)),
            "data: too long: data and binaryData must have at most 1048576 bytes, got 1048577",
            id="over-1MiB-together",
        ),
    ],
)
async def test_invalid_configmaps_are_refused_with_field_paths(cm: configmap_pb2.ConfigMap, expected: str) -> None:
    with pytest.raises(errors.InvalidError) as caught:
        await api().create(cm)
    assert any(c.startswith(expected) for c in causes(caught)), causes(caught)


async def test_a_key_of_253_characters_and_exactly_1MiB_are_accepted() -> None:
    await api().create(named_config_map("app", {"k" * 253: "x" * (1024 * 1024 - 1)}))


async def test_an_immutable_configmap_keeps_its_data_and_stays_immutable() -> None:
    a = api()
    cm = config_map(binary={"b": b"1"}, mode="prod")
    cm.immutable = True
    await a.apply(cm)
    changed = config_map(binary={"b": b"2"}, mode="dev")
    changed.immutable = True
    with pytest.raises(errors.InvalidError) as caught:
        await a.apply(changed)
    assert causes(caught) == [
        "data: field is immutable when `immutable` is set",
        "binaryData: field is immutable when `immutable` is set",
    ]
    unset = config_map(binary={"b": b"1"}, mode="prod")
    with pytest.raises(errors.InvalidError, match="immutable: field is immutable"):
        await a.apply(unset)
    labelled = config_map(binary={"b": b"1"}, mode="prod")
    labelled.immutable = True
    labelled.metadata.labels["tier"] = "web"
    _, outcome = await a.apply(labelled)
    assert outcome is ApplyOutcome.CONFIGURED, "metadata may still change"


async def test_a_mutable_configmap_may_become_immutable() -> None:
    a = api()
    await a.apply(config_map(mode="prod"))
    frozen = config_map(mode="dev")
    frozen.immutable = True
    stored, _ = await a.apply(frozen)
    assert isinstance(stored, configmap_pb2.ConfigMap) and stored.immutable and stored.data["mode"] == "dev"


# -- pod specs: validation ----------------------------------------------------------------


def env_pod(*envs: pod_pb2.EnvVar, env_from: tuple[pod_pb2.EnvFromSource, ...] = ()) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    c = p.spec.containers.add(name="app", image="busybox:latest")
    c.env.extend(envs)
    c.env_from.extend(env_from)
    return p


def from_cm(name: str, cm: str = "app", key: str = "mode", *, optional: bool | None = None) -> pod_pb2.EnvVar:
    env = pod_pb2.EnvVar(name=name)
    env.value_from.config_map_key_ref.name, env.value_from.config_map_key_ref.key = cm, key
    if optional is not None:
        env.value_from.config_map_key_ref.optional = optional
    return env


def from_secret(name: str, secret_name: str = "db", key: str = "password") -> pod_pb2.EnvVar:
    env = pod_pb2.EnvVar(name=name)
    env.value_from.secret_key_ref.name, env.value_from.secret_key_ref.key = secret_name, key
    return env


def cm_source(name: str = "app", prefix: str = "", *, optional: bool | None = None) -> pod_pb2.EnvFromSource:
    source = pod_pb2.EnvFromSource(prefix=prefix)
    source.config_map_ref.name = name
    if optional is not None:
        source.config_map_ref.optional = optional
    return source


def secret_source(name: str = "db", prefix: str = "", *, optional: bool | None = None) -> pod_pb2.EnvFromSource:
    source = pod_pb2.EnvFromSource(prefix=prefix)
    source.secret_ref.name = name
    if optional is not None:
        source.secret_ref.optional = optional
    return source


BOTH_REFS = pod_pb2.EnvVar(
    name="A",
    value_from=pod_pb2.EnvVarSource(
        secret_key_ref=pod_pb2.SecretKeySelector(name="db", key="k"),
        config_map_key_ref=pod_pb2.ConfigMapKeySelector(name="app", key="k"),
    ),
)
BOTH_SOURCES = pod_pb2.EnvFromSource(
    config_map_ref=pod_pb2.ConfigMapEnvSource(name="app"), secret_ref=pod_pb2.SecretEnvSource(name="db")
)


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        pytest.param(
            env_pod(from_cm("A", key="")),
            "spec.containers[0].env[0].valueFrom.configMapKeyRef.key: required",
            id="no-key",
        ),
        pytest.param(
            env_pod(from_cm("A", key="a/b")),
            'spec.containers[0].env[0].valueFrom.configMapKeyRef.key: invalid key "a/b"',
            id="bad-key",
        ),
        pytest.param(
            env_pod(from_cm("A", cm="App")), "spec.containers[0].env[0].valueFrom.configMapKeyRef.name", id="bad-name"
        ),
        pytest.param(
            env_pod(BOTH_REFS),
            "spec.containers[0].env[0].valueFrom: may not have more than one field specified at a time",
            id="two-refs",
        ),
        pytest.param(
            env_pod(env_from=(pod_pb2.EnvFromSource(prefix="P_"),)),
            "spec.containers[0].envFrom[0]: must specify configMapRef or secretRef",
            id="no-source",
        ),
        pytest.param(
            env_pod(env_from=(BOTH_SOURCES,)),
            "spec.containers[0].envFrom[0]: may not have more than one field specified at a time",
            id="two-sources",
        ),
        pytest.param(
            env_pod(env_from=(cm_source(""),)),
            "spec.containers[0].envFrom[0].configMapRef.name: required",
            id="no-name",
        ),
        pytest.param(
            env_pod(env_from=(secret_source("DB"),)), "spec.containers[0].envFrom[0].secretRef.name", id="bad-secret"
        ),
        pytest.param(
            env_pod(env_from=(cm_source(prefix="1_"),)),
            'spec.containers[0].envFrom[0].prefix: must be a valid environment variable name (letters, digits, "_", '
            '"-" or ".", not starting with a digit), got "1_"',
            id="bad-prefix",
        ),
    ],
)
async def test_env_refs_and_env_from_are_validated(pod: pod_pb2.Pod, expected: str) -> None:
    with pytest.raises(errors.InvalidError) as caught:
        await api().create(pod)
    assert any(c.startswith(expected) for c in causes(caught)), causes(caught)


async def test_valid_env_from_and_config_map_key_refs_are_accepted() -> None:
    pod = env_pod(
        from_cm("MODE"),
        from_secret("PASSWORD"),
        env_from=(cm_source(prefix="APP_", optional=True), secret_source(prefix="DB.")),
    )
    created = await api().create(pod)
    assert isinstance(created, pod_pb2.Pod) and len(created.spec.containers[0].env_from) == 2


# -- resolution for a pod's node (pure) --------------------------------------------------------


def lookups(
    *objs: configmap_pb2.ConfigMap | secret_pb2.Secret,
) -> tuple[configenv.SecretLookup, configenv.ConfigMapLookup]:
    known = {(type(o).__name__, o.metadata.namespace, o.metadata.name): o for o in objs}

    def secrets(ns: str, name: str) -> secret_pb2.Secret | None:
        found = known.get(("Secret", ns, name))
        return found if isinstance(found, secret_pb2.Secret) else None

    def config_maps(ns: str, name: str) -> configmap_pb2.ConfigMap | None:
        found = known.get(("ConfigMap", ns, name))
        return found if isinstance(found, configmap_pb2.ConfigMap) else None

    return secrets, config_maps


def run_env(pod: pod_pb2.Pod, *objs: configmap_pb2.ConfigMap | secret_pb2.Secret) -> dict[str, str]:
    """What the agent would give the container: the pod's env over its envFrom."""
    resolved, _ = configenv.resolve(pod, *lookups(*objs))
    spec = build_spec(resolved, resolved.spec.containers[0], 0, node="n1", epoch=1, extra_env={})
    return dict(spec.env)


@pytest.mark.parametrize(
    ("pod", "objs", "expected"),
    [
        pytest.param(env_pod(from_cm("MODE")), (config_map(mode="prod"),), {"MODE": "prod"}, id="configMapKeyRef"),
        pytest.param(
            env_pod(env_from=(cm_source(),)),
            (config_map(mode="prod", level="3", binary={"blob": b"x"}),),
            {"mode": "prod", "level": "3"},
            id="envFrom-data-only",
        ),
        pytest.param(
            env_pod(env_from=(cm_source(prefix="APP_"), secret_source(prefix="DB_"))),
            (config_map(mode="prod"), secret(password="pw")),
            {"APP_mode": "prod", "DB_password": "pw"},
            id="prefix",
        ),
        pytest.param(
            env_pod(env_from=(cm_source(), secret_source())),
            (config_map(mode="cm", only="cm"), secret(mode="secret")),
            {"mode": "secret", "only": "cm"},
            id="later-source-wins",
        ),
        pytest.param(
            env_pod(
                pod_pb2.EnvVar(name="mode", value="explicit"), from_cm("only", key="mode"), env_from=(cm_source(),)
            ),
            (config_map(mode="cm", only="cm"),),
            {"mode": "explicit", "only": "cm"},
            id="env-wins-over-envFrom",
        ),
        pytest.param(
            env_pod(env_from=(cm_source(),)),
            (named_config_map("app", {"1st": "a", "a b": "b", "ok.name": "c", "-dash": "d"}),),
            {"ok.name": "c", "-dash": "d"},
            id="invalid-names-skipped",
        ),
        pytest.param(
            env_pod(env_from=(cm_source(prefix="P_"),)),
            (named_config_map("app", {"1st": "a"}),),
            {"P_1st": "a"},
            id="prefix-makes-a-name-valid",
        ),
        pytest.param(
            env_pod(from_cm("MODE", optional=True), env_from=(cm_source("gone", optional=True),)),
            (),
            {},
            id="optional-missing",
        ),
        pytest.param(
            env_pod(from_cm("MODE", key="nope", optional=True)),
            (config_map(mode="prod"),),
            {},
            id="optional-missing-key",
        ),
    ],
)
def test_env_resolution(
    pod: pod_pb2.Pod, objs: tuple[configmap_pb2.ConfigMap | secret_pb2.Secret, ...], expected: dict[str, str]
) -> None:
    resolved, _ = configenv.resolve(pod, *lookups(*objs))
    assert lifecycle.config_error(resolved, "app") == ""
    assert run_env(pod, *objs) == expected


def test_skipped_keys_are_named_as_the_kubelet_names_them() -> None:
    container = env_pod(env_from=(cm_source(),)).spec.containers[0]
    r = configenv.resolve_container(
        "default", container, *lookups(named_config_map("app", {"1a": "x", "a b": "y", "ok": "z"}))
    )
    assert r.env_from == {"ok": "z"}
    assert r.skipped == [
        "Keys [1a, a b] from the EnvFrom configMap default/app were skipped since they are considered "
        "invalid environment variable names."
    ]


@pytest.mark.parametrize(
    ("pod", "objs", "message"),
    [
        pytest.param(env_pod(env_from=(cm_source(),)), (), 'configmap "app" not found', id="envFrom-configmap"),
        pytest.param(env_pod(env_from=(secret_source(),)), (), 'secret "db" not found', id="envFrom-secret"),
        pytest.param(env_pod(from_cm("MODE")), (), 'configmap "app" not found', id="keyRef-configmap"),
        pytest.param(
            env_pod(from_cm("MODE", key="nope")),
            (config_map(mode="prod"),),
            "couldn't find key nope in ConfigMap default/app",
            id="keyRef-key",
        ),
        pytest.param(
            env_pod(from_cm("BLOB", key="blob")),
            (config_map(binary={"blob": b"x"}),),
            "couldn't find key blob in ConfigMap default/app",
            id="keyRef-binaryData-is-not-env",
        ),
        pytest.param(
            env_pod(env_from=(cm_source("first"), cm_source("second"))),
            (),
            'configmap "first" not found',
            id="first-missing-named",
        ),
    ],
)
def test_missing_objects_and_keys_are_the_containers_config_error(
    pod: pod_pb2.Pod, objs: tuple[configmap_pb2.ConfigMap | secret_pb2.Secret, ...], message: str
) -> None:
    resolved, _ = configenv.resolve(pod, *lookups(*objs))
    assert json.loads(resolved.metadata.annotations[wellknown.CONFIG_ERRORS]) == {"app": message}
    assert lifecycle.config_error(resolved, "app") == message


def test_config_values_do_not_change_the_spec_hash_but_change_the_digest() -> None:
    pod = env_pod(from_cm("MODE"), env_from=(cm_source(),))
    one, d1 = configenv.resolve(pod, *lookups(config_map(mode="a")))
    two, d2 = configenv.resolve(pod, *lookups(config_map(mode="b", extra="new key")))
    assert lifecycle.spec_hash(one.spec.containers[0]) == lifecycle.spec_hash(two.spec.containers[0])
    assert d1 != d2 and d1 and d2
    assert not pod.metadata.annotations, "the stored pod is untouched"


def test_a_stored_pods_own_env_from_annotation_is_dropped() -> None:
    pod = env_pod(pod_pb2.EnvVar(name="A", value="1"))
    pod.metadata.annotations[wellknown.ENV_FROM] = json.dumps({"app": {"INJECTED": "x"}})
    assert run_env(pod) == {"A": "1"}


def test_only_the_nodes_own_pods_get_config_and_a_new_configmap_wakes_them() -> None:
    objects = ObjectStore(MemoryStore())
    pods, config_maps = Informer(objects, kinds.by_kind("Pod")), Informer(objects, kinds.by_kind("ConfigMap"))
    index = AssignmentIndex(pods, config_maps=config_maps)
    mine = env_pod(env_from=(cm_source(),))
    mine.spec.node_name = "n1"
    theirs = env_pod(pod_pb2.EnvVar(name="X", value="1"))
    theirs.metadata.name, theirs.metadata.uid, theirs.spec.node_name = "other", "uid-2", "n2"
    index._on_event(CacheEvent(Change.ADDED, mine, None, 2))
    index._on_event(CacheEvent(Change.ADDED, theirs, None, 3))
    n1, n2 = index.event_for("n1"), index.event_for("n2")
    before, fp_before = index.current("n1")
    assert lifecycle.config_error(before.pods[0], "app") == 'configmap "app" not found'
    n1.clear()
    n2.clear()
    cm = config_map(mode="the-value")
    config_maps.items["default/app"] = cm
    index._on_config_map(CacheEvent(Change.ADDED, cm, None, 4))
    assert n1.is_set() and not n2.is_set()
    after, fp_after = index.current("n1")
    assert fp_after != fp_before
    assert lifecycle.env_from(after.pods[0], "app") == {"mode": "the-value"}
    assert lifecycle.config_error(after.pods[0], "app") == ""
    assert b"the-value" not in index.current("n2")[0].SerializeToString()


def test_a_manifests_env_from_and_config_map_key_ref_are_read_as_kubernetes_writes_them() -> None:
    container = {
        "name": "app",
        "image": "busybox",
        "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode", "optional": True}}}],
        "envFrom": [
            {"configMapRef": {"name": "app"}, "prefix": "APP_"},
            {"secretRef": {"name": "db", "optional": False}},
        ],
    }
    pod, problems = codec.from_dict(
        {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [container]}}, pod_pb2.Pod
    )
    assert problems == []
    c = pod.spec.containers[0]
    assert c.env[0].value_from.config_map_key_ref.optional is True
    assert [(s.prefix, s.config_map_ref.name, s.secret_ref.name) for s in c.env_from] == [
        ("APP_", "app", ""),
        ("", "", "db"),
    ]
    assert codec.to_dict(pod)["spec"]["containers"][0]["envFrom"] == container["envFrom"]


def test_config_map_and_secret_volumes_are_read() -> None:
    volume = {"name": "conf", "configMap": {"name": "app"}}
    spec = {"containers": [{"name": "app", "image": "busybox"}], "volumes": [volume]}
    pod, problems = codec.from_dict({"apiVersion": "v1", "kind": "Pod", "spec": spec}, pod_pb2.Pod)
    assert problems == [] and pod.spec.volumes[0].config_map.name == "app"


async def test_skipped_keys_become_one_warning_event_per_pod_and_message() -> None:
    objects = ObjectStore(MemoryStore())
    pods, config_maps = Informer(objects, kinds.by_kind("Pod")), Informer(objects, kinds.by_kind("ConfigMap"))
    index = AssignmentIndex(pods, config_maps=config_maps)
    pod = env_pod(env_from=(cm_source(),))
    pod.spec.node_name = "n1"
    index._on_event(CacheEvent(Change.ADDED, pod, None, 2))
    config_maps.items["default/app"] = named_config_map("app", {"1bad": "x", "good": "y"})
    recorded: list[tuple[str, str, str]] = []
    done = asyncio.Event()

    async def record(p: pod_pb2.Pod, reason: str, message: str) -> None:
        recorded.append((p.metadata.name, reason, message))
        done.set()

    task = asyncio.create_task(index.record_warnings(record))
    try:
        index.current("n1")
        index.current("n1")
        await asyncio.wait_for(done.wait(), 5)
        index.current("n1")
        await asyncio.sleep(0)
    finally:
        task.cancel()
    assert recorded == [
        (
            "web",
            "InvalidEnvironmentVariableNames",
            "Keys [1bad] from the EnvFrom configMap default/app were skipped since they are considered "
            "invalid environment variable names.",
        )
    ]


@pytest.mark.parametrize(
    "annotation", [pytest.param(wellknown.ENV_FROM, id="env-from"), pytest.param(wellknown.CONFIG_ERRORS, id="errors")]
)
def test_a_pod_whose_env_from_or_config_error_changed_wakes_its_worker(annotation: str) -> None:
    before = env_pod(env_from=(cm_source(),))
    after = pod_pb2.Pod()
    after.CopyFrom(before)
    after.metadata.annotations[annotation] = json.dumps({"app": {"mode": "prod"}})
    assert not _same_for_worker(before, after), "the spec is the same: only the annotation says what changed"
