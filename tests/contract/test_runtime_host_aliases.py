"""A pod's hostAliases and downward API env in a real Docker container (Docker only: the
process runtime shares the host's /etc/hosts, which the API refuses hostAliases for)."""

from __future__ import annotations

import dataclasses
import uuid

from agent.pods.worker import build_spec
from protos.corral.v1 import pod_pb2
from tests.contract.test_runtime import IMAGE, TEST_LABEL, connect_docker, eventually, read_logs


async def test_host_aliases_and_field_ref_env_reach_a_docker_container() -> None:
    runtime = await connect_docker()
    test_id = uuid.uuid4().hex[:12]
    pod = pod_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "aliases", "default", test_id
    pod.spec.host_aliases.add(ip="10.1.2.3", hostnames=["db.internal", "db"])
    container = pod.spec.containers.add(name="app", image=IMAGE)
    container.command.extend(["sh", "-c", 'grep db.internal /etc/hosts; echo "pod=$POD node=$NODE"; sleep 60'])
    container.env.add(name="POD").value_from.field_ref.field_path = "metadata.name"
    container.env.add(name="NODE").value_from.field_ref.field_path = "spec.nodeName"
    spec = build_spec(pod, container, 0, node="n1", epoch=1, extra_env={}, host_ip="192.0.2.1")
    spec = dataclasses.replace(spec, labels={**spec.labels, TEST_LABEL: test_id})
    try:
        info = await runtime.run(spec)
        out = await eventually(
            lambda: read_logs(runtime, info.id), lambda text: b"pod=" in text, "the container's output"
        )
        assert b"10.1.2.3\tdb.internal" in out or b"10.1.2.3 db.internal" in out, out
        assert b"pod=aliases node=n1" in out, out
    finally:
        for found in await runtime.list({TEST_LABEL: test_id}):
            await runtime.remove(found.id)
        await runtime.close()
