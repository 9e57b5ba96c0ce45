"""What `corral agent` keeps out of memory: libraries only other commands need (the YAML reader, the
API client), the table of kinds (every kind's module) and the Docker SDK with requests (the runtime
speaks the Engine API itself), while the Docker runtime still reads the engine's answers and errors.
Run in a fresh interpreter, as the agent starts."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.timeout(60)

AGENT_START = """
import asyncio, json, sys
from corral.cli.main import cli  # `corral agent`: the CLI, then its agent command
from corral.cli import agent_cmd
from agent.main import open_runtimes, AgentConfig
from agent.runtime.base import ContainerSpec
from agent.runtime.errors import RuntimeFailure

async def main():
    config = AgentConfig(server="", name="n", data_dir=None, runtimes=["docker"], docker_network=sys.argv[1])
    (runtime,) = (await open_runtimes(config)).values()
    try:
        missing = await runtime.inspect("corral-test-no-such-container")
        try:  # the engine's error text
            await runtime.run(ContainerSpec(name="corral-test-footprint", image="corral-test/absent:1"))
            error = ""
        except RuntimeFailure as e:
            error = str(e)
    finally:
        await runtime.close()
    loaded = [m for m in ("yaml", "corral.client", "charset_normalizer", "requests", "urllib3", "docker",
                          "protos.kinds", "protos.corral.v1.api_pb2")
              if sys.modules.get(m)]
    print(json.dumps({"loaded": loaded, "missing": missing, "error": error}))

asyncio.run(main())
"""


def test_the_agent_loads_neither_the_yaml_reader_nor_the_api_client_nor_the_docker_sdk() -> None:
    network = f"corral-test-footprint-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run([sys.executable, "-c", AGENT_START, network], capture_output=True, text=True, check=False)
    finally:
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["loaded"] == []
    assert result["missing"] is None
    assert "No such image: corral-test/absent:1" in result["error"]
