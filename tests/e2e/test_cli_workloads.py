"""`corral rollout | scale | set image | cordon | uncordon | drain`, as a user runs them.

Revisions come from the server's Deployment controller (deployments with 0
replicas, so nothing needs to run); where a Deployment's status matters
(`rollout status`) the test writes it itself, on an in-process API server over
a MemoryStore.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service import ObjectService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from corral.cli.config import write_config
from corral.cli.rollout import CommandError, choose_revision, status_line
from protos.corral.v1 import api_pb2_grpc, workloads_pb2
from protos.kinds import by_kind
from tests.e2e.conftest import Cli
from tests.pki import TestCluster

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


# -- manifests -------------------------------------------------------------------------------


def template(labels: dict[str, str], image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
    }


def deployment(name: str = "web", image: str = "httpd:2.4.58", *, replicas: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template({"app": name}, image),
        },
    }


def replica_set(name: str, owner_uid: str, *, revision: int, image: str, cause: str, pod_hash: str) -> dict[str, Any]:
    labels = {"app": "web", "pod-template-hash": pod_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {REVISION: str(revision), CHANGE_CAUSE: cause},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner_uid, "controller": True}
            ],
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": template(labels, image)},
    }


def pod(name: str, node: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app": f"drain-{name}"}}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox:1.36"}]},
    }


def apply(cli: Cli, *docs: dict[str, Any]) -> None:
    stream = "\n---\n".join(json.dumps(d) for d in docs)
    result = cli.run("apply", "-f", "-", stdin=stream.encode())
    assert result.returncode == 0, result.stderr


def get_json(cli: Cli, *target: str) -> dict[str, Any]:
    result = cli.run("get", *target, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def ok(cli: Cli, *args: str) -> str:
    result = cli.run(*args)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def fails(cli: Cli, *args: str) -> str:
    result = cli.run(*args)
    assert result.returncode == 1, f"{args} should fail: {result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stderr


def _revisions(cli: Cli, owner_uid: str) -> set[str]:
    sets = get_json(cli, "rs")["items"]
    return {
        rs["metadata"].get("annotations", {}).get(REVISION, "")
        for rs in sets
        if any(o.get("uid") == owner_uid for o in rs["metadata"].get("ownerReferences", []))
    }


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def pod_status(cli: Cli, name: str) -> str:
    """The STATUS column of `corral get pod NAME`."""
    return ok(cli, "get", "pod", name).splitlines()[1].split()[2]


def containers(cli: Cli) -> dict[str, str]:
    spec = get_json(cli, "deploy", "web")["spec"]["template"]["spec"]
    return {c["name"]: c["image"] for c in spec["containers"]}


# -- against `corral server` -------------------------------------------------------------------


@pytest.mark.etcd
def test_rollout_history_and_undo(cli: Cli) -> None:
    # The server's Deployment controller makes the ReplicaSets and revisions.
    first = deployment(image="httpd:2.4.57")
    first["metadata"]["annotations"] = {CHANGE_CAUSE: "first"}
    apply(cli, first)
    uid = get_json(cli, "deploy", "web")["metadata"]["uid"]
    wait_for(lambda: _revisions(cli, uid) == {"1"}, "revision 1")
    second = deployment(image="httpd:2.4.58")
    second["metadata"]["annotations"] = {CHANGE_CAUSE: "second"}
    apply(cli, second)
    wait_for(lambda: _revisions(cli, uid) == {"1", "2"}, "revision 2")
    apply(cli, replica_set("stranger", "some-other-uid", revision=7, image="nginx:1", cause="not ours", pod_hash="ccc"))

    lines = ok(cli, "rollout", "history", "deploy/web").splitlines()
    assert lines[0] == "deployment.apps/web"
    assert lines[1].split() == ["REVISION", "CHANGE-CAUSE"]
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in lines[2:]}
    assert rows == {"1": "first", "2": "second"}

    detail = ok(cli, "rollout", "history", "deployment", "web", "--revision", "1")
    assert detail.startswith("deployment.apps/web with revision #1\nPod Template:")
    assert "httpd:2.4.57" in detail
    assert "pod-template-hash=" in detail
    assert "unable to find the specified revision 9" in fails(
        cli, "rollout", "history", "deploy/web", "--revision", "9"
    )

    assert ok(cli, "rollout", "undo", "deploy/web").strip() == "deployment.apps/web rolled back"
    rolled = get_json(cli, "deploy", "web")
    assert rolled["spec"]["template"]["spec"]["containers"][0]["image"] == "httpd:2.4.57"
    assert rolled["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert rolled["metadata"]["annotations"][CHANGE_CAUSE] == "first"

    wait_for(lambda: _revisions(cli, uid) == {"2", "3"}, "rollback became revision 3")
    assert (
        ok(cli, "rollout", "undo", "deployments.apps/web", "--to-revision", "2").strip()
        == "deployment.apps/web rolled back"
    )
    assert containers(cli) == {"web": "httpd:2.4.58"}
    assert "unable to find specified revision 42 in history" in fails(
        cli, "rollout", "undo", "deploy/web", "--to-revision", "42"
    )
    assert 'Error from server (NotFound): deployments.apps "nope" not found' in fails(
        cli, "rollout", "history", "deploy/nope"
    )
    assert "rollout undo works on deployments, daemonsets and statefulsets, not on replicasets" in fails(
        cli, "rollout", "undo", "rs/stranger"
    )


@pytest.mark.etcd
def test_pause_resume_restart_scale_and_set_image(cli: Cli) -> None:
    apply(cli, deployment())

    assert ok(cli, "rollout", "pause", "deploy/web").strip() == "deployment.apps/web paused"
    assert get_json(cli, "deploy", "web")["spec"]["paused"] is True
    assert 'deployments.apps "web" is already paused' in fails(cli, "rollout", "pause", "deploy/web")
    assert "cannot rollback a paused deployment" in fails(cli, "rollout", "undo", "deploy/web")
    assert "can't restart paused deployment" in fails(cli, "rollout", "restart", "deploy/web")
    assert ok(cli, "rollout", "resume", "deploy/web").strip() == "deployment.apps/web resumed"
    assert not get_json(cli, "deploy", "web")["spec"].get("paused")
    assert 'deployments.apps "web" is not paused' in fails(cli, "rollout", "resume", "deploy/web")

    assert ok(cli, "rollout", "restart", "deploy/web").strip() == "deployment.apps/web restarted"
    restarted = get_json(cli, "deploy", "web")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", restarted["corral.io/restartedAt"])

    assert ok(cli, "scale", "deploy/web", "--replicas", "2").strip() == "deployment.apps/web scaled"
    assert get_json(cli, "deploy", "web")["spec"]["replicas"] == 2
    assert ok(cli, "scale", "--replicas=0", "deployment", "web").strip() == "deployment.apps/web scaled"
    assert get_json(cli, "deploy", "web")["spec"]["replicas"] == 0
    assert "Expected replicas to be 5, was 0" in fails(
        cli, "scale", "deploy/web", "--replicas", "1", "--current-replicas", "5"
    )
    assert "scale works on deployments, replicasets and statefulsets, not on pods" in fails(
        cli, "scale", "pod/x", "--replicas", "1"
    )

    assert ok(cli, "set", "image", "deploy/web", "web=httpd:2.4.59").strip() == "deployment.apps/web image updated"
    assert containers(cli) == {"web": "httpd:2.4.59"}
    assert 'unable to find container named "nope"' in fails(cli, "set", "image", "deploy/web", "nope=x:1")
    assert containers(cli) == {"web": "httpd:2.4.59"}
    assert 'Error from server (NotFound): deployments.apps "gone" not found' in fails(
        cli, "set", "image", "deploy/gone", "web=x:1"
    )


@pytest.mark.etcd
def test_cordon_uncordon_and_drain(cli: Cli) -> None:
    apply(cli, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}, deployment("holder"))
    holder = get_json(cli, "deploy", "holder")["metadata"]
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "holder", "uid": holder["uid"], "controller": True}
    apply(cli, pod("bare", "n1"), pod("owned", "n1", owner), pod("elsewhere", "n2"))

    assert ok(cli, "cordon", "n1").strip() == "node/n1 cordoned"
    assert get_json(cli, "node", "n1")["spec"]["unschedulable"] is True
    assert ok(cli, "cordon", "n1").strip() == "node/n1 already cordoned"
    assert ok(cli, "uncordon", "n1").strip() == "node/n1 uncordoned"
    assert not get_json(cli, "node", "n1").get("spec", {}).get("unschedulable")
    assert ok(cli, "uncordon", "n1").strip() == "node/n1 already uncordoned"
    assert 'Error from server (NotFound): nodes "nope" not found' in fails(cli, "cordon", "nope")

    refused = cli.run("drain", "n1")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stdout.strip() == "node/n1 cordoned"
    assert (
        'error: unable to drain node "n1": cannot delete Pods that declare no controller '
        "(use --force to override): default/bare"
    ) in refused.stderr
    names = {p["metadata"]["name"] for p in get_json(cli, "pods")["items"]}
    assert {"bare", "owned", "elsewhere"} <= names

    # Pods on a node are deleted gracefully: they wait, Terminating, for the node to stop them.
    waiting = cli.run("drain", "n1", "--force", "--timeout", "1s", "--ignore-daemonsets", "--grace-period", "7")
    assert waiting.returncode == 1 and "Traceback" not in waiting.stderr
    assert 'unable to drain node "n1": timed out after 1s waiting for 2 pods to be deleted' in waiting.stderr
    marked = {p["metadata"]["name"]: p["metadata"] for p in get_json(cli, "pods")["items"]}
    assert str(marked["owned"]["deletionGracePeriodSeconds"]) == "7" and marked["owned"]["deletionTimestamp"]
    assert "deletionTimestamp" not in marked["elsewhere"]
    assert pod_status(cli, "bare") == "Terminating"
    # No agent runs n1: only an immediate delete removes its pods.
    drained = cli.run("drain", "n1", "--force", "--timeout", "30s", "--ignore-daemonsets", "--grace-period", "0")
    assert drained.returncode == 0, drained.stderr
    out = drained.stdout.splitlines()
    assert out[0] == "node/n1 already cordoned" and out[-1] == "node/n1 drained"
    assert {"pod/bare evicted", "pod/owned evicted"} <= set(out)
    assert "Warning: deleting Pods that declare no controller: default/bare" in drained.stderr
    names = {p["metadata"]["name"] for p in get_json(cli, "pods")["items"]}
    assert "bare" not in names and "owned" not in names and "elsewhere" in names
    assert get_json(cli, "node", "n1")["spec"]["unschedulable"] is True


# -- `rollout status` against an in-process API server ------------------------------------------


@pytest.fixture
async def local_api(cli_env: dict[str, str]) -> AsyncIterator[tuple[str, ObjectApi, MemoryStore]]:
    """An ObjectService on mutual TLS, and the CLI config of ``cli_env`` holding an admin credential for it."""
    store = MemoryStore()
    api = ObjectApi(ObjectStore(store))
    server = grpc.aio.server()
    api_pb2_grpc.add_ObjectServiceServicer_to_server(ObjectService(api), server)
    cluster = TestCluster()
    port = cluster.add_port(server)
    write_config(f"127.0.0.1:{port}", cluster.admin(), Path(cli_env["XDG_CONFIG_HOME"]) / "corral" / "config.yaml")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", api, store
    finally:
        await server.stop(0)


async def _create_web(api: ObjectApi, replicas: int = 3) -> None:
    d = workloads_pb2.Deployment()
    d.metadata.name = "web"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="web", image="httpd:2.4.58")
    await api.create(d)


async def _set_status(api: ObjectApi, change: Callable[[workloads_pb2.DeploymentStatus], None]) -> None:
    d = await api.find(by_kind("Deployment"), "default", "web")
    assert isinstance(d, workloads_pb2.Deployment)
    change(d.status)
    await api.update_status(d)


def _counts(updated: int, replicas: int, available: int) -> Callable[[workloads_pb2.DeploymentStatus], None]:
    def change(st: workloads_pb2.DeploymentStatus) -> None:
        st.observed_generation = 1
        st.updated_replicas, st.replicas, st.available_replicas = updated, replicas, available

    return change


async def _wait_watching(store: MemoryStore, task: asyncio.Task[Any]) -> None:
    """Until the CLI's watch is open (the MemoryStore has a subscriber)."""
    deadline = asyncio.get_running_loop().time() + 20
    # The one way to see, in-process, that the watch is open.
    while not store._subscribers:
        assert not task.done(), task.result()
        assert asyncio.get_running_loop().time() < deadline, "the CLI never started watching"
        await asyncio.sleep(0.02)


