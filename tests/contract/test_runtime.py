"""The `ContainerRuntime` contract, run against the fake, process and Docker runtimes.

Every case runs three times, on an equivalent workload for each runtime: the
same shell script as a busybox container (Docker) or a host `/bin/sh -c`
(process), and a scripted behaviour for the fake. Docker is never skipped: if
the engine or the test image is missing the `docker` cases fail and say to run
`scripts/docker-setup`.

Each test labels what it creates with its own `io.corral.test` value; the
fixture removes everything carrying it afterwards. Tests wait on conditions
with deadlines (`eventually`), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from agent.runtime.base import (
    LABEL_MANAGED,
    LABEL_POD_NAME,
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    PortMapping,
    State,
)
from agent.runtime.errors import (
    ContainerNotFoundError,
    ContainerStartError,
    ImageNotFoundError,
    ImagePullError,
    RuntimeUnavailableError,
)
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from agent.runtime.process import ProcessRuntime

T = TypeVar("T")

IMAGE = "corral-test/busybox:1"
ABSENT_IMAGE = "corral-test/absent:1"
TEST_LABEL = "io.corral.test"
WAIT = 20.0  # deadline for any condition, in seconds
GRACE = 1.0  # grace period of stops that end in SIGKILL
DOCKER_HELP = "the docker runtime needs a Docker engine and the test images: run scripts/docker-setup"
REPO_ROOT = Path(__file__).resolve().parents[2]

# The workloads, as shell scripts (Docker and process) ...
SCRIPTS = {
    "hello": "echo hello; echo second; while true; do sleep 0.1; done",
    "exit3": "echo failing; exit 3",
    "two-lines": "echo one; sleep 0.5; echo two",
    "graceful": "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    "stubborn": "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    "busy": "while :; do :; done",
}
# ... and as fake behaviours (image "fake/<workload>").
FAKE_SCRIPTS = {
    "fake/hello": FakeBehaviour(output=b"hello\nsecond\n", exec_exit_code=3, exec_output=b"out\n", exec_seconds=1.0),
    "fake/exit3": FakeBehaviour(run_seconds=0.1, exit_code=3, output=b"failing\n"),
    "fake/two-lines": FakeBehaviour(run_seconds=0.5, output=b"one\ntwo\n"),
    "fake/graceful": FakeBehaviour(output=b"ready\n", term_output=b"bye\n", term_exit_code=0),
    "fake/stubborn": FakeBehaviour(output=b"ready\n", ignore_term=True),
    "fake/http": FakeBehaviour(serve_ports=True),
    "fake/missing-command": FakeBehaviour(fail_start='exec: "/no/such/command": no such file or directory'),
    "fake/absent": FakeBehaviour(missing_image=True),
    "fake/busy": FakeBehaviour(cpu_millis=1000, memory_bytes=1 << 20),
}
# Exec commands (ignored by the fake, whose behaviour says what an exec does).
EXEC_EXIT3 = ["sh", "-c", "echo out; exit 3"]
EXEC_SLOW = ["sleep", "5"]


@dataclass
class Target:
    """One runtime under test, and how to express each workload for it."""

    kind: str
    runtime: ContainerRuntime
    test_id: str

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", TEST_LABEL: self.test_id, LABEL_POD_NAME: "web-1"}

    @property
    def image(self) -> str:
        return {"docker": IMAGE, "process": "host", "fake": "fake/hello"}[self.kind]

    @property
    def absent_image(self) -> str:
        return {"docker": ABSENT_IMAGE, "process": ABSENT_IMAGE, "fake": "fake/absent"}[self.kind]

    def name(self, workload: str) -> str:
        return f"corral-test-{self.test_id}-{workload}"

    def spec(self, workload: str, **overrides: Any) -> ContainerSpec:
        """A spec running `workload` on this runtime."""
        fields: dict[str, Any] = {"name": self.name(workload), "labels": self.labels}
        if self.kind == "fake":
            fields["image"] = f"fake/{workload}"
        elif self.kind == "docker":
            fields.update(image=IMAGE, command=["sh", "-c", SCRIPTS.get(workload, "true")])
        else:
            fields.update(image="host", command=["/bin/sh", "-c", SCRIPTS.get(workload, "true")])
        fields.update(overrides)
        return ContainerSpec(**fields)

    def http_spec(self) -> ContainerSpec:
        """A web server on a published port; host port 0 where the runtime picks one."""
        if self.kind == "docker":  # the image's default command: busybox httpd on :80
            return self.spec("http", command=[], ports=[PortMapping(80)])
        if self.kind == "fake":
            return self.spec("http", ports=[PortMapping(80)])
        port = free_port()
        server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        return self.spec("http", command=server, ports=[PortMapping(port)])

    def missing_command_spec(self) -> ContainerSpec:
        if self.kind == "fake":
            return self.spec("missing-command")
        return self.spec("missing-command", command=["/no/such/command"])


# -- helpers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str) -> T:
    """Poll `probe` until `ok` holds for its value; fail after WAIT seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        value = await probe()
        if ok(value):
            return value
        if loop.time() > deadline:
            pytest.fail(f"gave up after {WAIT:g}s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(0.05)


async def read_logs(runtime: ContainerRuntime, container_id: str, *, tail: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in runtime.logs(container_id, tail=tail)])


