"""`corral top nodes | pods`: kubectl's columns, corral's usage against requests, and the
`metrics not available yet` error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from click.testing import CliRunner

from corral.cli.context import Context
from corral.cli.top import nodes_table, pods_table, top_group
from protos.corral.v1 import api_pb2, metrics_pb2

MI = 1024 * 1024


def node(name: str, cpu: int | None = None, memory: int = 0) -> metrics_pb2.NodeMetrics:
    item = metrics_pb2.NodeMetrics(name=name, allocatable_cpu_millis=2000, allocatable_memory_bytes=8192 * MI)
    if cpu is not None:
        item.usage.cpu_millis, item.usage.memory_bytes = cpu, memory
    return item


def pod(
    name: str,
    containers: dict[str, tuple[int, int]],
    *,
    cpu_request: int = 0,
    memory_request: int = 0,
    namespace: str = "default",
) -> metrics_pb2.PodMetrics:
    item = metrics_pb2.PodMetrics(
        namespace=namespace, name=name, request_cpu_millis=cpu_request, request_memory_bytes=memory_request
    )
    item.usage.namespace, item.usage.name = namespace, name
    for container, (cpu, memory) in containers.items():
        item.usage.containers.add(name=container, cpu_millis=cpu, memory_bytes=memory)
    return item


def test_nodes_table_shows_percent_of_allocatable_and_unknown_without_metrics() -> None:
    text = nodes_table([node("n1", 1250, 1830 * MI), node("n2")])

    assert text.splitlines() == [
        "NAME   CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%",
        "n1     1250m        62%         1830Mi          22%",
        "n2     <unknown>    <unknown>   <unknown>       <unknown>",
    ]


def test_pods_table_sums_containers_and_compares_with_requests() -> None:
    items = [
        pod("web", {"main": (400, 10 * MI), "side": (102, 2 * MI)}, cpu_request=250, memory_request=128 * MI),
        pod("job", {"main": (3, MI)}),
    ]

    assert pods_table(items).splitlines() == [
        "NAME   CPU(cores)   MEMORY(bytes)   CPU/REQ   MEM/REQ",
        "web    502m         12Mi            200%      9%",
        "job    3m           1Mi             -         -",
    ]
    assert pods_table(items, sort_by="memory", all_namespaces=True).splitlines()[1].split() == [
        "default",
        "web",
        "502m",
        "12Mi",
        "200%",
        "9%",
    ]
    assert pods_table(items, containers=True).splitlines() == [
        "POD   NAME   CPU(cores)   MEMORY(bytes)",
        "web   main   400m         10Mi",
        "web   side   102m         2Mi",
        "job   main   3m           1Mi",
    ]


@dataclass
class StubClient:
    nodes: list[metrics_pb2.NodeMetrics] = field(default_factory=list)
    pods: list[metrics_pb2.PodMetrics] = field(default_factory=list)
    stored_pods: int = 0
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def node_metrics(self, name: str = "") -> list[metrics_pb2.NodeMetrics]:
        self.calls.append(("nodes", name))
        return self.nodes

    def pod_metrics(
        self, namespace: str = "", name: str = "", *, all_namespaces: bool = False, selector: str = ""
    ) -> list[metrics_pb2.PodMetrics]:
        self.calls.append(("pods", (namespace, name, all_namespaces, selector)))
        return self.pods

    def list_page(self, kind: str, namespace: str = "", *, selector: str = "", limit: int = 0) -> api_pb2.ListResponse:
        response = api_pb2.ListResponse()
        for _ in range(self.stored_pods):
            response.items.add()
        return response


def run(stub: StubClient, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = stub  # type: ignore[assignment]
    return CliRunner().invoke(top_group, list(args), obj=context)


def test_top_nodes_and_pods_through_the_client() -> None:
    stub = StubClient(nodes=[node("n1", 500, 100 * MI)], pods=[pod("web", {"main": (7, 3 * MI)})])

    nodes = run(stub, "node", "n1")
    pods = run(stub, "po", "-n", "shop", "-l", "app=web", "--containers")

    assert nodes.exit_code == 0 and "n1     500m" in nodes.output
    assert pods.exit_code == 0 and "web   main   7m" in pods.output
    assert stub.calls == [("nodes", "n1"), ("pods", ("shop", "", False, "app=web"))]


def test_nothing_reported_yet_is_an_error() -> None:
    nodes = run(StubClient(nodes=[node("n1")]), "nodes")
    pods = run(StubClient(stored_pods=1), "pods")
    no_pods = run(StubClient(), "pods", "-A")

    assert nodes.exit_code == 1 and "error: metrics not available yet" in nodes.output
    assert pods.exit_code == 1 and "error: metrics not available yet" in pods.output
    assert no_pods.exit_code == 0 and "No resources found." in no_pods.output
