"""The gRPC DiscoveryService: the ready endpoints behind Services, for the CLI
and tools (`corral get endpoints`), read from the route hub."""

from __future__ import annotations

import grpc

from controlplane.apiserver.errors import NotFoundError
from controlplane.apiserver.status import abort
from controlplane.registry.hub import RouteHub
from protos.corral.v1 import discovery_pb2, discovery_pb2_grpc
from protos.wellknown import DEFAULT_NAMESPACE

Context = grpc.aio.ServicerContext[object, object]


class DiscoveryService(discovery_pb2_grpc.DiscoveryServiceServicer):
    def __init__(self, hub: RouteHub) -> None:
        self.hub = hub

    async def ListEndpoints(
        self, request: discovery_pb2.ListEndpointsRequest, context: Context
    ) -> discovery_pb2.ListEndpointsResponse:
        await self.hub.ready.wait()
        self.hub.refresh()
        try:
            routes = self.list_endpoints(request)
        except NotFoundError as e:
            await abort(context, e)
        return discovery_pb2.ListEndpointsResponse(services=routes)

    def list_endpoints(self, request: discovery_pb2.ListEndpointsRequest) -> list[discovery_pb2.ServiceRoute]:
        """One Service by name, every Service of a namespace, or of all namespaces."""
        everywhere = request.all_namespaces and not request.namespace
        namespace = request.namespace or DEFAULT_NAMESPACE
        if not request.name:
            return self.hub.routes(None if everywhere else namespace)
        if everywhere:
            found = [r for r in self.hub.routes() if r.name == request.name]
            if found:
                return found
            raise NotFoundError(f'endpoints "{request.name}" not found: no Service of that name in any namespace')
        route = self.hub.route(namespace, request.name)
        if route is None:
            raise NotFoundError(
                f'endpoints "{request.name}" not found: no Service "{request.name}" in namespace "{namespace}"'
            )
        return [route]
