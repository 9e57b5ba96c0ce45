"""Benchmark: the control plane's memory per node and per pod, and under churn.

A real `corral server` (its RSS alone, not its etcd child's), `--nodes` hollow
nodes, and a Deployment scaled `--rounds` times from 0 to `--replicas` (all
Running) and back to 0 (all gone). Prints the server's RSS with the nodes
only, at each round's top and bottom, and its peak (VmHWM); from these the
cost per node (over an idle server) and per pod (top minus bottom).

    .venv/bin/python bench/server_memory.py [--nodes 300] [--replicas 3000] [--rounds 5]

`--trace DIR` runs the server under tracemalloc (6 frames; slower, bigger) and
writes a snapshot at each round's top and bottom to DIR, for
`--top DIR/FILE` to print the biggest holders by line and by traceback.
`--trim` asks the server to call glibc's malloc_trim(0) at each bottom and
prints the RSS after it too (what glibc held freed but not returned).

Prints the figures and writes bench/results/server_memory.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from deployments import deployment, hollow, ready_nodes
from harness import admin_credentials, free_port, machine, stop, wait_for, write_result

from corral.client import Client, ClientError
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import pod_pb2

SNAPSHOT_ENV = "CORRAL_BENCH_SNAPSHOT"
GRPC_OPTIONS_ENV = "CORRAL_BENCH_GRPC_OPTIONS"
TRIM_SIGNAL = signal.SIGUSR2
SNAPSHOT_SIGNAL = signal.SIGUSR1


def serve(argv: list[str], *, trace: bool) -> None:
    """Run `corral server` in this process: SIGUSR1 writes a tracemalloc snapshot to
    $CORRAL_BENCH_SNAPSHOT, SIGUSR2 calls malloc_trim(0)."""
    if trace:
        tracemalloc.start(6)

    def snapshot(*_: object) -> None:
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(os.environ[SNAPSHOT_ENV])
        else:
            census(os.environ[SNAPSHOT_ENV])
        Path(os.environ[SNAPSHOT_ENV] + ".done").touch()

    def trim(*_: object) -> None:
        libc = ctypes.CDLL("libc.so.6")
        before = heap(libc)
        libc.malloc_trim(0)
        Path(os.environ[SNAPSHOT_ENV] + ".heap").write_text(json.dumps({"before": before, "after": heap(libc)}))
        Path(os.environ[SNAPSHOT_ENV] + ".done").touch()

    signal.signal(SNAPSHOT_SIGNAL, snapshot)
    signal.signal(TRIM_SIGNAL, trim)
    from controlplane import server
    from corral.cli import main

    # Extra gRPC server options to try, as JSON pairs (e.g. '[["grpc.http2.bdp_probe", 0]]').
    server.GRPC_OPTIONS.extend(tuple(o) for o in json.loads(os.environ.get(GRPC_OPTIONS_ENV, "[]")))

    sys.argv = ["corral", "server", *argv]
    main.main()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def heap(libc: ctypes.CDLL) -> dict[str, float]:
    """glibc's heap (every arena) in MB: in use, free inside it, and mmapped blocks."""
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {
        "in_use_mb": round(info.uordblks / 2**20, 1),
        "free_mb": round(info.fordblks / 2**20, 1),
        "mmapped_mb": round(info.hblkhd / 2**20, 1),
    }


def census(path: str) -> None:
    """Count the garbage collector's objects by type (with their shallow sizes): cheap enough for a
    server under load, where tracemalloc is not."""
    gc.collect()
    counts: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        row = counts.setdefault(type(obj).__qualname__, [0, 0])
        row[0] += 1
        row[1] += sys.getsizeof(obj)
    Path(path).write_text(json.dumps(counts))


def compare(before: str, after: str, limit: int) -> None:
    """The types whose counts grew most from one census to another."""
    a, b = json.loads(Path(before).read_text()), json.loads(Path(after).read_text())
    rows = sorted(((b[k][1] - a.get(k, [0, 0])[1], b[k][0] - a.get(k, [0, 0])[0], k) for k in b), reverse=True)
    for size, count, name in rows[:limit]:
        print(f"{size / 2**20:8.2f} MiB {count:9d}  {name}")


