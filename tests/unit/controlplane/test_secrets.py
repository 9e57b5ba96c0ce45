"""Secrets: encryption at rest, stringData, validation, and their values in node assignments."""

import json
import os
import stat
from pathlib import Path

import pytest

from agent.pods import lifecycle
from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi
from controlplane.informer import CacheEvent, Informer
from controlplane.nodeapi import configenv
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.store.encryption import HEADER, KEY_FILE, Encrypter, KeyFileError, load_or_create_key
from controlplane.store.errors import DecryptionError
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos import wellknown
from protos.corral.v1 import pod_pb2, secret_pb2
from protos.kinds import by_kind

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SECRET = by_kind("Secret")


def secret(name: str = "db", **data: str) -> secret_pb2.Secret:
    s = secret_pb2.Secret()
    s.metadata.name, s.metadata.namespace = name, "default"
    for k, v in (data or {"password": "hunter2"}).items():
        s.data[k] = v.encode()
    return s


# -- encryption ------------------------------------------------------------------


def test_sealed_values_round_trip_with_a_header_a_fresh_nonce_and_no_plaintext() -> None:
    enc = Encrypter(KEY)
    one, two = enc.seal("/k", b"hunter2"), enc.seal("/k", b"hunter2")
    assert one.startswith(HEADER + enc.key_id.encode() + b":")
    assert one != two, "a random nonce per write"
    assert b"hunter2" not in one
    assert enc.open("/k", one) == enc.open("/k", two) == b"hunter2"
    assert enc.open("/k", b"plain") == b"plain", "values from before encryption stay readable"


def test_another_key_is_a_clear_error_naming_the_store_key() -> None:
    sealed = Encrypter(KEY).seal("/corral/registry/secrets/default/db", b"x")
    with pytest.raises(DecryptionError, match=r"/corral/registry/secrets/default/db.*secrets\.key"):
        Encrypter(OTHER_KEY).open("/corral/registry/secrets/default/db", sealed)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda v: v[:-1] + bytes([v[-1] ^ 1]), id="flipped-bit"),
        pytest.param(lambda v: v[:-20], id="truncated"),
        pytest.param(lambda v: v[: len(HEADER)] + b"zz", id="broken-header"),
    ],
)
def test_tampered_values_are_refused(tamper: object) -> None:
    enc = Encrypter(KEY)
    sealed = enc.seal("/k", b"hunter2")
    with pytest.raises(DecryptionError, match="'/k'"):
        enc.open("/k", tamper(sealed))  # type: ignore[operator]


def test_a_value_moved_to_another_key_does_not_decrypt() -> None:
    enc = Encrypter(KEY)
    with pytest.raises(DecryptionError, match="authentication failed"):
        enc.open("/b", enc.seal("/a", b"x"))


def test_the_key_file_is_created_once_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = load_or_create_key(data_dir)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(data_dir / KEY_FILE).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert load_or_create_key(data_dir) == key
    (data_dir / KEY_FILE).write_bytes(b"short")
    with pytest.raises(KeyFileError, match="5 bytes"):
        load_or_create_key(data_dir)


async def test_the_object_store_encrypts_secrets_only_and_decrypts_reads_and_watches() -> None:
    store = MemoryStore()
    objects = ObjectStore(store, encrypter=Encrypter(KEY))
    start = await store.current_revision() + 1
    created = await objects.create(secret())
    raw = await store.get(objects.key_of(created))
    assert raw is not None and raw.value.startswith(HEADER) and b"hunter2" not in raw.value
    got = await objects.get(SECRET, "default", "db")
    assert isinstance(got, secret_pb2.Secret) and got.data["password"] == b"hunter2"
    listed, _ = await objects.list_all(SECRET)
    assert [s.data["password"] for s in listed] == [b"hunter2"]
    pod = pod_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = "web", "default"
    plain = await objects.create(pod)
    raw_pod = await store.get(objects.key_of(plain))
    assert raw_pod is not None and not raw_pod.value.startswith(HEADER)
    events = objects.watch(SECRET, start_revision=start)
    first = await anext(events)
    assert first.change is Change.ADDED and first.obj.data["password"] == b"hunter2"
    with pytest.raises(DecryptionError):
        await ObjectStore(store, encrypter=Encrypter(OTHER_KEY)).get(SECRET, "default", "db")
    with pytest.raises(DecryptionError, match="no encryption key"):
        await ObjectStore(store).get(SECRET, "default", "db")


