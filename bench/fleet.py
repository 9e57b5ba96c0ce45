"""Benchmark: a Deployment on a fleet of hollow nodes, and what each process spends.

Starts a real `corral server` (embedded etcd), `--processes` hollow-node
processes (`bench/hollow.py`) serving `--nodes` nodes between them, applies a
Deployment of `--replicas` and prints: all-Running time, pod startup p50/p99
(first seen by a watch → seen Running), created → bound p50/p99, the CPU
seconds of every process (server, etcd, each simulator process, this
benchmark with its watch) over the startup, the peak RSS of server and etcd,
and the server's CPU-ms per pod started. Then, as asked:

- `--churn K`: scale N → 0 → N K times; the time of each step and the
  server's RSS after each round (nothing should grow round over round);
- `--node-loss`: one more node in its own process; kill -9 it and time until
  its pods are Running elsewhere;
- `--mass-loss F`: a share F of the nodes in one more process; kill -9 it and
  report how fast pods on the lost nodes were evicted (deleted), against the
  node lifecycle controller's rate limit;
- `--servers N`: N `corral server` replicas on one etcd the benchmark starts
  (an HA control plane, docs/operations.md), every agent given every
  replica's address (each dials the replica `first_server` picks by its
  name); each replica's CPU seconds and peak RSS are reported per phase, and
  how many nodes each one serves (its established agent connections).

    .venv/bin/python bench/fleet.py --nodes 1000 --replicas 10000 --processes 4 \
        [--churn 5] [--node-loss] [--mass-loss 0.1] [--servers 3]

Node credentials and the cluster CA are kept in `--cache-dir` (default
/var/tmp/corral-fleet): the next run's server starts with the same CA, so
nodes reuse their certificates instead of joining again (as a restarted fleet
does); the first run pays for the joins. Writes
bench/results/fleet-<nodes>-<replicas>.json. Asserts nothing; every wait is
bounded (`--timeout`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from deployments import deployment
from harness import admin_credentials, machine, percentile, start_server, stop, write_result
from hollow import node_name

from agent.node.session import first_server
from controlplane.store.embedded import EmbeddedEtcd
from corral.client import Client, ClientError
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import node_pb2, pod_pb2

HOLLOW = str(Path(__file__).resolve().parent / "hollow.py")
CA_FILES = ("ca.crt", "ca.key")
APP = "fleet"


# -- processes: CPU and memory ---------------------------------------------------------


@dataclass
class Watched:
    """A process whose CPU time and peak RSS the benchmark reports."""

    name: str
    process: psutil.Process
    peak_rss: int = 0

    def cpu(self) -> float:
        try:
            t = self.process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def rss(self) -> int:
        try:
            return int(self.process.memory_info().rss)
        except psutil.Error:
            return 0


@dataclass
class Meter:
    """The processes of a run, their RSS sampled every `period` seconds (peaks kept)."""

    watched: list[Watched] = field(default_factory=list)
    period: float = 0.5

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def add(self, name: str, pid: int) -> None:
        self.watched.append(Watched(name, psutil.Process(pid)))

    def _sample(self) -> None:
        while not self._stop.wait(self.period):
            for w in list(self.watched):
                w.peak_rss = max(w.peak_rss, w.rss())

    def cpu(self) -> dict[str, float]:
        return {w.name: w.cpu() for w in self.watched}

    def rss_mb(self, name: str) -> float:
        return round(next(w.rss() for w in self.watched if w.name == name) / 2**20, 1)

    def reset_peaks(self) -> None:
        for w in self.watched:
            w.peak_rss = w.rss()

    def peaks_mb(self) -> dict[str, float]:
        return {w.name: round(w.peak_rss / 2**20, 1) for w in self.watched}

    def servers_rss_mb(self) -> float:
        """The control plane replicas' RSS now, summed."""
        return round(sum(w.rss() for w in self.watched if is_server(w.name)) / 2**20, 1)

    def plane_peaks_mb(self) -> dict[str, float]:
        """Peak RSS of each replica and of etcd since the last `reset_peaks`."""
        return {k: v for k, v in self.peaks_mb().items() if is_server(k) or k == "etcd"}

    def close(self) -> None:
        self._stop.set()


def is_server(name: str) -> bool:
    """A control plane replica's name in the meter: "server" (one replica) or "server0", "server1", …."""
    return name.startswith("server")


def servers_cpu(cpu: dict[str, float]) -> float:
    return round(sum(v for k, v in cpu.items() if is_server(k)), 2)


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