class Server:
    def __init__(self, tmp: str, *, trace: bool) -> None:
        self.tmp = Path(tmp)
        self.address = f"127.0.0.1:{free_port()}"
        self.mark = str(self.tmp / "snapshot")
        args = ["--listen", self.address, "--data-dir", str(self.tmp / "server"), "--log-level", "warning"]
        args += ["--join-rate", "1000", "--join-burst", "1000"]
        cmd = [sys.executable, __file__, "--serve", *(["--trace", "-"] if trace else []), "--", *args]
        env = {**os.environ, SNAPSHOT_ENV: self.mark}
        with open(self.tmp / "server.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def _status(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss(self) -> float:
        return self._status("VmRSS")

    def peak(self) -> float:
        return self._status("VmHWM")

    def signal(self, sig: signal.Signals, timeout: float = 300) -> None:
        done = Path(self.mark + ".done")
        done.unlink(missing_ok=True)
        self.proc.send_signal(sig)
        wait_for(done.exists, timeout, "the server's answer to a signal")

    def snapshot(self, to: Path) -> None:
        self.signal(SNAPSHOT_SIGNAL)
        Path(self.mark).rename(to)


class Pods:
    """A watch that keeps the names of the pods that exist and of those Running."""

    def __init__(self, address: str, credentials: Credentials, selector: str) -> None:
        self.existing: set[str] = set()
        self.running: set[str] = set()
        client = Client(address, credentials)
        _, revision = client.list("pods", "default", selector=selector)
        threading.Thread(target=self._follow, args=(client, selector, revision), daemon=True).start()

    def _follow(self, client: Client, selector: str, revision: str) -> None:
        try:
            for ev in client.watch("pods", "default", selector=selector, resource_version=revision):
                pod = ev.obj
                if not isinstance(pod, pod_pb2.Pod):
                    continue
                name = pod.metadata.name
                if ev.type == "DELETED":
                    self.existing.discard(name)
                    self.running.discard(name)
                    continue
                self.existing.add(name)
                if pod.status.phase == "Running":
                    self.running.add(name)
        except ClientError:
            return


def settle(server: Server, seconds: float = 5.0) -> float:
    """The server's RSS once it has stopped moving by more than 1% for a few seconds (bounded)."""
    deadline = time.monotonic() + max(seconds * 6, 30)
    last = server.rss()
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = server.rss()
        if abs(now - last) <= last * 0.01:
            return now
        last = now
    return last


def measure(args: argparse.Namespace) -> dict[str, object]:
    trace = Path(args.trace) if args.trace else None
    census_dir = Path(args.census or ".")
    for d in (trace, census_dir):
        if d:
            d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
        server = Server(tmp, trace=trace is not None)
        fleet = None
        try:
            client = Client(server.address, admin_credentials(300))
            token = client.create_token("node", 3600, "hollow nodes").token
            idle = settle(server)
            fleet = hollow(server.address, args.nodes, "hollow", token)
            wait_for(lambda: ready_nodes(client, "hollow") == args.nodes, 600, f"{args.nodes} hollow nodes")
            with_nodes = settle(server)
            print(f"server RSS idle {idle:.1f} MB; with {args.nodes} nodes {with_nodes:.1f} MB", flush=True)
            if args.trim:
                server.signal(TRIM_SIGNAL)
                print("malloc with the nodes:", Path(server.mark + ".heap").read_text(), flush=True)
            if trace or args.census:
                server.snapshot((trace or census_dir) / "nodes.snap")
            pods = Pods(server.address, client.credentials, "app=big")
            rounds: list[dict[str, Any]] = []
            for n in range(1, args.rounds + 1):
                started = time.perf_counter()
                client.apply(deployment("big", args.replicas))
                wait_for(lambda: len(pods.running) >= args.replicas, 900, f"{args.replicas} pods Running")
                up = time.perf_counter() - started
                top = settle(server)
                if trace or args.census:
                    server.snapshot((trace or census_dir) / f"top{n}.snap")
                started = time.perf_counter()
                client.apply(deployment("big", 0))
                wait_for(lambda: not pods.existing, 900, "every pod gone")
                down = time.perf_counter() - started
                bottom = settle(server)
                row: dict[str, Any] = {
                    "round": n,
                    "up_seconds": round(up, 1),
                    "top_mb": round(top, 1),
                    "down_seconds": round(down, 1),
                }
                row["bottom_mb"] = round(bottom, 1)
                if trace or args.census:
                    server.snapshot((trace or census_dir) / f"bottom{n}.snap")
                if args.trim:
                    server.signal(TRIM_SIGNAL)
                    row["trimmed_mb"] = round(settle(server, 2.0), 1)
                    row["malloc"] = json.loads(Path(server.mark + ".heap").read_text())
                row["peak_mb"] = round(server.peak(), 1)
                rounds.append(row)
                print(row, flush=True)
        finally:
            stop(*([fleet] if fleet else []), server.proc)
    result: dict[str, object] = {
        "nodes": args.nodes,
        "replicas": args.replicas,
        "traced": trace is not None,
        "idle_mb": round(idle, 1),
        "with_nodes_mb": round(with_nodes, 1),
        "kb_per_node": round((with_nodes - idle) * 1024 / args.nodes, 1),
    }
    if not rounds:
        return result
    first, last = rounds[0], rounds[-1]
    return result | {
        "kb_per_pod": round((first["top_mb"] - with_nodes) * 1024 / args.replicas, 1),
        "peak_mb": last["peak_mb"],
        "last_bottom_vs_first": round(last["bottom_mb"] / first["bottom_mb"], 3),
        "last_top_vs_first": round(last["top_mb"] / first["top_mb"], 3),
        "rounds": rounds,
    }


def top(path: str, limit: int) -> None:
    """Print the biggest holders of a snapshot: by line, then the biggest few by traceback."""
    snap = tracemalloc.Snapshot.load(path).filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.statistics("lineno")
    print(f"total {sum(s.size for s in stats) / 2**20:.1f} MiB in {sum(s.count for s in stats)} blocks")
    for s in stats[:limit]:
        frame = s.traceback[0]
        print(f"{s.size / 2**20:8.2f} MiB {s.count:9d}  {frame.filename}:{frame.lineno}")
    for s in snap.statistics("traceback")[:5]:
        print(f"\n{s.size / 2**20:.2f} MiB in {s.count} blocks")
        for line in s.traceback.format(limit=12):
            print("   ", line)


def main() -> None:
    if "--serve" in sys.argv:
        rest = sys.argv[sys.argv.index("--") + 1 :]
        serve(rest, trace="--trace" in sys.argv[: sys.argv.index("--")])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trace", help="run the server under tracemalloc; write snapshots here")
    parser.add_argument("--census", help="count the server's objects by type at each step; write them here")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) at each bottom; print the RSS after")
    parser.add_argument("--top", help="print the biggest holders of a snapshot file and exit")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--compare", nargs=2, help="print the growth from one census file to another and exit")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare[0], args.compare[1], args.limit)
        return
    if args.top:
        top(args.top, args.limit)
        return
    result = measure(args)
    print(f"{args.nodes} nodes: {result['kb_per_node']} KB per node")
    if args.rounds:
        print(
            f"{args.nodes} nodes, {args.replicas} pods: {result['kb_per_node']} KB per node, "
            f"{result['kb_per_pod']} KB per pod; peak RSS {result['peak_mb']} MB; "
            f"last round's bottom / first's {result['last_bottom_vs_first']}"
        )
    result["machine"] = machine()
    write_result("server_memory" + ("_traced" if args.trace else ""), result)


if __name__ == "__main__":
    main()
