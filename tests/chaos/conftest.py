"""Real `corral server` replicas against one etcd process the test starts,
and the means to hurt them: SIGKILL, SIGSTOP/SIGCONT. Every wait has a
deadline; every process a test starts is stopped (continued first) at the end.

Every etcd here (the single one of ``cluster``, the 3 members of
``etcd_cluster``) is the release `corral server` itself would run
(`find_etcd`: Debian's etcd-server 3.4.23 where installed), so these tests
exercise the etcd corral recommends."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.errors import EmbeddedEtcdError
from controlplane.store.etcd import EtcdStore
from controlplane.store.release import EtcdBinary, find_etcd
from corral.cli.config import ConfigError, resolve_credentials
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import meta_pb2, workloads_pb2
from tests import processes
from tests.e2e.conftest import free_port

LEADER_KEY = "/corral/leader"
LEASE_TTL = 3


@dataclass
class Replica:
    """One `corral server` process, logging JSON lines to ``log``."""

    name: str
    etcd: str
    log: Path
    env: dict[str, str]
    address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    proc: subprocess.Popen[bytes] | None = None
    # Where agents join (TLS, with a token); kept across restarts.
    join_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")

    def start(self) -> None:
        args = [
            "server",
            "--listen",
            self.address,
            "--etcd",
            self.etcd,
            "--lease-ttl",
            str(LEASE_TTL),
            "--join-listen",
            self.join_address,
            # The chaos tests' pods are process-runtime pods, which only the privileged level admits.
            "--pod-security",
            "privileged",
        ]
        # Never the user's own data dir and CLI config.
        self.env.setdefault("XDG_DATA_HOME", str(self.log.parent / "data"))
        self.env.setdefault("XDG_CONFIG_HOME", str(self.log.parent / "config"))
        self.proc = processes.spawn(args, self.log, self.env)

    def credentials(self) -> Credentials:
        """The admin credential this replica wrote to its CLI config (it waits for it)."""
        path = Path(self.env["XDG_CONFIG_HOME"]) / "corral" / "config.yaml"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                return resolve_credentials(path)
            except ConfigError:
                time.sleep(0.1)
        return resolve_credentials(path)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        processes.kill9(self.proc)

    def stop(self) -> None:
        processes.stop(self.proc)

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every log event called ``name`` so far."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("event") == name:
                        found.append(entry)
        return found

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@dataclass
class Cluster:
    """An etcd, a store on it to observe with, and the replicas of a test."""

    etcd: str
    store: EtcdStore
    tmp: Path
    replicas: list[Replica] = field(default_factory=list)

    def replica(self, name: str, **env: str) -> Replica:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        # The replicas share one data dir (so one cluster CA, made by whichever starts first) and one
        # CLI config, where each writes an admin credential for that CA.
        base["XDG_DATA_HOME"] = str(self.tmp / "data")
        base["XDG_CONFIG_HOME"] = str(self.tmp / "config")
        replica = Replica(name, self.etcd, self.tmp / f"{name}.log", {**base, **env})
        self.replicas.append(replica)
        return replica

    async def leader_value(self) -> str:
        kv = await self.store.get(LEADER_KEY)
        return kv.value.decode() if kv is not None else ""

    async def wait_leader(self, replica: Replica, timeout: float) -> float:
        """Seconds until the leader key names ``replica``."""
        started = time.monotonic()
        await wait_for(lambda: self._leads(replica), timeout, f"{replica.name} to lead", replica)
        return time.monotonic() - started

    async def _leads(self, replica: Replica) -> bool:
        return (await self.leader_value()).endswith(":" + replica.address)


async def wait_for(check: Callable[[], Any], timeout: float, what: str, replica: Replica | None = None) -> Any:
    """Poll ``check`` (plain or async) until truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            tail = f"\n--- {replica.name} log ---\n{replica.tail()}" if replica is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        await asyncio.sleep(0.05)