# -- API: stringData and validation -----------------------------------------------


def api() -> ObjectApi:
    return ObjectApi(ObjectStore(MemoryStore(), encrypter=Encrypter(KEY)))


async def test_string_data_is_merged_into_data_and_never_stored() -> None:
    a = api()
    s = secret(password="old", user="admin")
    s.string_data["password"] = "hunter2"
    created = await a.create(s)
    assert isinstance(created, secret_pb2.Secret)
    assert dict(created.data) == {"password": b"hunter2", "user": b"admin"}
    assert not created.string_data and created.type == "Opaque"
    again = secret(password="hunter2", user="admin")
    _, outcome = await a.apply(again)
    assert outcome is ApplyOutcome.UNCHANGED
    applied = secret(user="admin")
    applied.string_data["password"] = "new"
    stored, outcome = await a.apply(applied)
    assert outcome is ApplyOutcome.CONFIGURED
    assert stored.data["password"] == b"new" and not stored.string_data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"bad/key": b"x"}, "data.bad/key", id="slash-in-key"),
        pytest.param({"..": b"x"}, "data..", id="dot-dot"),
        pytest.param({"big": b"x" * (1024 * 1024)}, "too long", id="over-1MiB"),
    ],
)
async def test_invalid_secrets_are_refused(data: dict[str, bytes], message: str) -> None:
    s = secret()
    s.data.clear()
    s.data.update(data)
    with pytest.raises(errors.InvalidError, match=message):
        await api().create(s)


async def test_an_immutable_secret_refuses_data_changes() -> None:
    a = api()
    s = secret()
    s.immutable = True
    await a.apply(s)
    changed = secret(password="other")
    changed.immutable = True
    with pytest.raises(errors.InvalidError, match="data: field is immutable"):
        await a.apply(changed)
    s.ClearField("immutable")
    with pytest.raises(errors.InvalidError, match="immutable: field is immutable"):
        await a.apply(s)


def env_pod(*envs: pod_pb2.EnvVar) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    c = p.spec.containers.add(name="app", image="busybox:latest")
    c.env.extend(envs)
    return p


def from_secret(
    name: str, secret_name: str = "db", key: str = "password", *, optional: bool | None = None
) -> pod_pb2.EnvVar:
    env = pod_pb2.EnvVar(name=name)
    env.value_from.secret_key_ref.name, env.value_from.secret_key_ref.key = secret_name, key
    if optional is not None:
        env.value_from.secret_key_ref.optional = optional
    return env


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            pod_pb2.EnvVar(
                name="A",
                value="x",
                value_from=pod_pb2.EnvVarSource(secret_key_ref=pod_pb2.SecretKeySelector(name="db", key="k")),
            ),
            "may not be specified",
            id="both",
        ),
        pytest.param(
            pod_pb2.EnvVar(name="A", value_from=pod_pb2.EnvVarSource()),
            "must specify fieldRef, resourceFieldRef, secretKeyRef",
            id="empty-source",
        ),
        pytest.param(from_secret("A", key=""), "secretKeyRef.key: required", id="no-key"),
        pytest.param(from_secret("A", secret_name="DB"), "secretKeyRef.name", id="bad-name"),
    ],
)
async def test_env_value_from_is_validated(env: pod_pb2.EnvVar, message: str) -> None:
    with pytest.raises(errors.InvalidError, match=message):
        await api().create(env_pod(env))


# -- resolution for nodes ----------------------------------------------------------


