"""ObjectApi over the in-memory store: apply/create/update/get/list/watch/delete."""

import asyncio
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from google.protobuf.message import Message

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import GENERATE_NAME_ATTEMPTS, NAME_ALPHABET, ApplyOutcome, ObjectApi
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


M = TypeVar("M", bound=Message)


def copy_of(obj: Message, cls: type[M]) -> M:
    assert isinstance(obj, cls)
    copy = cls()
    copy.CopyFrom(obj)
    return copy


def make_api() -> ObjectApi:
    return ObjectApi(ObjectStore(MemoryStore()), now=lambda: NOW)


def deployment(
    name: str = "web", replicas: int = 3, image: str = "httpd:2.4", labels: dict[str, str] | None = None
) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name = name
    d.metadata.labels.update(labels or {"app": name})
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image=image)
    return d


def pod(name: str, labels: dict[str, str]) -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=name, labels=labels))
    p.spec.containers.add(name="main", image="busybox:1")
    return p


async def test_apply_creates_then_reports_unchanged_then_configured() -> None:
    api = make_api()
    created, outcome = await api.apply(deployment())
    assert outcome is ApplyOutcome.CREATED
    assert created.metadata.uid and created.metadata.generation == 1
    assert created.metadata.creation_timestamp.ToDatetime(tzinfo=UTC) == NOW
    again, outcome = await api.apply(deployment())
    assert outcome is ApplyOutcome.UNCHANGED
    assert again.metadata.resource_version == created.metadata.resource_version
    changed, outcome = await api.apply(deployment(image="httpd:2.5"))
    assert outcome is ApplyOutcome.CONFIGURED
    assert changed.metadata.uid == created.metadata.uid
    assert changed.metadata.generation == 2
    assert int(changed.metadata.resource_version) > int(created.metadata.resource_version)


async def test_apply_keeps_status_and_label_only_change_keeps_generation() -> None:
    api = make_api()
    created, _ = await api.apply(deployment())
    with_status = copy_of(created, workloads_pb2.Deployment)
    with_status.status.ready_replicas = 3
    await api.update_status(with_status)
    relabelled, outcome = await api.apply(deployment(labels={"app": "web", "team": "a"}))
    assert outcome is ApplyOutcome.CONFIGURED
    assert relabelled.status.ready_replicas == 3
    assert relabelled.metadata.generation == 1
    assert dict(relabelled.metadata.labels) == {"app": "web", "team": "a"}


async def test_dry_run_writes_nothing() -> None:
    api = make_api()
    _, outcome = await api.apply(deployment(), dry_run=True)
    assert outcome is ApplyOutcome.CREATED
    with pytest.raises(errors.NotFoundError):
        await api.get("deploy", "default", "web")


async def test_invalid_object_reports_every_cause() -> None:
    api = make_api()
    bad = deployment(replicas=-1)
    bad.spec.template.spec.containers[0].ports.add(container_port=70000)
    with pytest.raises(errors.InvalidError) as info:
        await api.apply(bad)
    fields = [c.field for c in info.value.causes]
    assert fields == ["spec.replicas", "spec.template.spec.containers[0].ports[0].containerPort"]
    listed = await api.list("deployments")
    assert listed.items == []


async def test_create_conflicts_and_generate_name() -> None:
    api = make_api()
    await api.create(deployment())
    with pytest.raises(errors.AlreadyExistsError, match='deployments.apps "web" already exists'):
        await api.create(deployment())
    p = pod("", {"app": "x"})
    p.metadata.generate_name = "x-"
    created = await api.create(p)
    assert created.metadata.name.startswith("x-") and len(created.metadata.name) == 7
    assert set(created.metadata.name[2:]) <= set(NAME_ALPHABET)
    assert created.status.phase == "Pending"


async def test_generated_name_clash_is_retried_with_a_fresh_suffix() -> None:
    given: list[str] = []
    suffixes = iter(["bbbbb", "bbbbb", "ccccc"] + ["ddddd"] * 10)
    api = make_api()

    def suffix() -> str:
        given.append(next(suffixes))
        return given[-1]

    api.name_suffix = suffix
    template = pod("", {"app": "x"})
    template.metadata.generate_name = "x-"
    first = await api.create(template)
    second = await api.create(template)
    assert (first.metadata.name, second.metadata.name) == ("x-bbbbb", "x-ccccc")
    await api.create(template)  # x-ddddd
    before = len(given)
    with pytest.raises(errors.AlreadyExistsError, match='"x-ddddd" already exists'):
        await api.create(template)  # every one of its attempts clashes
    assert len(given) - before == GENERATE_NAME_ATTEMPTS
    named = pod("x-ccccc", {"app": "x"})
    named.metadata.generate_name = "x-"
    with pytest.raises(errors.AlreadyExistsError):
        await api.create(named)  # an explicit name is never replaced