async def test_rollout_status_follows_the_rollout(
    local_api: tuple[str, ObjectApi, MemoryStore], cli_env: dict[str, str]
) -> None:
    address, api, store = local_api
    await _create_web(api)
    cli = Cli(cli_env)
    task = asyncio.create_task(
        asyncio.to_thread(cli.run, "--server", address, "rollout", "status", "deploy/web", "--timeout", "30s")
    )
    await _wait_watching(store, task)
    for step in (_counts(1, 1, 0), _counts(3, 4, 2), _counts(3, 3, 2), _counts(3, 3, 3)):
        await _set_status(api, step)
    result = await asyncio.wait_for(task, 40)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Waiting for deployment spec update to be observed...",
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
        'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
        'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
        'deployment "web" successfully rolled out',
    ]


async def test_rollout_status_fails_past_the_progress_deadline(
    local_api: tuple[str, ObjectApi, MemoryStore], cli_env: dict[str, str]
) -> None:
    address, api, store = local_api
    await _create_web(api)
    cli = Cli(cli_env)
    task = asyncio.create_task(asyncio.to_thread(cli.run, "--server", address, "rollout", "status", "deploy/web"))
    await _wait_watching(store, task)

    def exceeded(st: workloads_pb2.DeploymentStatus) -> None:
        _counts(1, 1, 0)(st)
        st.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")

    await _set_status(api, exceeded)
    result = await asyncio.wait_for(task, 40)
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: deployment "web" exceeded its progress deadline'