# -- the watch --------------------------------------------------------------------------


class PodWatch:
    """Stamps when each pod is first seen, bound and Running; what exists now and where;
    when pods on given nodes were first seen going (terminating or deleted)."""

    def __init__(self, address: str, credentials: Credentials, selector: str) -> None:
        self.first: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.live: dict[str, str] = {}  # name → node
        self.running_now: set[str] = set()
        self.going: dict[str, tuple[float, str]] = {}  # name → (first seen going, node)
        client = Client(address, credentials)
        _, revision = client.list("pods", "default", selector=selector)
        threading.Thread(target=self._follow, args=(client, selector, revision), daemon=True).start()

    def _follow(self, client: Client, selector: str, revision: str) -> None:
        try:
            for ev in client.watch("pods", "default", selector=selector, resource_version=revision):
                pod = ev.obj
                if isinstance(pod, pod_pb2.Pod):
                    self._see(ev.type, pod, time.perf_counter())
        except ClientError:
            return

    def _see(self, kind: str, pod: pod_pb2.Pod, now: float) -> None:
        name, node = pod.metadata.name, pod.spec.node_name
        if kind == "DELETED" or pod.metadata.HasField("deletion_timestamp"):
            self.going.setdefault(name, (now, node))
        if kind == "DELETED":
            self.live.pop(name, None)
            self.running_now.discard(name)
            return
        self.first.setdefault(name, now)
        self.live[name] = node
        if node:
            self.bound.setdefault(name, now)
        if pod.status.phase == "Running" and not pod.metadata.HasField("deletion_timestamp"):
            self.running.setdefault(name, now)
            self.running_now.add(name)
        else:
            self.running_now.discard(name)

    def running_on(self, predicate: Callable[[str], bool]) -> int:
        return sum(1 for name in list(self.running_now) if predicate(self.live.get(name, "")))


def wait_until(check: Callable[[], bool], timeout: float, what: str, period: float = 0.1) -> float:
    """Seconds until `check` held; SystemExit past `timeout`."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(period)
    return time.perf_counter() - started


def ms(values: list[float], p: float) -> float:
    return round(percentile(values, p) * 1000, 1) if values else float("nan")


# -- the cluster ------------------------------------------------------------------------


@dataclass
class Fleet:
    servers: list[subprocess.Popen[bytes]]
    # Every replica's host:port, comma-separated (what agents are given).
    address: str
    client: Client
    token: str
    meter: Meter
    log_dir: str
    shares: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The etcd the replicas share (--servers above 1; one replica embeds its own).
    etcd: EmbeddedEtcd | None = None

    @property
    def addresses(self) -> list[str]:
        return self.address.split(",")

    def served(self) -> dict[str, int]:
        """Agents connected to each replica now: its established TCP connections on its listen port
        (each hollow node has one channel, so one connection; the benchmark's own few included)."""
        out: dict[str, int] = {}
        for i, (proc, address) in enumerate(zip(self.servers, self.addresses, strict=True)):
            port = int(address.rsplit(":", 1)[1])
            try:
                conns = psutil.Process(proc.pid).net_connections(kind="tcp")
            except psutil.Error:
                conns = []
            name = "server" if len(self.servers) == 1 else f"server{i}"
            out[name] = sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)
        return out

    def stop(self) -> None:
        stop(*self.shares.values(), *self.servers)
        if self.etcd is not None:
            asyncio.run(self.etcd.stop())

    def start_share(self, name: str, cache: Path, args: argparse.Namespace, *extra: str) -> None:
        log = open(Path(self.log_dir) / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                HOLLOW,
                "--server",
                self.address,
                "--data-dir",
                str(cache / "nodes"),
                "--metrics-period",
                str(args.metrics_period),
                "--start-delay",
                str(args.start_delay),
                "--ramp",
                str(args.ramp),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CORRAL_TOKEN": self.token},
        )
        self.shares[name] = proc
        self.meter.add(name, proc.pid)

    def ready_nodes(self) -> int:
        try:
            nodes, _ = self.client.list("nodes")
        except ClientError:
            return 0
        return sum(1 for n in nodes if isinstance(n, node_pb2.Node) and _ready(n))