def lookup_of(*secrets: secret_pb2.Secret) -> configenv.SecretLookup:
    known = {(s.metadata.namespace, s.metadata.name): s for s in secrets}
    return lambda ns, name: known.get((ns, name))


def test_secret_values_are_filled_in_and_the_stored_pod_is_untouched() -> None:
    pod = env_pod(pod_pb2.EnvVar(name="PLAIN", value="1"), from_secret("PASSWORD"))
    resolved, digest = configenv.resolve(pod, lookup_of(secret()))
    env = {e.name: e.value for e in resolved.spec.containers[0].env}
    assert env == {"PLAIN": "1", "PASSWORD": "hunter2"}
    assert resolved.spec.containers[0].env[1].value_from.secret_key_ref.name == "db"
    assert digest and pod.spec.containers[0].env[1].value == ""
    assert wellknown.CONFIG_ERRORS not in resolved.metadata.annotations
    _, changed = configenv.resolve(pod, lookup_of(secret(password="new")))
    assert changed != digest
    assert configenv.resolve(env_pod(), lookup_of())[1] == ""


@pytest.mark.parametrize(
    ("env", "found", "message"),
    [
        pytest.param(from_secret("P"), (), 'secret "db" not found', id="no-secret"),
        pytest.param(
            from_secret("P", key="nope"), (secret(),), "couldn't find key nope in Secret default/db", id="no-key"
        ),
    ],
)
def test_missing_references_become_the_containers_config_error(
    env: pod_pb2.EnvVar, found: tuple[secret_pb2.Secret, ...], message: str
) -> None:
    resolved, _ = configenv.resolve(env_pod(env), lookup_of(*found))
    assert json.loads(resolved.metadata.annotations[wellknown.CONFIG_ERRORS]) == {"app": message}
    assert lifecycle.config_error(resolved, "app") == message
    assert lifecycle.config_error(resolved, "other") == ""


def test_an_optional_missing_reference_leaves_the_variable_unset() -> None:
    resolved, _ = configenv.resolve(env_pod(from_secret("P", optional=True)), lookup_of())
    assert list(resolved.spec.containers[0].env) == []
    assert not resolved.metadata.annotations


def test_secret_values_do_not_change_the_containers_spec_hash() -> None:
    pod = env_pod(from_secret("P"))
    one, _ = configenv.resolve(pod, lookup_of(secret(password="a")))
    two, _ = configenv.resolve(pod, lookup_of(secret(password="b")))
    assert lifecycle.spec_hash(one.spec.containers[0]) == lifecycle.spec_hash(two.spec.containers[0])


def test_only_the_nodes_own_pods_get_values_and_a_new_secret_wakes_them() -> None:
    objects = ObjectStore(MemoryStore())
    pods, secrets = Informer(objects, by_kind("Pod")), Informer(objects, SECRET)
    index = AssignmentIndex(pods, secrets=secrets)
    mine = env_pod(from_secret("P"))
    mine.spec.node_name = "n1"
    theirs = env_pod(pod_pb2.EnvVar(name="X", value="1"))
    theirs.metadata.name, theirs.metadata.uid, theirs.spec.node_name = "other", "uid-2", "n2"
    index._on_event(CacheEvent(Change.ADDED, mine, None, 2))
    index._on_event(CacheEvent(Change.ADDED, theirs, None, 3))
    n1, n2 = index.event_for("n1"), index.event_for("n2")
    before, fp_before = index.current("n1")
    assert before.pods[0].metadata.annotations[wellknown.CONFIG_ERRORS]
    n1.clear()
    n2.clear()
    s = secret()
    secrets.items["default/db"] = s
    index._on_secret(CacheEvent(Change.ADDED, s, None, 4))
    assert n1.is_set() and not n2.is_set()
    after, fp_after = index.current("n1")
    assert fp_after != fp_before
    assert after.pods[0].spec.containers[0].env[0].value == "hunter2"
    assert b"hunter2" not in index.current("n2")[0].SerializeToString()
