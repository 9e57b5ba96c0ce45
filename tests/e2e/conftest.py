"""Fixtures that run the real `corral` command: a server process with an
embedded etcd in a temp dir, and a helper to run CLI commands against it.

Everything is authenticated as in production: the server writes an admin
credential to the test's CLI config (XDG_CONFIG_HOME), and once it is up a
join token is created and put in the shared environment (CORRAL_TOKEN, with
the join port in CORRAL_JOIN), where `corral agent` finds both."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.cli.config import resolve_credentials
from corral.common.pki.credentials import Credentials
from tests import processes

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "tests" / "fixtures" / "manifests"


# Listening ports come from below the kernel's ephemeral range (32768-60999 by default): a port the
# kernel hands out for port 0 can become, a moment later, the local end of some client connection, and
# a server restarted on it (the kill -9 tests) would then fail with "address in use".
LISTEN_PORTS = range(20000, 32000)


def free_port() -> int:
    """A port nothing listens on now, outside the ephemeral range."""
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 20000-32000")


@dataclass
class Cli:
    env: dict[str, str]

    def run(self, *args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral.cli.main", *args],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )


@dataclass
class ServerProcess:
    data_dir: Path
    address: str
    env: dict[str, str]
    log: Path
    # More `corral server` options, e.g. ("--metrics-listen", "127.0.0.1:9999").
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None)
    # Where agents join (TLS, with a token).
    join_address: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")

    def start(self) -> None:
        self.proc = processes.spawn(
            [
                "server",
                "--listen",
                self.address,
                "--join-listen",
                self.join_address,
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            self.log,
            self.env,
        )
        self.wait_ready()
        if "CORRAL_TOKEN" not in self.env:
            self.env["CORRAL_TOKEN"] = self.create_token()
        self.env["CORRAL_JOIN"] = self.join_address

    def create_token(self, *args: str) -> str:
        """A new join token (``args``: more `corral token create` options)."""
        result = Cli(self.env).run("token", "create", "--ttl", "2h", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        cli = Cli(self.env)
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            if cli.run("get", "deployments", "-A", timeout=20).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        processes.kill9(self.proc)

    def stop(self) -> None:
        processes.stop(self.proc)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    for name in ("CORRAL_SERVER", "CORRAL_TOKEN", "CORRAL_JOIN", "CORRAL_CONFIG"):
        env.pop(name, None)
    return env


# `corral server` options for a cluster running process-runtime pods: only the privileged
# pod security level admits them (they are commands on the host).
PROCESS_PODS = ("--pod-security", "privileged")


@pytest.fixture
def server_args() -> tuple[str, ...]:
    """More options of the test server; a module running process-runtime pods overrides this
    fixture to return PROCESS_PODS."""
    return ()


@pytest.fixture
def server(tmp_path: Path, cli_env: dict[str, str], server_args: tuple[str, ...]) -> Iterator[ServerProcess]:
    address = f"127.0.0.1:{free_port()}"
    env = {**cli_env, "CORRAL_SERVER": address}
    if "--cluster-cidr" not in server_args:
        # Pod subnets apart from any other test cluster's on this box (Docker refuses overlapping networks).
        server_args = (*server_args, "--cluster-cidr", f"10.{random.randrange(100, 200)}.0.0/16")
    proc = ServerProcess(tmp_path / "data", address, env, tmp_path / "server.log", extra_args=server_args)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def cli(server: ServerProcess) -> Cli:
    return Cli(server.env)


@dataclass
class AgentProcess:
    server: str
    name: str
    data_dir: Path
    env: dict[str, str]
    log: Path
    runtimes: tuple[str, ...] = ("docker", "process")
    # More `corral agent` options, e.g. ("--proxy-address", "127.0.0.2").
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> None:
        args = [
            "agent",
            "--server",
            self.server,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--restart-backoff",
            "1",
            "--restart-backoff-max",
            "4",
            "--poll-interval",
            "0.5",
            *self.extra_args,
        ]
        for runtime in self.runtimes:
            args += ["--runtime", runtime]
        args += process_runtime_args(self.runtimes)
        self.proc = processes.spawn(args, self.log, self.env)

    def kill9(self) -> None:
        assert self.proc is not None
        processes.kill9(self.proc)

    def stop(self) -> None:
        processes.stop(self.proc)


def process_runtime_args(runtimes: tuple[str, ...]) -> list[str]:
    """Tests run as root: an agent offering the process runtime must be told it may (its pods run as 65534)."""
    return ["--allow-process-runtime-as-root"] if "process" in runtimes and os.geteuid() == 0 else []


def remove_node_containers(node: str) -> None:
    """Remove every Docker container an agent of this test left behind, and its pod network."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=io.corral.node={node}"], capture_output=True, text=True, check=False
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", f"corral-{node}"], capture_output=True, check=False)
    remove_pod_network_rules(node)


