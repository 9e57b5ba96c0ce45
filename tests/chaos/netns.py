"""Agents in their own network namespaces, and the means to cut them off.

Each `NetnsNode` is a namespace joined to the host by a veth pair (host side
10.213.N.1/30, namespace side 10.213.N.2/30, lo up) with a `corral agent
--runtime process` running inside it (`ip netns exec`), advertising
10.213.N.2 and dialling the server at 10.213.N.1 (the server listens on
0.0.0.0). `cut()` blackholes the link with iptables DROP rules on the host
side of the veth (both directions: nothing is refused or reset, packets just
vanish, as on a dead network); `heal()` removes exactly those rules.

Cleanup stops the agent by its own Popen handle, kills what its process
runtime still runs (pids from its data dir), removes the rules it added and
deletes the namespace (which takes the veth pair with it). Never a pattern
kill. Needs root, `ip netns` and `iptables`; tests skip when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests import processes
from tests.e2e.conftest import kill_process_containers, process_runtime_args

SUBNET = "10.213"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def netns_missing() -> str:
    """Why namespaces cannot be used here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return ""


def _free_index() -> int:
    """A third octet / name suffix no interface or namespace of ours uses now."""
    links = _run("ip", "-o", "link", "show").stdout
    spaces = {line.split()[0] for line in _run("ip", "netns", "list").stdout.splitlines() if line.strip()}
    for n in range(10, 250):
        if f"crl{n}h:" not in links and f"crl{n}h@" not in links and f"corral-chaos-{n}" not in spaces:
            return n
    raise RuntimeError("no free 10.213.N.0/30 subnet for a test namespace")


@dataclass
class NetnsNode:
    """One agent in its own network namespace."""

    name: str
    server_port: int
    data_dir: Path
    log: Path
    env: dict[str, str]
    # The server's join port (reached at the host side of the link, as the API).
    join_port: int = 0
    index: int = 0
    proc: subprocess.Popen[bytes] | None = None
    rules: list[list[str]] = field(default_factory=list)
    created: bool = False

    @property
    def netns(self) -> str:
        return f"corral-chaos-{self.index}"

    @property
    def host_if(self) -> str:
        return f"crl{self.index}h"

    @property
    def ns_if(self) -> str:
        return f"crl{self.index}n"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET}.{self.index}.1"

    @property
    def ns_ip(self) -> str:
        return f"{SUBNET}.{self.index}.2"

    def create(self) -> None:
        self.index = _free_index()
        _run("ip", "netns", "add", self.netns)
        self.created = True
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _run("ip", "link", "set", self.ns_if, "netns", self.netns)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        inside = ("ip", "netns", "exec", self.netns)
        _run(*inside, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        _run(*inside, "ip", "link", "set", self.ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")

    def start_agent(self) -> None:
        args = [
            "agent",
            "--server",
            f"{self.host_ip}:{self.server_port}",
            "--join",
            f"{self.host_ip}:{self.join_port or self.server_port + 1}",
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--runtime",
            "process",
            *process_runtime_args(("process",)),
            "--address",
            self.ns_ip,
            "--proxy-address",
            self.ns_ip,
            "--dns-port",
            "0",
            "--metrics-listen",
            "",
            "--restart-backoff",
            "1",
            "--restart-backoff-max",
            "4",
            "--poll-interval",
            "0.5",
        ]
        self.proc = processes.spawn(args, self.log, self.env, prefix=("ip", "netns", "exec", self.netns))

    @property
    def cut_off(self) -> bool:
        return bool(self.rules)

    def cut(self) -> None:
        """Blackhole the link: drop everything to and from the namespace at the host side."""
        for rule in (["INPUT", "-i", self.host_if, "-j", "DROP"], ["OUTPUT", "-o", self.host_if, "-j", "DROP"]):
            _run("iptables", "-I", *rule)
            self.rules.append(rule)

    def heal(self) -> None:
        while self.rules:
            _run("iptables", "-D", *self.rules.pop(), check=False)

    def container_pids(self) -> dict[str, int]:
        """Container id → pid of what the process runtime runs (from its data dir)."""
        pids: dict[str, int] = {}
        for meta in self.data_dir.glob("process/containers/*/meta.json"):
            try:
                pid = json.loads(meta.read_text()).get("pid")
            except (OSError, ValueError):
                continue
            if isinstance(pid, int):
                pids[meta.parent.name] = pid
        return pids

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def destroy(self) -> None:
        self.heal()
        processes.stop(self.proc)
        kill_process_containers(self.data_dir)
        if self.created:
            _run("ip", "netns", "del", self.netns, check=False)
            _run("ip", "link", "del", self.host_if, check=False)  # gone with the namespace, normally
            self.created = False


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