async def test_a_long_generate_name_is_cut_as_kubernetes_does() -> None:
    """58 characters of generateName and the 5 of the suffix: a DaemonSet or ReplicaSet of a long
    (valid) name still gets pods, where the whole name plus the suffix passed 253 characters."""
    api = make_api()
    template = pod("", {"app": "x"})
    template.metadata.generate_name = "x" * 252 + "-"
    created = await api.create(template)
    assert created.metadata.name[:58] == "x" * 58 and len(created.metadata.name) == 63


async def test_update_with_stale_resource_version_is_a_conflict() -> None:
    api = make_api()
    first = await api.create(deployment())
    second = copy_of(first, workloads_pb2.Deployment)
    second.spec.replicas = 5
    updated = await api.update(second)
    assert updated.spec.replicas == 5
    stale = copy_of(first, workloads_pb2.Deployment)
    stale.spec.replicas = 7
    with pytest.raises(errors.ConflictError, match="has been modified"):
        await api.update(stale)
    assert (await api.get("deployment", "default", "web")).spec.replicas == 5


async def test_apply_keeps_pod_binding() -> None:
    api = make_api()
    created = await api.create(pod("p", {"app": "x"}))
    bound = copy_of(created, pod_pb2.Pod)
    bound.spec.node_name = "node-1"
    await api.bind(bound)
    after, outcome = await api.apply(pod("p", {"app": "x"}))
    assert outcome is ApplyOutcome.UNCHANGED
    assert after.spec.node_name == "node-1"


async def test_list_paginates_with_selector_and_namespaces() -> None:
    api = make_api()
    for i in range(25):
        await api.create(pod(f"p{i:02d}", {"app": "a" if i % 2 else "b"}))
    other = pod("elsewhere", {"app": "a"})
    other.metadata.namespace = "other"
    await api.create(other)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await api.list("pods", "default", selector="app=a", limit=5, continue_token=token)
        seen += [p.metadata.name for p in page.items]
        pages += 1
        token = page.continue_token
        if not token:
            break
    assert seen == [f"p{i:02d}" for i in range(25) if i % 2]
    assert pages >= 3
    everywhere = await api.list("po", "", selector="app=a", limit=100)
    assert len(everywhere.items) == 13


async def test_bad_selector_and_kind_are_bad_requests() -> None:
    api = make_api()
    with pytest.raises(errors.BadRequestError, match="invalid label selector"):
        await api.list("pods", selector="app in (a")
    with pytest.raises(errors.BadRequestError, match='unknown kind "gizmos"'):
        await api.list("gizmos")


async def test_delete_with_uid_precondition() -> None:
    api = make_api()
    created = await api.create(deployment())
    with pytest.raises(errors.ConflictError):
        await api.delete("deploy", "default", "web", uid="not-the-uid")
    deleted = await api.delete("deploy", "default", "web", uid=created.metadata.uid)
    assert deleted.metadata.uid == created.metadata.uid
    with pytest.raises(errors.NotFoundError):
        await api.delete("deploy", "default", "web")


async def test_watch_sends_existing_then_changes_with_selector_semantics() -> None:
    api = make_api()
    await api.create(pod("a", {"app": "web"}))
    await api.create(pod("b", {"app": "db"}))
    seen: list[tuple[Change, str]] = []

    async def consume() -> None:
        async for item in api.watch("pods", "default", selector="app=web"):
            seen.append((item.change, item.obj.metadata.name))
            if len(seen) == 4:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await api.create(pod("c", {"app": "web"}))
    moved = await api.get("pods", "default", "a")
    moved.metadata.labels["app"] = "db"
    await api.update(moved)
    await api.delete("pods", "default", "c")
    async with asyncio.timeout(5):
        await task
    assert seen == [(Change.ADDED, "a"), (Change.ADDED, "c"), (Change.DELETED, "a"), (Change.DELETED, "c")]


async def test_watch_from_compacted_revision_is_gone() -> None:
    store = MemoryStore()
    api = ObjectApi(ObjectStore(store), now=lambda: NOW)
    first = await api.create(pod("a", {}))
    await api.create(pod("b", {}))
    await store.compact(await store.current_revision())
    with pytest.raises(errors.GoneError, match="list again"):
        async for _ in api.watch("pods", resource_version=str(int(first.metadata.resource_version) - 1)):
            pass