async def test_rollout_status_times_out(local_api: tuple[str, ObjectApi, MemoryStore], cli_env: dict[str, str]) -> None:
    address, api, _ = local_api
    await _create_web(api)
    cli = Cli(cli_env)
    result = await asyncio.to_thread(
        cli.run, "--server", address, "rollout", "status", "deploy/web", "--timeout", "500ms"
    )
    assert result.returncode == 1
    assert result.stdout.strip() == "Waiting for deployment spec update to be observed..."
    assert result.stderr.strip() == "error: timed out waiting for the condition"
    once = await asyncio.to_thread(cli.run, "--server", address, "rollout", "status", "deploy/web", "--no-watch")
    assert once.returncode == 0 and once.stdout.strip() == "Waiting for deployment spec update to be observed..."


# -- the pure helpers behind the verbs ------------------------------------------------------------


def _deployment(
    generation: int, observed: int, replicas: int, updated: int, total: int, available: int
) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.generation = "web", generation
    d.spec.replicas = replicas
    st = d.status
    st.observed_generation, st.updated_replicas, st.replicas, st.available_replicas = (
        observed,
        updated,
        total,
        available,
    )
    return d


@pytest.mark.parametrize(
    ("d", "line", "done"),
    [
        pytest.param(
            _deployment(2, 1, 3, 3, 3, 3),
            "Waiting for deployment spec update to be observed...",
            False,
            id="not-observed",
        ),
        pytest.param(
            _deployment(1, 1, 3, 1, 3, 3),
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
            False,
            id="updating",
        ),
        pytest.param(
            _deployment(1, 1, 3, 3, 5, 3),
            'Waiting for deployment "web" rollout to finish: 2 old replicas are pending termination...',
            False,
            id="old-pending",
        ),
        pytest.param(
            _deployment(1, 1, 3, 3, 3, 2),
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
            False,
            id="becoming-available",
        ),
        pytest.param(_deployment(1, 1, 3, 3, 3, 3), 'deployment "web" successfully rolled out', True, id="done"),
        pytest.param(
            _deployment(3, 4, 0, 0, 0, 0), 'deployment "web" successfully rolled out', True, id="scaled-to-zero"
        ),
    ],
)
def test_status_line(d: workloads_pb2.Deployment, line: str, done: bool) -> None:
    assert status_line(d) == (line, done)


def test_status_line_progress_deadline() -> None:
    d = _deployment(1, 1, 3, 1, 1, 0)
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    with pytest.raises(CommandError, match="exceeded its progress deadline"):
        status_line(d)


def test_choose_revision() -> None:
    d = _deployment(1, 1, 1, 1, 1, 1)
    revisions = [(n, workloads_pb2.ReplicaSet()) for n in (1, 3, 4)]
    assert choose_revision(d, revisions, 0)[0] == 3
    assert choose_revision(d, revisions, 1)[0] == 1
    with pytest.raises(CommandError, match='no rollout history found for deployment "web"'):
        choose_revision(d, revisions[:1], 0)
    with pytest.raises(CommandError, match="unable to find specified revision 2 in history"):
        choose_revision(d, revisions, 2)