@pytest.fixture
def chosen_etcd() -> EtcdBinary:
    """The etcd `corral server` would run here (skip when there is none)."""
    try:
        return find_etcd()
    except EmbeddedEtcdError as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def cluster(tmp_path: Path, chosen_etcd: EtcdBinary) -> AsyncIterator[Cluster]:
    etcd = EmbeddedEtcd(tmp_path / "etcd", binary=chosen_etcd)
    endpoint = await etcd.start()
    store = await EtcdStore.connect([endpoint])
    cluster = Cluster(endpoint, store, tmp_path)
    try:
        yield cluster
    finally:
        for replica in cluster.replicas:
            replica.stop()
        await store.close()
        await etcd.stop()


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a figure even when pytest captures output (figures are printed, never asserted)."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[chaos] {line}", flush=True)

    return emit


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    """A 3-member etcd cluster of ``binary`` started as docs/operations.md shows (on loopback ports)."""

    def __init__(self, tmp: Path, binary: EtcdBinary, size: int = 3) -> None:
        self.binary = binary
        self.members = [
            EtcdMember(f"m{i}", free_port(), free_port(), tmp / f"m{i}", tmp / f"m{i}.log") for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            client_url = f"http://{m.endpoint}"
            with m.log.open("ab") as out:
                m.proc = subprocess.Popen(
                    [
                        str(self.binary.path),
                        "--name",
                        m.name,
                        "--data-dir",
                        str(m.data_dir),
                        "--listen-client-urls",
                        client_url,
                        "--advertise-client-urls",
                        client_url,
                        "--listen-peer-urls",
                        m.peer_url,
                        "--initial-advertise-peer-urls",
                        m.peer_url,
                        "--initial-cluster",
                        initial,
                        "--initial-cluster-token",
                        "corral-chaos",
                        "--initial-cluster-state",
                        "new",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

    async def wait_healthy(self, timeout: float) -> None:
        """Wait until every member answers, and check each runs the release of ``binary``."""
        for m in self.members:
            store = await wait_for(functools.partial(_answers, m.endpoint), timeout, f"etcd member {m.name}")
            try:
                version = await store.server_version()
            finally:
                await store.close()
            assert version == str(self.binary.release), f"member {m.name} runs etcd {version}, not {self.binary}"

    def member(self, endpoint: str) -> EtcdMember:
        return next(m for m in self.members if m.endpoint == endpoint)

    def kill9(self, member: EtcdMember) -> None:
        assert member.proc is not None
        member.proc.kill()
        member.proc.wait(timeout=10)

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
                try:
                    m.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()


async def _answers(endpoint: str) -> EtcdStore | None:
    from controlplane.store.errors import UnavailableError

    try:
        return await EtcdStore.connect([endpoint], timeout=1.0)
    except UnavailableError:
        return None


@pytest.fixture
async def etcd_cluster(tmp_path: Path, chosen_etcd: EtcdBinary) -> AsyncIterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path, chosen_etcd)
    cluster.start()
    try:
        await cluster.wait_healthy(30)
        yield cluster
    finally:
        cluster.stop()


# -- Helpers for the workload scenarios (test_ha.py, test_random_walk.py) ----------------------------


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def pod_terminating(pod: Any) -> bool:
    return bool(pod.metadata.HasField("deletion_timestamp"))


def chaos_agent(
    name: str, servers: list[Replica], token: str, tmp: Path, proxy_address: str, runtime: str = "process"
) -> Any:
    """A `corral agent` (not started) given every replica to talk to and join through, with its own
    loopback proxy address and no DNS or metrics port, so several run on one machine."""
    from tests.e2e.conftest import AgentProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["XDG_CONFIG_HOME"] = str(tmp / f"{name}-config")
    extra = (
        "--join", ",".join(r.join_address for r in servers), "--token", token,
        "--proxy-address", proxy_address, "--dns-port", "0", "--metrics-listen", "",
    )  # fmt: skip
    return AgentProcess(
        ",".join(r.address for r in servers), name, tmp / name, env, tmp / f"{name}.log",
        runtimes=(runtime,), extra_args=extra,
    )  # fmt: skip


class PodWatcher:
    """Follows the pods matching ``selector`` in a thread, through a client given every server: after
    any error (a server killed, a stream ended) it lists again and watches from there. ``check`` is
    called with the pods (by name) after the list and after every event, and returns a violation or
    None. Every uid seen for each pod name is kept (``uids``)."""

    def __init__(self, servers: str, credentials: Credentials, selector: str,
                 check: Callable[[dict[str, Any]], str | None]) -> None:  # fmt: skip
        import threading

        self.servers, self.credentials, self.selector, self.check = servers, credentials, selector, check
        self.events = 0
        self.relists = 0
        self.errors: list[str] = []  # why each watch ended
        self.watched: list[str] = []  # the server each list was read from
        self.violations: list[str] = []
        self.uids: dict[str, set[str]] = {}
        self._client: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _observe(self, state: dict[str, Any]) -> None:
        for pod in state.values():
            self.uids.setdefault(pod.metadata.name, set()).add(pod.metadata.uid)
        problem = self.check(state)
        if problem:
            self.violations.append(f"after event {self.events}: {problem}")

    def _follow(self) -> None:
        from corral.client import Client

        while not self._stop.is_set():
            try:
                self._client = Client(self.servers, self.credentials, timeout=5)
                items, revision = self._client.list("pods", "default", selector=self.selector)
                self.relists += 1
                self.watched.append(self._client.address)
                state = {p.metadata.name: p for p in items}
                self._observe(state)
                for ev in self._client.watch("pods", "default", selector=self.selector, resource_version=revision):
                    if self._stop.is_set():
                        return
                    self.events += 1
                    if ev.type == "DELETED":
                        state.pop(ev.obj.metadata.name, None)
                    else:
                        state[ev.obj.metadata.name] = ev.obj
                    self._observe(state)
                self.errors.append("the watch ended")
            except Exception as e:  # ClientError (a server gone), or the channel closed by stop()
                self.errors.append(f"{type(e).__name__}: {e}"[:300])
                time.sleep(0.2)
            finally:
                if self._client is not None:
                    self._client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._thread.join(timeout=5)

    def reused_names(self) -> dict[str, set[str]]:
        return {name: uids for name, uids in self.uids.items() if len(uids) > 1}


def versioned_deployment(
    name: str, version: str, replicas: int, *, max_surge: int, max_unavailable: int
) -> workloads_pb2.Deployment:
    """A Deployment of process-runtime pods that sleep, its version in the VERSION env var."""
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.strategy.type = "RollingUpdate"
    d.spec.strategy.rolling_update.max_surge.int_val = max_surge
    d.spec.strategy.rolling_update.max_unavailable.int_val = max_unavailable
    d.spec.template.metadata.labels["app"] = name
    spec = d.spec.template.spec
    spec.runtime_class_name = "process"
    spec.termination_grace_period_seconds = 1
    container = spec.containers.add(name="main", image="host", command=["/bin/sh", "-c", "exec sleep 3600"])
    container.env.add(name="VERSION", value=version)
    return d