def _ready(node: node_pb2.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


# Every hollow node joins from 127.0.0.1: lift the join port's per-address rate limit.
# Every hollow node gets a pod subnet at registration: a /9 of /24s has room for 32,768 nodes (and does
# not overlap the default Service CIDR, 10.43.0.0/16, which the server refuses).
SERVER_FLAGS = ("--join-rate", "100000", "--join-burst", "100000", "--cluster-cidr", "10.128.0.0/9")


def start_fleet(tmp: str, cache: Path, replicas: int = 1) -> Fleet:
    """`replicas` `corral server`s whose cluster CA is the cached one (kept for the next run if new):
    one with its embedded etcd, or several sharing one data dir (so one CA) and an etcd started here."""
    os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
    data = Path(tmp) / "server"
    pki, kept = data / "pki", cache / "ca"
    if all((kept / f).exists() for f in CA_FILES):
        pki.mkdir(parents=True, mode=0o700)
        for f in CA_FILES:
            shutil.copy2(kept / f, pki / f)
    etcd: EmbeddedEtcd | None = None
    flags: tuple[str, ...] = SERVER_FLAGS
    if replicas > 1:
        etcd = EmbeddedEtcd(Path(tmp) / "etcd")
        flags = (*flags, "--etcd", asyncio.run(etcd.start()))
    servers: list[subprocess.Popen[bytes]] = []
    addresses: list[str] = []
    try:
        for i in range(replicas):
            log_dir = Path(tmp) if replicas == 1 else Path(tmp) / f"server{i}"
            log_dir.mkdir(exist_ok=True)
            server, address = start_server(log_dir, data, *flags)
            servers.append(server)
            addresses.append(address)
            if i == 0:  # the first makes the CA (when none is cached) and the admin credential
                client = Client(address, admin_credentials())
        for address in addresses[1:]:
            wait_until(functools.partial(_answers, address, client.credentials), 60, f"replica {address}", 0.5)
        if not all((kept / f).exists() for f in CA_FILES):
            kept.mkdir(parents=True, exist_ok=True, mode=0o700)
            for f in CA_FILES:
                shutil.copy2(pki / f, kept / f)
        token = client.create_token("node", 3 * 3600, "hollow fleet").token
    except BaseException:
        stop(*servers)
        if etcd is not None:
            asyncio.run(etcd.stop())
        raise
    meter = Meter()
    for i, server in enumerate(servers):
        meter.add("server" if replicas == 1 else f"server{i}", server.pid)
    if etcd is not None and etcd.pid is not None:
        meter.add("etcd", etcd.pid)
    else:
        child = next((p for p in psutil.Process(servers[0].pid).children(recursive=True) if "etcd" in p.name()), None)
        if child is not None:
            meter.add("etcd", child.pid)
    meter.add("bench", os.getpid())
    return Fleet(servers, ",".join(addresses), client, token, meter, tmp, etcd=etcd)


def _answers(address: str, credentials: Credentials) -> bool:
    try:
        Client(address, credentials).list("namespaces")
    except ClientError:
        return False
    return True


def expected_shares(nodes: list[str], replicas: int) -> dict[str, int]:
    """How many of `nodes` dial each replica first (`first_server`, a hash of the name)."""
    out = {f"server{i}": 0 for i in range(replicas)}
    for name in nodes:
        out[f"server{first_server(name, replicas)}"] += 1
    return out


def scale(client: Client, replicas: int) -> None:
    client.apply(deployment(APP, replicas))


def eviction_limit() -> str:
    """The node lifecycle controller's default eviction rates, for the report."""
    try:
        from controlplane.controllers.nodelifecycle.zones import EvictionRates
    except ImportError:
        return "unknown"
    return ", ".join(f"{f.name}={getattr(EvictionRates(), f.name)}" for f in dataclasses.fields(EvictionRates))


# -- phases ------------------------------------------------------------------------------


def startup(fleet: Fleet, watch: PodWatch, replicas: int, timeout: float) -> dict[str, object]:
    meter = fleet.meter
    meter.reset_peaks()
    before = meter.cpu()
    started = time.perf_counter()
    scale(fleet.client, replicas)
    timed_out = ""
    try:
        wait_until(lambda: len(watch.running_now) >= replicas, timeout, f"{replicas} pods Running", period=0.2)
    except SystemExit as e:  # the figures of the pods that did start still say where the time went
        timed_out = f"{e} ({len(watch.running_now)} Running)"
        print(timed_out, flush=True)
    total = time.perf_counter() - started
    cpu = spent(before, meter.cpu())
    startup_s = [watch.running[n] - watch.first[n] for n in watch.running]
    bind_s = [watch.bound[n] - watch.first[n] for n in watch.running if n in watch.bound]
    peaks = meter.peaks_mb()
    return {
        "startup_timed_out": timed_out,
        "running": len(watch.running_now),
        "all_running_seconds": round(total, 2),
        "startup_p50_ms": round(statistics.median(startup_s) * 1000, 1),
        "startup_p99_ms": ms(startup_s, 99),
        "bind_p50_ms": round(statistics.median(bind_s) * 1000, 1),
        "bind_p99_ms": ms(bind_s, 99),
        "cpu_seconds": cpu,
        "server_cpu_ms_per_pod": round(servers_cpu(cpu) * 1000 / replicas, 2),
        "peak_rss_mb": meter.plane_peaks_mb(),
        "simulator_peak_rss_mb": {k: v for k, v in peaks.items() if not is_server(k) and k not in ("etcd", "bench")},
    }


def churn(fleet: Fleet, watch: PodWatch, replicas: int, rounds: int, timeout: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for r in range(rounds):
        before = servers_cpu(fleet.meter.cpu())
        scale(fleet.client, 0)
        try:
            down = wait_until(lambda: not watch.live, timeout, "every pod gone", period=0.2)
            rss_down = fleet.meter.servers_rss_mb()
            scale(fleet.client, replicas)
            up = wait_until(
                lambda: len(watch.running_now) >= replicas and len(watch.live) == replicas,
                timeout,
                f"{replicas} pods Running",
                period=0.2,
            )
        except SystemExit as e:
            print(f"churn round {r + 1}: {e}", flush=True)
            out.append({"round": r + 1, "timed_out": str(e), "server_rss_mb": fleet.meter.servers_rss_mb()})
            break
        row: dict[str, object] = {
            "round": r + 1,
            "down_seconds": round(down, 2),
            "up_seconds": round(up, 2),
            "server_rss_mb_at_zero": rss_down,
            "server_rss_mb": fleet.meter.servers_rss_mb(),
            "etcd_rss_mb": fleet.meter.rss_mb("etcd"),
            "server_cpu_seconds": round(servers_cpu(fleet.meter.cpu()) - before, 2),
        }
        print(
            f"churn round {r + 1}: {replicas} → 0 in {row['down_seconds']} s (server RSS {rss_down} MB), "
            f"0 → {replicas} in {row['up_seconds']} s (server RSS {row['server_rss_mb']} MB, "
            f"etcd {row['etcd_rss_mb']} MB), server CPU {row['server_cpu_seconds']} s",
            flush=True,
        )
        out.append(row)
    return out


def node_loss(fleet: Fleet, watch: PodWatch, replicas: int, victim: str, timeout: float) -> dict[str, object]:
    on_victim = sum(1 for node in list(watch.live.values()) if node == victim)
    fleet.shares["lost"].send_signal(signal.SIGKILL)
    try:
        seconds: float | None = wait_until(
            lambda: watch.running_on(lambda n: n != victim) >= replicas,
            timeout,
            "the lost node's pods Running elsewhere",
        )
    except SystemExit as e:
        print(e, flush=True)
        seconds = None
    return {
        "node_loss_pods": on_victim,
        "node_loss_to_running_elsewhere_seconds": None if seconds is None else round(seconds, 2),
    }


def mass_loss(fleet: Fleet, watch: PodWatch, replicas: int, lost: int, timeout: float) -> dict[str, object]:
    def on_lost(node: str) -> bool:
        return node.startswith("mass-")

    doomed = {name for name, node in list(watch.live.items()) if on_lost(node)}
    fleet.shares["mass"].send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    finished = True
    try:
        wait_until(
            lambda: doomed <= set(watch.going) and watch.running_on(lambda n: not on_lost(n)) >= replicas,
            timeout,
            "the lost nodes' pods evicted and Running elsewhere",
            period=0.5,
        )
    except SystemExit as e:
        print(e, flush=True)
        finished = False
    # Only what went after the kill (a pod of the node lost earlier can be among those seen before).
    times = sorted(t for t in (watch.going[n][0] - killed for n in doomed if n in watch.going) if t >= 0)
    per_second: dict[int, int] = {}
    for t in times:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    return {
        "mass_loss_nodes": lost,
        "mass_loss_pods": len(doomed),
        "mass_loss_evicted": len(times),
        "mass_loss_finished": finished,
        "first_eviction_seconds": round(times[0], 2) if times else None,
        "last_eviction_seconds": round(times[-1], 2) if times else None,
        "evictions_per_second": round((len(times) - 1) / span, 2) if span > 0 else None,
        "max_evictions_in_one_second": max(per_second.values()) if per_second else 0,
        "eviction_limit": eviction_limit(),
    }


def wait_ready(fleet: Fleet, nodes: int, timeout: float, before: dict[str, float], result: dict[str, object]) -> float:
    """Seconds until `nodes` are Ready, printing every 20 s how many are and the CPU each process
    has spent since the start (so a run that does not get there shows which process was the limit);
    the progress goes in `result` too."""
    started = time.perf_counter()
    progress: list[dict[str, object]] = []
    result["nodes_ready_progress"] = progress
    last = started
    while (ready := fleet.ready_nodes()) < nodes:
        now = time.perf_counter()
        if now - last >= 20:
            last = now
            row = {"seconds": round(now - started), "ready": ready, "cpu_seconds": spent(before, fleet.meter.cpu())}
            progress.append(row)
            print(f"{row['seconds']} s: {ready} nodes Ready; CPU {row['cpu_seconds']}", flush=True)
        if now - started > timeout:
            result["nodes_ready_timed_out"] = {"ready": ready, "cpu_seconds": spent(before, fleet.meter.cpu())}
            raise SystemExit(f"timed out after {timeout:g} s waiting for {nodes} nodes Ready ({ready} Ready)")
        time.sleep(1.0)
    return time.perf_counter() - started


def quiet_window(fleet: Fleet, seconds: float, result: dict[str, object], key: str, what: str) -> None:
    """Each process's CPU seconds and the peak RSS over `seconds` of nothing changing, as
    `<key>_cpu_seconds` and `<key>_peak_rss_mb`."""
    fleet.meter.reset_peaks()
    settle = fleet.meter.cpu()
    time.sleep(seconds)
    result[f"{key}_cpu_seconds"] = {"window": seconds, **spent(settle, fleet.meter.cpu())}
    result[f"{key}_peak_rss_mb"] = fleet.meter.plane_peaks_mb()
    print(
        f"{what}, {seconds:g} s: CPU {result[f'{key}_cpu_seconds']}; peak RSS MB {result[f'{key}_peak_rss_mb']}",
        flush=True,
    )


def keep_logs(log_dir: str, name: str) -> None:
    """Copy the run's logs (server, simulators) out of its temporary directory before it goes."""
    kept = Path(tempfile.gettempdir()) / f"{name}-logs"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(log_dir, kept, ignore=shutil.ignore_patterns("server", "etcd", "*.crt", "*.key", "config.yaml"))
    print(f"logs kept in {kept}", flush=True)


# -- main ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, result: dict[str, object]) -> None:
    """The run; `result` gets each figure as soon as it is measured (a run cut short keeps them)."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    lost = max(1, round(args.mass_loss * args.nodes)) if args.mass_loss > 0 else 0
    main_nodes = args.nodes - lost - (1 if args.node_loss else 0)
    result |= {
        "nodes": args.nodes,
        "replicas": args.replicas,
        "processes": args.processes,
        "metrics_period": args.metrics_period,
        "start_delay": args.start_delay,
        "ramp": args.ramp,
        "servers": args.servers,
    }
    with tempfile.TemporaryDirectory(prefix="corral-fleet-") as tmp:
        fleet = start_fleet(tmp, cache, args.servers)
        try:
            fleet.meter.reset_peaks()
            before = fleet.meter.cpu()
            for i in range(args.processes):
                fleet.start_share(
                    f"sim{i}",
                    cache,
                    args,
                    "--nodes",
                    str(main_nodes),
                    "--processes",
                    str(args.processes),
                    "--share",
                    str(i),
                )
            if args.node_loss:
                fleet.start_share("lost", cache, args, "--nodes", "1", "--prefix", "lost", "--first", str(main_nodes))
            if lost:
                fleet.start_share(
                    "mass", cache, args, "--nodes", str(lost), "--prefix", "mass", "--first", str(main_nodes + 1)
                )
            up = wait_ready(fleet, args.nodes, args.timeout, before, result)
            result["nodes_ready_seconds"] = round(up, 1)
            result["nodes_ready_cpu_seconds"] = spent(before, fleet.meter.cpu())
            result["nodes_ready_peak_rss_mb"] = fleet.meter.plane_peaks_mb()
            print(
                f"{args.nodes} hollow nodes Ready in {up:.1f} s; CPU {result['nodes_ready_cpu_seconds']}; "
                f"peak RSS MB {result['nodes_ready_peak_rss_mb']}",
                flush=True,
            )
            if args.servers > 1:
                names = [node_name("hollow", i) for i in range(main_nodes)]
                result["nodes_served"] = {"expected": expected_shares(names, args.servers), "connected": fleet.served()}
                print(f"nodes per replica: {result['nodes_served']}", flush=True)
            quiet_window(fleet, args.idle, result, "idle", "idle fleet")
            result["idle_rss_mb"] = {w.name: round(w.rss() / 2**20, 1) for w in fleet.meter.watched}
            watch = PodWatch(fleet.addresses[0], fleet.client.credentials, f"app={APP}")
            result.update(startup(fleet, watch, args.replicas, args.timeout))
            print(
                f"{args.replicas} replicas on {args.nodes} hollow nodes ({args.processes} processes): all Running in "
                f"{result['all_running_seconds']} s; pod startup p50 {result['startup_p50_ms']} ms, "
                f"p99 {result['startup_p99_ms']} ms (created → bound: p50 {result['bind_p50_ms']} ms, "
                f"p99 {result['bind_p99_ms']} ms)\n"
                f"CPU seconds over the startup: {result['cpu_seconds']}; server {result['server_cpu_ms_per_pod']} "
                f"CPU-ms per pod started; peak RSS MB {result['peak_rss_mb']}, simulators "
                f"{result['simulator_peak_rss_mb']}",
                flush=True,
            )
            quiet_window(fleet, args.idle, result, "steady", f"{args.replicas} pods Running")
            if args.servers > 1:
                result["nodes_served_after"] = fleet.served()
                print(f"nodes per replica after the startup: {result['nodes_served_after']}", flush=True)
            if result["startup_timed_out"]:
                return
            if args.churn:
                result["churn"] = churn(fleet, watch, args.replicas, args.churn, args.timeout)
            if args.node_loss:
                result.update(node_loss(fleet, watch, args.replicas, node_name("lost", main_nodes), args.timeout))
                print(
                    f"1 node lost among {args.nodes} ({result['node_loss_pods']} pods): Running elsewhere in "
                    f"{result['node_loss_to_running_elsewhere_seconds']} s",
                    flush=True,
                )
            if lost:
                result.update(mass_loss(fleet, watch, args.replicas, lost, args.loss_timeout))
                print(
                    f"{lost} nodes lost at once ({result['mass_loss_pods']} pods): {result['mass_loss_evicted']} "
                    f"evicted from {result['first_eviction_seconds']} s to {result['last_eviction_seconds']} s after "
                    f"the kill, {result['evictions_per_second']} pods/s (at most "
                    f"{result['max_evictions_in_one_second']} in one second); limit: {result['eviction_limit']}",
                    flush=True,
                )
        finally:
            fleet.meter.close()
            fleet.stop()
            if args.keep_logs:
                keep_logs(tmp, f"fleet-{args.nodes}-{args.replicas}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="hollow-node processes")
    parser.add_argument("--churn", type=int, default=0, help="rounds of N → 0 → N")
    parser.add_argument("--node-loss", action="store_true", help="lose one node (kill -9 its process)")
    parser.add_argument("--mass-loss", type=float, default=0.0, help="lose this share of the nodes at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds any one wait may take")
    parser.add_argument("--loss-timeout", type=float, default=300.0, help="seconds to follow a mass loss")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds to measure the fleet idle, and again with the pods Running"
    )
    parser.add_argument("--metrics-period", type=float, default=10.0, help="hollow nodes' metrics period (0: none)")
    parser.add_argument("--start-delay", type=float, default=0.0, help="hollow nodes' simulated container start")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which each process starts its nodes")
    parser.add_argument("--servers", type=int, default=1, help="corral server replicas on one etcd")
    parser.add_argument("--keep-logs", action="store_true", help="copy the logs to $TMPDIR/fleet-N-R-logs at the end")
    parser.add_argument("--cache-dir", default="/var/tmp/corral-fleet", help="cluster CA and node credentials")
    args = parser.parse_args()
    # A stop (or Ctrl-C, which a shell ignores for background jobs) ends the run through its
    # `finally`: the server and the simulator processes are stopped, the figures so far written.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    result: dict[str, object] = {"machine": machine()}
    try:
        run(args, result)
    finally:
        write_result(f"fleet-{args.nodes}-{args.replicas}", result)


if __name__ == "__main__":
    main()