def remove_pod_network_rules(node: str) -> None:
    """Remove the rules the agent made for its pod subnet (`corral-podnet-<node>`): DOCKER-USER's
    accept rules and the nat POSTROUTING rule that skips Docker's masquerade."""
    for table, chain in (("filter", "DOCKER-USER"), ("nat", "POSTROUTING")):
        listed = subprocess.run(
            ["iptables", "-w", "-t", table, "-S", chain], capture_output=True, text=True, check=False
        )
        for line in listed.stdout.splitlines():
            parts = shlex.split(line)
            if parts[:2] == ["-A", chain] and f"corral-podnet-{node}" in parts:
                subprocess.run(
                    ["iptables", "-w", "-t", table, "-D", chain, *parts[2:]], capture_output=True, check=False
                )


def kill_process_containers(data_dir: Path) -> None:
    """Kill what the process runtime of this test's agent still runs."""
    for meta_file in data_dir.glob("process/containers/*/meta.json"):
        pid = json.loads(meta_file.read_text()).get("pid")
        if isinstance(pid, int) and pid > 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    """The runtimes the test agent offers; a test module overrides this fixture to change it."""
    return ("docker", "process")


@pytest.fixture
def agent(server: ServerProcess, tmp_path: Path, agent_runtimes: tuple[str, ...]) -> Iterator[AgentProcess]:
    name = f"node-{os.getpid()}-{time.monotonic_ns() % 100000}"
    proc = AgentProcess(
        server.address, name, tmp_path / "agent", server.env, tmp_path / "agent.log", runtimes=agent_runtimes
    )
    proc.start()
    cli = Cli(server.env)
    wait_until(lambda: cli.run("get", "node", name).returncode == 0, 30, "agent registered", proc.log)
    yield proc
    proc.stop()
    remove_node_containers(name)
    kill_process_containers(proc.data_dir)


def registered(cli: Cli, node: str) -> bool:
    return cli.run("get", "node", node).returncode == 0


@contextlib.contextmanager
def running_agents(
    server: ServerProcess,
    tmp_path: Path,
    agents: Sequence[tuple[str, tuple[str, ...]]],
    runtimes: tuple[str, ...] = ("docker",),
) -> Iterator[list[AgentProcess]]:
    """The agents (name, extra arguments) started together and registered; at exit stopped, and
    what they left behind (containers, pod network, process pods) removed."""
    procs: list[AgentProcess] = []
    try:
        for name, args in agents:
            proc = AgentProcess(
                server.address,
                name,
                tmp_path / name,
                server.env,
                tmp_path / f"{name}.log",
                runtimes=runtimes,
                extra_args=args,
            )
            proc.start()
            procs.append(proc)
        cli = Cli(server.env)
        for proc in procs:
            wait_until(functools.partial(registered, cli, proc.name), 30, f"{proc.name} registered", proc.log)
        yield procs
    finally:
        for proc in procs:
            proc.stop()
            remove_node_containers(proc.name)
            if "process" in runtimes:
                kill_process_containers(proc.data_dir)


def cli_credentials(env: dict[str, str]) -> Credentials:
    """The admin credentials `corral server` wrote to the CLI config of ``env`` (for a Python client)."""
    return resolve_credentials(Path(env["XDG_CONFIG_HOME"]) / "corral" / "config.yaml")


def wait_until(check: Callable[[], object], timeout: float, what: str, log: Path | None = None) -> object:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
