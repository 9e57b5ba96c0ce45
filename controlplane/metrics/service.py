"""The gRPC MetricsService (what metrics-server gives Kubernetes): node and pod
usage from the `MetricsStore`, joined with the objects they belong to.

- `NodeMetrics`: every Node (or the one named), with its allocatable cpu and
  memory for percentages; `usage` is unset for a node without fresh metrics.
- `PodMetrics`: the pods of a namespace (or all, or the one named) matching a
  label selector, read from the pod informer, that have fresh metrics from
  this pod (same uid): usage, requests summed over the containers (a limit
  stands for a missing request, as in scheduling) and new connections per
  second through the node proxies.

Metrics live in each replica's memory: a replica answers with what its own
agents report and what the other replicas relay of theirs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from controlplane.apiserver.errors import ApiError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi, parse_selector
from controlplane.apiserver.status import abort
from controlplane.informer import Informer
from controlplane.metrics.store import MetricsStore
from controlplane.scheduler.snapshot import LEAST_ALLOCATED, pod_request
from protos.corral.v1 import metrics_pb2, metrics_pb2_grpc, node_pb2, pod_pb2
from protos.quantity import cpu_millis, memory_bytes
from protos.wellknown import DEFAULT_NAMESPACE

Context = grpc.aio.ServicerContext[object, object]
NODE_PAGE = 500


def node_metrics(node: node_pb2.Node, usage: metrics_pb2.NodeUsage | None) -> metrics_pb2.NodeMetrics:
    allocatable = node.status.allocatable
    item = metrics_pb2.NodeMetrics(
        name=node.metadata.name,
        allocatable_cpu_millis=_quantity(allocatable.get("cpu", ""), cpu_millis),
        allocatable_memory_bytes=_quantity(allocatable.get("memory", ""), memory_bytes),
    )
    if usage is not None:
        item.usage.CopyFrom(usage)
    return item


def pod_metrics(
    pod: pod_pb2.Pod, usage: metrics_pb2.PodUsage, requests_per_second: float | None
) -> metrics_pb2.PodMetrics:
    requests = pod_request(pod, default_strategy=LEAST_ALLOCATED).requests
    return metrics_pb2.PodMetrics(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        usage=usage,
        request_cpu_millis=requests.cpu_millis,
        request_memory_bytes=requests.memory_bytes,
        requests_per_second=requests_per_second or 0.0,
    )


def _quantity(text: str, parse: Callable[[str], int]) -> int:
    try:
        return parse(text) if text else 0
    except ValueError:
        return 0


class MetricsService(metrics_pb2_grpc.MetricsServiceServicer):
    def __init__(
        self, store: MetricsStore, api: ObjectApi, pods: Informer, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`clock`: the monotonic clock the store's samples were recorded on."""
        self.store = store
        self.api = api
        self.pods = pods
        self.clock = clock

    async def NodeMetrics(
        self, request: metrics_pb2.NodeMetricsRequest, context: Context
    ) -> metrics_pb2.NodeMetricsList:
        try:
            nodes = await self._nodes(request.name)
        except ApiError as e:
            await abort(context, e)
        now = self.clock()
        items = [node_metrics(n, self.store.node_usage(n.metadata.name, now=now)) for n in nodes]
        return metrics_pb2.NodeMetricsList(items=sorted(items, key=lambda i: i.name))

    async def _nodes(self, name: str) -> list[node_pb2.Node]:
        if name:
            node = await self.api.get("Node", "", name)
            assert isinstance(node, node_pb2.Node)
            return [node]
        nodes: list[node_pb2.Node] = []
        token = ""
        while True:
            page = await self.api.list("Node", limit=NODE_PAGE, continue_token=token)
            nodes += [n for n in page.items if isinstance(n, node_pb2.Node)]
            token = page.continue_token
            if not token:
                return nodes

    async def PodMetrics(self, request: metrics_pb2.PodMetricsRequest, context: Context) -> metrics_pb2.PodMetricsList:
        try:
            items = await self.pod_metrics(request)
        except ApiError as e:
            await abort(context, e)
        return metrics_pb2.PodMetricsList(items=items)

    async def pod_metrics(self, request: metrics_pb2.PodMetricsRequest) -> list[metrics_pb2.PodMetrics]:
        selector = parse_selector(request.selector)
        everywhere = request.all_namespaces and not request.namespace
        namespace = request.namespace or DEFAULT_NAMESPACE
        await self.pods.synced.wait()
        pods = [
            p
            for p in self.pods.items.values()
            if isinstance(p, pod_pb2.Pod)
            and (everywhere or p.metadata.namespace == namespace)
            and (not request.name or p.metadata.name == request.name)
            and selector.matches(p.metadata.labels)
        ]
        if request.name and not pods:
            where = "any namespace" if everywhere else f'namespace "{namespace}"'
            raise NotFoundError(f'pods "{request.name}" not found in {where}')
        now = self.clock()
        items = []
        for pod in pods:
            m = pod.metadata
            usage = self.store.pod_usage(m.namespace, m.name, now=now)
            if usage is None or (usage.uid and usage.uid != m.uid):
                continue
            items.append(pod_metrics(pod, usage, self.store.pod_requests_per_second(m.namespace, m.name, now=now)))
        return sorted(items, key=lambda i: (i.namespace, i.name))
