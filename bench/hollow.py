"""Hollow nodes: many real agents (session, pod manager, workers) in one
process, each with the in-memory fake runtime instead of Docker. They
register, heartbeat, receive assignments, run fake containers and report
status exactly as a real agent does, so the control plane cannot tell.

Used by the scheduling and startup benchmarks; also runnable alone:

    .venv/bin/python bench/hollow.py --server 127.0.0.1:7443 --nodes 100 --token TOKEN

Each node joins with the token (`corral token create`; or CORRAL_TOKEN) for its
own node certificate, as `corral agent` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

import uvloop

from agent.node.credentials import NodeCredentials
from agent.node.session import Session, SessionConfig
from agent.node.status import node_status
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime.fake import FakeRuntime
from corral.client import split_servers
from corral.common import logs
from corral.common.backoff import CrashLoopBackoff
from corral.common.pki.join import join_address_for
from protos.corral.v1 import node_pb2


def hollow_status(address: str, cpu: str, memory: str) -> node_pb2.NodeStatus:
    status = node_status(address=address, runtimes=["docker"])
    status.capacity.update({"cpu": cpu, "memory": memory, "pods": "110"})
    status.allocatable.update({"cpu": cpu, "memory": memory, "pods": "110"})
    return status


async def run_hollow_nodes(
    server: str,
    count: int,
    data_dir: Path,
    *,
    token: str,
    prefix: str = "hollow",
    cpu: str = "32",
    memory: str = "64Gi",
    poll_interval: float = 1.0,
) -> None:
    """Run `count` hollow nodes until cancelled; each joins with ``token`` for its node certificate."""
    join_addresses = [join_address_for(s) for s in split_servers(server)]
    async with asyncio.TaskGroup() as group:
        for i in range(count):
            name = f"{prefix}-{i:04d}"
            address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            runtime = FakeRuntime()
            settings = WorkerSettings(
                node_name=name, host_ip=address, poll_interval=poll_interval, backoff=CrashLoopBackoff()
            )
            directory = data_dir / name
            directory.mkdir(parents=True, exist_ok=True)
            manager = PodManager({"docker": runtime}, settings, directory)
            status = hollow_status(address, cpu, memory)
            identity = NodeCredentials(name, directory, token=token, join_addresses=join_addresses)
            session = Session(
                SessionConfig(server=server, node_name=name, labels={"node.corral.io/hollow": "true"}),
                manager,
                status,
                identity=identity,
            )
            group.create_task(manager.run())
            group.create_task(session.run())


def main() -> None:
    parser = argparse.ArgumentParser(description="Run hollow nodes against a corral server.")
    parser.add_argument("--server", required=True)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--prefix", default="hollow")
    parser.add_argument(
        "--token", default=os.environ.get("CORRAL_TOKEN", ""), help="A node join token (default: $CORRAL_TOKEN)"
    )
    args = parser.parse_args()
    if not args.token:
        parser.error("give --token (or CORRAL_TOKEN): a node join token from `corral token create`")
    logs.configure("warning")
    # On uvloop, as `corral agent` runs (agent.main.run).
    with (
        tempfile.TemporaryDirectory(prefix="corral-hollow-") as tmp,
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(run_hollow_nodes(args.server, args.nodes, Path(tmp), token=args.token, prefix=args.prefix))


if __name__ == "__main__":
    main()