async def wait_for_output(target: Target, container_id: str, text: bytes) -> bytes:
    return await eventually(
        lambda: read_logs(target.runtime, container_id), lambda out: text in out, f"{text!r} in the logs"
    )


async def wait_until_exited(target: Target, container_id: str) -> ContainerInfo:
    info = await eventually(
        lambda: target.runtime.inspect(container_id),
        lambda i: i is not None and i.state is State.EXITED,
        f"container {container_id} to exit",
    )
    assert info is not None
    return info


async def log_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "docker-logs"]


async def http_status(port: int) -> bytes:
    """The status line of GET / on 127.0.0.1:port, b"" if nothing answers (yet)."""
    return await fetch("127.0.0.1", port)


# -- fixtures -----------------------------------------------------------------------


async def connect_docker(network: str = "") -> ContainerRuntime:
    from agent.runtime.docker import DockerRuntime

    try:
        runtime = await DockerRuntime.connect(network=network)
    except RuntimeUnavailableError as exc:
        pytest.fail(f"{DOCKER_HELP} ({exc})")
    try:
        await runtime.ensure_image(IMAGE, "Never")
    except ImageNotFoundError as exc:
        await runtime.close()
        pytest.fail(f"{DOCKER_HELP} ({exc})")
    return runtime


@pytest.fixture(params=["fake", "process", "docker"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """A runtime of each kind; everything the test labelled is removed afterwards."""
    kind: str = request.param
    if kind == "fake":
        runtime: ContainerRuntime = FakeRuntime(FAKE_SCRIPTS)
    elif kind == "process":
        runtime = ProcessRuntime(tmp_path / "process-runtime")
    else:
        runtime = await connect_docker()
    target = Target(kind, runtime, uuid.uuid4().hex[:12])
    try:
        yield target
    finally:
        for info in await runtime.list({TEST_LABEL: target.test_id}):
            await runtime.remove(info.id)
        await runtime.close()


# -- run, inspect, list ---------------------------------------------------------------


async def test_run_reports_a_running_container_with_labels_and_name(target: Target) -> None:
    spec = target.spec("hello")

    info = await target.runtime.run(spec)

    assert info.state is State.RUNNING
    assert info.name == spec.name
    assert dict(info.labels).items() >= spec.labels.items()
    assert isinstance(info.started_at, datetime) and info.started_at.tzinfo is not None
    assert info.exit_code is None and info.finished_at is None
    assert await target.runtime.inspect(info.id) == info


async def test_list_finds_containers_by_all_their_labels(target: Target) -> None:
    mine = await target.runtime.run(target.spec("hello"))
    theirs = await target.runtime.run(target.spec("graceful", labels={**target.labels, LABEL_POD_NAME: "web-2"}))

    web_1 = await target.runtime.list(target.labels)
    web_any = await target.runtime.list({TEST_LABEL: target.test_id})
    nobody = await target.runtime.list({**target.labels, TEST_LABEL: "nobody"})

    assert [i.id for i in web_1] == [mine.id]
    assert {i.id for i in web_any} == {mine.id, theirs.id}
    assert nobody == []


async def test_a_name_in_use_cannot_be_run_again(target: Target) -> None:
    await target.runtime.run(target.spec("hello"))

    with pytest.raises(ContainerStartError):
        await target.runtime.run(target.spec("hello"))


async def test_an_unknown_id_is_none_or_not_found(target: Target) -> None:
    unknown = f"corral-test-{target.test_id}-no-such-container"

    assert await target.runtime.inspect(unknown) is None
    await target.runtime.remove(unknown)  # missing is fine
    with pytest.raises(ContainerNotFoundError):
        await target.runtime.stop(unknown, grace_seconds=GRACE)
    with pytest.raises(ContainerNotFoundError):
        await target.runtime.exec(unknown, EXEC_EXIT3, timeout=5)
    with pytest.raises(ContainerNotFoundError):
        await read_logs(target.runtime, unknown)


# -- logs ---------------------------------------------------------------------------


async def test_logs_hold_the_output_and_tail_limits_it(target: Target) -> None:
    info = await target.runtime.run(target.spec("hello"))

    everything = await wait_for_output(target, info.id, b"second\n")

    assert everything == b"hello\nsecond\n"
    assert await read_logs(target.runtime, info.id, tail=1) == b"second\n"
    assert await read_logs(target.runtime, info.id, tail=0) == b""


async def test_following_logs_streams_until_the_container_exits(target: Target) -> None:
    info = await target.runtime.run(target.spec("two-lines"))

    async def follow() -> bytes:
        return b"".join([chunk async for chunk in target.runtime.logs(info.id, follow=True)])

    output = await asyncio.wait_for(follow(), timeout=WAIT)

    assert output == b"one\ntwo\n"
    assert (await wait_until_exited(target, info.id)).exit_code == 0


async def test_leaving_a_followed_log_early_is_clean(target: Target) -> None:
    info = await target.runtime.run(target.spec("hello"))
    stream = target.runtime.logs(info.id, follow=True)

    first = await asyncio.wait_for(anext(stream), timeout=WAIT)
    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()

    assert first.startswith(b"hello\n")
    await eventually(log_threads, lambda names: not names, "the log-reading thread to end")
    assert (await target.runtime.inspect(info.id)) is not None


# -- exit ---------------------------------------------------------------------------


async def test_an_exited_container_reports_its_exit_code_and_reason(target: Target) -> None:
    info = await target.runtime.run(target.spec("exit3"))

    exited = await wait_until_exited(target, info.id)

    assert exited.exit_code == 3
    assert exited.reason == "Error"
    assert exited.started_at is not None and exited.finished_at is not None
    assert exited.finished_at >= exited.started_at
    assert [i.state for i in await target.runtime.list(target.labels)] == [State.EXITED]
    assert await read_logs(target.runtime, info.id) == b"failing\n"


# -- stop and remove ----------------------------------------------------------------


async def test_stop_lets_a_process_handle_sigterm(target: Target) -> None:
    info = await target.runtime.run(target.spec("graceful"))
    await wait_for_output(target, info.id, b"ready\n")

    await target.runtime.stop(info.id, grace_seconds=5)

    stopped = await wait_until_exited(target, info.id)
    assert stopped.exit_code == 0
    assert stopped.reason == "Completed"
    assert (await read_logs(target.runtime, info.id)).endswith(b"bye\n")
    if isinstance(target.runtime, FakeRuntime):
        assert target.runtime.signals_sent(info.id) == ["SIGTERM"]


async def test_stop_kills_a_process_ignoring_sigterm_after_the_grace_period(target: Target) -> None:
    info = await target.runtime.run(target.spec("stubborn"))
    await wait_for_output(target, info.id, b"ready\n")

    await target.runtime.stop(info.id, grace_seconds=GRACE)

    stopped = await wait_until_exited(target, info.id)
    assert stopped.exit_code == 128 + signal.SIGKILL
    assert stopped.reason == "Error"
    assert b"bye" not in await read_logs(target.runtime, info.id)
    if isinstance(target.runtime, FakeRuntime):
        assert target.runtime.signals_sent(info.id) == ["SIGTERM", "SIGKILL"]


async def test_stopping_a_stopped_container_is_fine(target: Target) -> None:
    info = await target.runtime.run(target.spec("exit3"))
    await wait_until_exited(target, info.id)

    await target.runtime.stop(info.id, grace_seconds=GRACE)

    assert (await wait_until_exited(target, info.id)).exit_code == 3


async def test_remove_forgets_the_container(target: Target) -> None:
    info = await target.runtime.run(target.spec("hello"))

    await target.runtime.remove(info.id)

    assert await target.runtime.inspect(info.id) is None
    assert await target.runtime.list(target.labels) == []
    await target.runtime.remove(info.id)  # missing is fine


# -- exec ---------------------------------------------------------------------------


async def test_exec_returns_exit_code_and_output(target: Target) -> None:
    info = await target.runtime.run(target.spec("hello"))

    result = await target.runtime.exec(info.id, EXEC_EXIT3, timeout=10)

    assert result.exit_code == 3
    assert result.output == b"out\n"


async def test_exec_running_out_of_time_returns_124(target: Target) -> None:
    info = await target.runtime.run(target.spec("hello"))

    result = await asyncio.wait_for(target.runtime.exec(info.id, EXEC_SLOW, timeout=0.3), timeout=WAIT)

    assert result.exit_code == 124


# -- the pod network ----------------------------------------------------------------


async def test_pod_gateway_is_an_ipv4_address_or_none_and_stable(target: Target) -> None:
    gateway = await target.runtime.pod_gateway()

    assert gateway is None or ipaddress.ip_address(gateway).version == 4
    assert await target.runtime.pod_gateway() == gateway


async def test_dns_settings_do_not_stop_a_container(target: Target) -> None:
    spec = target.spec("hello", dns_servers=["127.0.0.1"], dns_search=["default.svc.cluster.local"])

    info = await target.runtime.run(spec)

    await wait_for_output(target, info.id, b"hello")


# -- ports --------------------------------------------------------------------------


async def test_a_published_port_answers(target: Target) -> None:
    spec = target.http_spec()

    info = await target.runtime.run(spec)

    [port] = info.ports
    assert port.container_port == spec.ports[0].container_port
    assert port.host_port != 0  # the bound port is reported, also when the spec said 0
    status = await eventually(lambda: http_status(port.host_port), lambda s: b" 200 " in s, "an HTTP 200")
    assert status.startswith(b"HTTP/1.")


async def test_a_port_taken_on_the_host_fails_the_start(target: Target) -> None:
    with socket.socket() as blocker:
        blocker.bind(("0.0.0.0", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        container_port = {"docker": 80, "fake": 80, "process": taken}[target.kind]
        spec = target.http_spec()
        spec = replace(spec, ports=[PortMapping(container_port, taken)])

        with pytest.raises(ContainerStartError) as error:
            await target.runtime.run(spec)

    assert str(taken) in str(error.value)  # the message names the port
    assert await target.runtime.list(target.labels) == []  # nothing half-created is left


# -- images and start failures ------------------------------------------------------


async def test_a_missing_image_cannot_be_pulled_or_used(target: Target) -> None:
    if target.kind == "process":  # images do not apply: ensure_image is a no-op
        for policy in ("Never", "IfNotPresent", "Always"):
            await target.runtime.ensure_image(target.absent_image, policy)
        return

    with pytest.raises(ImagePullError) as pull_error:
        await target.runtime.ensure_image(target.absent_image, "IfNotPresent")
    with pytest.raises(ImageNotFoundError):
        await target.runtime.ensure_image(target.absent_image, "Never")

    assert str(pull_error.value)


async def test_a_present_image_is_used_whatever_the_policy(target: Target) -> None:
    with capture_logs() as events:
        for policy in ("Never", "IfNotPresent", "Always"):
            await target.runtime.ensure_image(target.image, policy)

    if target.kind == "docker":  # "Always" could not pull (no registry) and fell back
        assert any(e["event"] == "image_pull_failed_using_local" and e["log_level"] == "warning" for e in events)


async def test_a_command_that_does_not_exist_fails_to_start(target: Target) -> None:
    with pytest.raises(ContainerStartError) as error:
        await target.runtime.run(target.missing_command_spec())

    assert "/no/such/command" in str(error.value)
    assert await target.runtime.list(target.labels) == []  # nothing half-created is left


# -- process runtime only -----------------------------------------------------------

AGENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from agent.runtime.base import ContainerSpec
from agent.runtime.process import ProcessRuntime

async def main():
    spec = ContainerSpec(name=sys.argv[2], image="host", command=["/bin/sh", "-c", sys.argv[3]],
                         labels={"io.corral.test": sys.argv[4]})
    info = await ProcessRuntime(Path(sys.argv[1])).run(spec)
    print("container-id", info.id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def read_container_id(agent: subprocess.Popen[bytes]) -> str:
    """The id the agent printed (its stdout also carries its log lines)."""
    assert agent.stdout is not None
    for line in agent.stdout:
        if line.startswith(b"container-id "):
            return line.split()[1].decode()
    pytest.fail("the agent exited without starting the container")


async def test_process_containers_survive_the_agent_and_are_adopted(tmp_path: Path) -> None:
    data_dir, release, test_id = tmp_path / "data", tmp_path / "release", uuid.uuid4().hex[:12]
    script = f"echo started; while [ ! -e {release} ]; do sleep 0.05; done; exit 7"
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_SCRIPT, str(data_dir), f"adopted-{test_id}", script, test_id],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )
    try:
        container_id = await asyncio.wait_for(asyncio.to_thread(read_container_id, agent), timeout=WAIT)
    finally:
        os.killpg(agent.pid, signal.SIGKILL)  # the agent and anything in its process group
        agent.wait()
        assert agent.stdout is not None
        agent.stdout.close()
    runtime = ProcessRuntime(data_dir)  # the restarted agent
    try:
        [adopted] = await runtime.list({TEST_LABEL: test_id})
        assert adopted.id == container_id
        assert adopted.state is State.RUNNING
        assert await read_logs(runtime, container_id) == b"started\n"

        release.touch()
        exited = await wait_until_exited(Target("process", runtime, test_id), container_id)

        assert exited.exit_code == 7
        assert exited.reason == "Error"
        meta = json.loads((data_dir / "containers" / container_id / "meta.json").read_text())
        assert meta["exit_code"] == 7
    finally:
        release.touch()
        for info in await runtime.list({TEST_LABEL: test_id}):
            await runtime.remove(info.id)


async def test_process_memory_limit_caps_the_address_space(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)
    target = Target("process", runtime, uuid.uuid4().hex[:12])
    spec = target.spec("limits", command=["/bin/sh", "-c", "ulimit -v"], memory_limit_bytes=256 * 1024 * 1024)

    info = await runtime.run(spec)

    assert (await wait_until_exited(target, info.id)).exit_code == 0
    assert await read_logs(runtime, info.id) == b"262144\n"  # KiB
    await runtime.remove(info.id)


async def test_process_ports_cannot_be_remapped(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)
    target = Target("process", runtime, uuid.uuid4().hex[:12])

    with pytest.raises(ContainerStartError, match="host port"):
        await runtime.run(target.spec("hello", ports=[PortMapping(8080, 9090)]))

    assert await runtime.list({TEST_LABEL: target.test_id}) == []


async def test_process_runtime_needs_a_command(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)

    with pytest.raises(ContainerStartError, match=r"needs spec.containers\[\].command"):
        await runtime.run(ContainerSpec(name="no-command", image="host"))


# -- docker runtime only ------------------------------------------------------------


async def test_docker_sets_limits_and_hardening() -> None:
    import docker  # type: ignore[import-untyped]

    runtime = await connect_docker()
    target = Target("docker", runtime, uuid.uuid4().hex[:12])
    spec = target.spec("hello", cpu_limit_millis=500, memory_limit_bytes=64 * 1024 * 1024)
    client = docker.from_env()
    try:
        info = await runtime.run(spec)
        host_config = (await asyncio.to_thread(client.api.inspect_container, info.id))["HostConfig"]

        assert host_config["NanoCpus"] == 500_000_000
        assert host_config["Memory"] == 64 * 1024 * 1024
        assert "no-new-privileges" in host_config["SecurityOpt"]
        assert host_config["Privileged"] is False
        assert host_config["RestartPolicy"]["Name"] in ("no", "")
        assert host_config["LogConfig"]["Type"] == "json-file"
    finally:
        for leftover in await runtime.list({TEST_LABEL: target.test_id}):
            await runtime.remove(leftover.id)
        await runtime.close()
        client.close()


async def test_docker_gives_the_pods_hostname_and_domain() -> None:
    runtime = await connect_docker()
    target = Target("docker", runtime, uuid.uuid4().hex[:12])
    spec = target.spec(
        "named",
        command=["sh", "-c", "hostname; cat /etc/hosts"],
        hostname="db-0",
        domainname="db.default.svc.cluster.local",
    )
    try:
        info = await runtime.run(spec)
        await wait_until_exited(target, info.id)
        lines = (await read_logs(runtime, info.id)).decode().splitlines()
        assert lines[0] == "db-0"
        assert any(line.split()[1:] == ["db-0.db.default.svc.cluster.local", "db-0"] for line in lines[1:] if line)
    finally:
        for leftover in await runtime.list({TEST_LABEL: target.test_id}):
            await runtime.remove(leftover.id)
        await runtime.close()


async def test_docker_engine_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    from agent.runtime.docker import DockerRuntime

    with pytest.raises(RuntimeUnavailableError) as error:
        await DockerRuntime.connect(f"unix://{tmp_path}/no-engine.sock")

    assert error.value.temporary


async def test_docker_pod_network_gateway_dns_and_published_ports() -> None:
    """Pods join the agent's bridge network, reach the host at its gateway, and resolve through
    the DNS server given (Docker's embedded resolver forwards to it); published ports still work."""
    import docker

    from agent.network.dns.server import DnsServer
    from protos.corral.v1 import discovery_pb2

    test_id = uuid.uuid4().hex[:12]
    network = f"corral-test-{test_id}"
    runtime = await connect_docker(network=network)
    target = Target("docker", runtime, test_id)
    client = docker.from_env()
    try:
        gateway = await runtime.pod_gateway()
        assert gateway is not None and ipaddress.ip_address(gateway).version == 4
        assert await runtime.pod_gateway() == gateway
        attrs = await asyncio.to_thread(client.api.inspect_network, network)
        assert attrs["Labels"] == {LABEL_MANAGED: "true"} and attrs["Driver"] == "bridge"

        web = await runtime.run(target.http_spec())
        status = await eventually(lambda: http_status(web.ports[0].host_port), lambda s: b" 200 " in s, "HTTP 200")
        assert status.startswith(b"HTTP/1.")
        assert ipaddress.ip_address(web.ip) in ipaddress.ip_network(attrs["IPAM"]["Config"][0]["Subnet"])

        async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hello from the host\n")
            await writer.drain()
            writer.close()

        host_server = await asyncio.start_server(hello, gateway, 0)
        host_port = host_server.sockets[0].getsockname()[1]
        dns = DnsServer([(gateway, 53)], upstreams=[])
        dns.update({"default/web": discovery_pb2.ServiceRoute(namespace="default", name="web")})
        dns_task = asyncio.create_task(dns.run())
        try:
            script = f"cat /etc/resolv.conf; nslookup web.default; nc {gateway} {host_port} </dev/null"
            spec = target.spec(
                "pod-network",
                command=["sh", "-c", script],
                dns_servers=[gateway],
                dns_search=["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            )
            info = await runtime.run(spec)
            await wait_until_exited(target, info.id)
            output = (await read_logs(runtime, info.id)).decode()
        finally:
            dns_task.cancel()
            await asyncio.gather(dns_task, return_exceptions=True)
            host_server.close()
        host_config = (await asyncio.to_thread(client.api.inspect_container, info.id))["HostConfig"]

        assert "search default.svc.cluster.local svc.cluster.local cluster.local" in output
        assert f"Address: {gateway}" in output  # the DNS server answered through Docker's resolver
        assert "hello from the host" in output
        assert host_config["Dns"] == [gateway]
        assert host_config["NetworkMode"] == network
    finally:
        for leftover in await runtime.list({TEST_LABEL: test_id}):
            await runtime.remove(leftover.id)
        await runtime.close()
        with contextlib.suppress(docker.errors.NotFound):
            await asyncio.to_thread(client.api.remove_network, network)
        client.close()


async def test_docker_pod_network_on_the_pod_subnet_publishes_only_host_ports() -> None:
    """Given the node's pod subnet, the bridge is made (again, when it exists empty with another
    subnet) with that subnet and its .1 as gateway; a container port without hostPort is published
    nowhere and answers at the container's own address, a hostPort is published on that port."""
    import random

    import docker

    from agent.runtime.docker import DockerRuntime

    test_id = uuid.uuid4().hex[:12]
    network = f"corral-test-{test_id}"
    rng = random.Random()
    subnet = f"10.{rng.randrange(100, 200)}.{rng.randrange(0, 256)}.0/24"
    client = docker.from_env()
    # An empty network of corral's with Docker's choice of subnet, as an earlier version made it.
    await asyncio.to_thread(client.api.create_network, network, driver="bridge", labels={LABEL_MANAGED: "true"})
    runtime = await DockerRuntime.connect(network=network, pod_cidr=subnet)
    target = Target("docker", runtime, test_id)
    try:
        gateway = await runtime.pod_gateway()
        attrs = await asyncio.to_thread(client.api.inspect_network, network)
        assert attrs["IPAM"]["Config"][0]["Subnet"] == subnet and gateway == subnet.replace(".0/24", ".1")
        assert runtime.routed
        hidden = await runtime.run(target.http_spec())
        assert hidden.ports == [] and ipaddress.ip_address(hidden.ip) in ipaddress.ip_network(subnet)
        page = await eventually(lambda: fetch(hidden.ip, 80), lambda s: b" 200 " in s, "HTTP 200 at the pod address")
        assert page.startswith(b"HTTP/1.")
        exposed_port = free_port()
        exposed = await runtime.run(
            target.spec("http-exposed", command=[], ports=[PortMapping(80, exposed_port), PortMapping(81)])
        )
        assert [(p.container_port, p.host_port) for p in exposed.ports] == [(80, exposed_port)]
        await eventually(lambda: http_status(exposed_port), lambda s: b" 200 " in s, "HTTP 200 on the hostPort")
    finally:
        for leftover in await runtime.list({TEST_LABEL: test_id}):
            await runtime.remove(leftover.id)
        await runtime.close()
        with contextlib.suppress(docker.errors.NotFound):
            await asyncio.to_thread(client.api.remove_network, network)
        client.close()


async def fetch(address: str, port: int) -> bytes:
    """The status line of GET / at address:port, b"" if nothing answers (yet)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout=2)
    except (OSError, TimeoutError):
        return b""
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=2)
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.close()


# -- stats ---------------------------------------------------------------------------


async def test_stats_show_cpu_time_growing_and_memory_while_running(target: Target) -> None:
    info = await target.runtime.run(target.spec("busy"))

    first = await eventually(
        lambda: target.runtime.stats(info.id), lambda s: s is not None and s.cpu_ns > 0, "CPU time used"
    )
    assert first is not None
    later = await eventually(
        lambda: target.runtime.stats(info.id), lambda s: s is not None and s.cpu_ns > first.cpu_ns, "CPU time growing"
    )
    assert later is not None and later.memory_bytes > 0
    await target.runtime.stop(info.id, grace_seconds=GRACE)
    await wait_until_exited(target, info.id)

    assert await target.runtime.stats(info.id) is None, "no stats once it has exited"
    await target.runtime.remove(info.id)
    assert await target.runtime.stats(info.id) is None, "no stats once removed"


async def test_stats_of_an_unknown_container_are_none(target: Target) -> None:
    assert await target.runtime.stats("0123456789ab") is None


# -- fake runtime only --------------------------------------------------------------


async def test_fake_scripts_start_failures_exec_codes_and_ports() -> None:
    runtime = FakeRuntime({"fake/flaky": FakeBehaviour()})
    spec = ContainerSpec(name="flaky", image="fake/flaky", ports=[PortMapping(80), PortMapping(81, 8081)])
    runtime.fail_next_start("fake/flaky", "no space left")

    with pytest.raises(ContainerStartError, match="no space left"):
        await runtime.run(spec)
    info = await runtime.run(spec)  # only the next start fails
    runtime.set_exec_exit_code(info.id, 1)

    assert [(p.container_port, p.host_port) for p in info.ports] == [(80, 30000), (81, 8081)]
    assert (await runtime.exec(info.id, ["true"], timeout=1)).exit_code == 1
    await runtime.stop(info.id, grace_seconds=30)  # instant, whatever the grace
    stopped = await runtime.inspect(info.id)

    assert runtime.sigterm_sent(info.id)
    assert stopped is not None and stopped.finished_at is not None
    assert stopped == replace(info, state=State.EXITED, exit_code=143, reason="Error", finished_at=stopped.finished_at)


async def test_fake_containers_exit_on_their_clock() -> None:
    now = [100.0]
    runtime = FakeRuntime({"fake/job": FakeBehaviour(run_seconds=5, exit_code=0)}, clock=lambda: now[0])
    info = await runtime.run(ContainerSpec(name="job", image="fake/job"))

    now[0] = 104.9
    running = await runtime.inspect(info.id)
    now[0] = 105.0
    exited = await runtime.inspect(info.id)

    assert running is not None and running.state is State.RUNNING
    assert exited is not None and exited.state is State.EXITED and exited.exit_code == 0
    assert exited.reason == "Completed"
    assert exited.started_at is not None and exited.finished_at is not None
    assert (exited.finished_at - exited.started_at).total_seconds() == pytest.approx(5)
