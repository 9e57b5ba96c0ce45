"""The Python client for the corral API (used by the CLI).

    ClientError
    ├── ServerUnavailableError   nothing answers at the address (names it)
    ├── NotFoundError            NOT_FOUND
    ├── AlreadyExistsError       ALREADY_EXISTS
    ├── ConflictError            ABORTED: stale resourceVersion
    ├── InvalidError             INVALID_ARGUMENT, with every field cause
    ├── GoneError                OUT_OF_RANGE: watch from a compacted revision
    ├── UnauthenticatedError     UNAUTHENTICATED: the credentials are not (or no longer) valid
    ├── PermissionDeniedError    PERMISSION_DENIED: valid credentials, not allowed to do that
    │                            (or forbidden by a rule: content in a terminating namespace)
    └── TooManyRequestsError     RESOURCE_EXHAUSTED with reason TooManyRequests: refused for
                                 now (an eviction its PodDisruptionBudget does not allow); retry

Calls are synchronous (a blocking gRPC channel) over mutual TLS with the
caller's `Credentials` (cluster CA, client certificate and key); lists follow
continue tokens, so callers always get every item.

Several servers (replicas of one control plane) are given as ``"a:7443,b:7443"``:
a call that finds its server UNAVAILABLE is tried on the next one, and the
client stays with the server that answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from corral.common.pki.credentials import Credentials, channel_options
from protos.corral.v1 import (
    api_pb2,
    api_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    metrics_pb2,
    metrics_pb2_grpc,
    policy_pb2,
    security_pb2,
    security_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)
from protos.kinds import unwrap, wrap

DETAILS_KEY = "corral-error-details-bin"
DEFAULT_TIMEOUT = 30.0


class ClientError(Exception):
    pass


class ServerUnavailableError(ClientError):
    pass


class NotFoundError(ClientError):
    pass


class AlreadyExistsError(ClientError):
    pass


class ConflictError(ClientError):
    pass


class GoneError(ClientError):
    pass


class UnauthenticatedError(ClientError):
    pass


class PermissionDeniedError(ClientError):
    pass


class TooManyRequestsError(ClientError):
    """Refused for now; `causes` say why (the disruption budget that does not allow it)."""

    def __init__(self, message: str, causes: list[FieldCause]) -> None:
        super().__init__(message)
        self.causes = causes


class UnimplementedError(ClientError):
    """The server does not have this call (an older version)."""


@dataclass(frozen=True)
class FieldCause:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidError(ClientError):
    def __init__(self, message: str, causes: list[FieldCause]) -> None:
        super().__init__(message)
        self.causes = causes


_CODES: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.OUT_OF_RANGE: GoneError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
}


def _details(error: grpc.Call) -> api_pb2.ErrorDetails:
    for item in error.trailing_metadata() or ():
        key, value = item
        if key == DETAILS_KEY and isinstance(value, bytes):
            return api_pb2.ErrorDetails.FromString(value)
    return api_pb2.ErrorDetails()


def _causes(error: grpc.Call) -> list[FieldCause]:
    return [FieldCause(c.field, c.message) for c in _details(error).causes]


def split_servers(servers: str) -> list[str]:
    """``"a:7443, b:7443"`` as ``["a:7443", "b:7443"]``."""
    return [s.strip() for s in servers.split(",") if s.strip()]


def _unavailable(error: grpc.RpcError) -> bool:
    return isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE


def _translate(error: grpc.RpcError, address: str) -> ClientError:
    if not isinstance(error, grpc.Call):
        return ClientError(str(error))
    code = error.code()
    message = error.details() or str(code)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ServerUnavailableError(
            f"cannot reach the corral server at {address}: {message}\n"
            "Start one with `corral server --data-dir DIR`, or point at "
            "another with --server HOST:PORT or CORRAL_SERVER. If it is up, its TLS "
            "handshake may have refused these credentials (another cluster's CA?): "
            "`corral login` gets new ones."
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidError(message, _causes(error))
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _details(error).reason == "TooManyRequests":
        return TooManyRequestsError(message, _causes(error))
    return _CODES.get(code, ClientError)(message)


# Named here because Client.list shadows `list` in the class body.
Routes = list[discovery_pb2.ServiceRoute]
NodeMetricsItems = list[metrics_pb2.NodeMetrics]
TokenInfos = list[security_pb2.JoinTokenInfo]
PodMetricsItems = list[metrics_pb2.PodMetrics]


@dataclass(frozen=True)
class ApplyResult:
    obj: Message
    # "created", "configured" or "unchanged".
    outcome: str


_OUTCOMES = {
    api_pb2.APPLY_RESULT_CREATED: "created",
    api_pb2.APPLY_RESULT_CONFIGURED: "configured",
    api_pb2.APPLY_RESULT_UNCHANGED: "unchanged",
}


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    obj: Message


class Client:
    def __init__(self, address: str, credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """``address``: ``host:port``, or several, comma-separated, tried in turn."""
        self.addresses = split_servers(address) or [address]
        self.credentials = credentials
        self.timeout = timeout
        self._index = 0
        self._connect()

    @property
    def address(self) -> str:
        """The server in use."""
        return self.addresses[self._index]

    def _connect(self) -> None:
        self._channel = grpc.secure_channel(
            self.address,
            self.credentials.channel_credentials(),
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024), *channel_options()],
        )
        self._stub = api_pb2_grpc.ObjectServiceStub(self._channel)
        self._discovery = discovery_pb2_grpc.DiscoveryServiceStub(self._channel)
        self._metrics = metrics_pb2_grpc.MetricsServiceStub(self._channel)
        self._security = security_pb2_grpc.SecurityServiceStub(self._channel)
        self._status = status_pb2_grpc.StatusServiceStub(self._channel)

    def _next_server(self) -> None:
        """Move to the next server (for this call's retry, or the next call)."""
        if len(self.addresses) > 1:
            self._channel.close()
            self._index = (self._index + 1) % len(self.addresses)
            self._connect()

    def _tried(self) -> str:
        return ", ".join(self.addresses)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Message, *, service: str = "_stub") -> Message:
        """One unary call on `service` (the stub's attribute name), trying the next server on UNAVAILABLE."""
        for attempt in range(len(self.addresses)):
            try:
                result: Message = getattr(getattr(self, service), method)(request, timeout=self.timeout)
            except grpc.RpcError as e:
                if _unavailable(e) and attempt + 1 < len(self.addresses):
                    self._next_server()
                    continue
                raise _translate(e, self._tried()) from e
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _stream(self, method: str, request: Message) -> Iterator[Any]:
        """A server stream's messages. A server UNAVAILABLE before the first
        message is tried on the next; after it, the error is raised (and the
        next call starts on the next server)."""
        for attempt in range(len(self.addresses)):
            started = False
            try:
                for message in getattr(self._stub, method)(request):
                    started = True
                    yield message
                return
            except grpc.RpcError as e:
                if not _unavailable(e):
                    raise _translate(e, self.address) from e
                self._next_server()
                if started or attempt + 1 == len(self.addresses):
                    raise _translate(e, self._tried()) from e

    def apply(self, obj: Message, *, dry_run: bool = False) -> ApplyResult:
        r = self._call("Apply", api_pb2.ApplyRequest(object=wrap(obj), dry_run=dry_run))
        assert isinstance(r, api_pb2.ApplyResponse)
        return ApplyResult(unwrap(r.object)[1], _OUTCOMES.get(r.result, "configured"))

    def create(self, obj: Message, *, dry_run: bool = False) -> Message:
        r = self._call("Create", api_pb2.CreateRequest(object=wrap(obj), dry_run=dry_run))
        assert isinstance(r, api_pb2.ObjectResponse)
        return unwrap(r.object)[1]

    def update(self, obj: Message, *, dry_run: bool = False) -> Message:
        r = self._call("Update", api_pb2.UpdateRequest(object=wrap(obj), dry_run=dry_run))
        assert isinstance(r, api_pb2.ObjectResponse)
        return unwrap(r.object)[1]

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        r = self._call("Get", api_pb2.GetRequest(kind=kind, namespace=namespace, name=name))
        assert isinstance(r, api_pb2.ObjectResponse)
        return unwrap(r.object)[1]

    def delete(
        self, kind: str, name: str, namespace: str = "", *, uid: str = "", grace_period_seconds: int | None = None
    ) -> Message:
        """Delete an object. A running pod is deleted gracefully: the object
        comes back with a deletionTimestamp and goes once its node has stopped
        it; `grace_period_seconds` (pods; None: the pod's own) 0 deletes at once."""
        request = api_pb2.DeleteRequest(kind=kind, namespace=namespace, name=name, uid=uid)
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        r = self._call("Delete", request)
        assert isinstance(r, api_pb2.ObjectResponse)
        return unwrap(r.object)[1]

    def evict(
        self, name: str, namespace: str = "", *, uid: str = "", grace_period_seconds: int | None = None
    ) -> Message:
        """Evict a pod: delete it (gracefully) unless its PodDisruptionBudget does not allow it now
        (TooManyRequestsError: try again later)."""
        request = policy_pb2.EvictRequest(namespace=namespace, name=name, uid=uid)
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        r = self._call("Evict", request)
        assert isinstance(r, api_pb2.ObjectResponse)
        return unwrap(r.object)[1]

    def list_page(
        self,
        kind: str,
        namespace: str = "",
        *,
        selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> api_pb2.ListResponse:
        request = api_pb2.ListRequest(kind=kind, namespace=namespace, label_selector=selector, limit=limit)
        setattr(request, "continue", continue_token)
        r = self._call("List", request)
        assert isinstance(r, api_pb2.ListResponse)
        return r

    def list(
        self, kind: str, namespace: str = "", *, selector: str = "", page_size: int = 0
    ) -> tuple[list[Message], str]:
        """Every matching object (all pages) and the revision they were read at."""
        items: list[Message] = []
        token = ""
        while True:
            page = self.list_page(kind, namespace, selector=selector, limit=page_size, continue_token=token)
            items.extend(unwrap(o)[1] for o in page.items)
            token = getattr(page, "continue")
            if not token:
                return items, page.resource_version

    def watch(
        self, kind: str, namespace: str = "", *, selector: str = "", resource_version: str = ""
    ) -> Iterator[WatchEvent]:
        request = api_pb2.WatchRequest(
            kind=kind, namespace=namespace, label_selector=selector, resource_version=resource_version
        )
        names = {
            api_pb2.WatchEvent.ADDED: "ADDED",
            api_pb2.WatchEvent.MODIFIED: "MODIFIED",
            api_pb2.WatchEvent.DELETED: "DELETED",
        }
        try:
            for batch in self._stream("WatchBatches", request):
                for ev in batch.events:
                    yield WatchEvent(names.get(ev.type, "MODIFIED"), unwrap(ev.object)[1])
            return
        except UnimplementedError:
            pass  # a server older than WatchBatches: one event per message
        for ev in self._stream("Watch", request):
            yield WatchEvent(names.get(ev.type, "MODIFIED"), unwrap(ev.object)[1])

    def list_endpoints(self, namespace: str = "", name: str = "", *, all_namespaces: bool = False) -> Routes:
        """The ready endpoints behind one Service, a namespace's, or every namespace's."""
        request = discovery_pb2.ListEndpointsRequest(namespace=namespace, name=name, all_namespaces=all_namespaces)
        try:
            response = self._discovery.ListEndpoints(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise _translate(e, self.address) from e
        return list(response.services)

    def node_metrics(self, name: str = "") -> NodeMetricsItems:
        """Usage and allocatable of every node (or the one named); `usage` unset where none was reported."""
        r = self._call("NodeMetrics", metrics_pb2.NodeMetricsRequest(name=name), service="_metrics")
        assert isinstance(r, metrics_pb2.NodeMetricsList)
        return list(r.items)

    def pod_metrics(
        self, namespace: str = "", name: str = "", *, all_namespaces: bool = False, selector: str = ""
    ) -> PodMetricsItems:
        """Usage and requests of the pods with recent metrics (one namespace's, or every namespace's)."""
        request = metrics_pb2.PodMetricsRequest(
            namespace=namespace, all_namespaces=all_namespaces, selector=selector, name=name
        )
        r = self._call("PodMetrics", request, service="_metrics")
        assert isinstance(r, metrics_pb2.PodMetricsList)
        return list(r.items)

    def logs(
        self,
        name: str,
        namespace: str = "",
        *,
        container: str = "",
        follow: bool = False,
        tail_lines: int = 0,
        previous: bool = False,
    ) -> Iterator[bytes]:
        """A container's output, chunk by chunk; with `follow`, until interrupted."""
        request = api_pb2.LogsRequest(
            namespace=namespace, name=name, container=container, follow=follow, tail_lines=tail_lines, previous=previous
        )
        for chunk in self._stream("Logs", request):
            yield chunk.data

    # -- security: join tokens and node revocation (admins) -----------------------

    def status(self) -> status_pb2.ClusterStatus:
        """The answering replica's view of the control plane's health (its etcd, its leadership)."""
        r = self._call("GetStatus", status_pb2.GetStatusRequest(), service="_status")
        assert isinstance(r, status_pb2.ClusterStatus)
        return r

    def create_token(self, role: str, ttl_seconds: int, description: str = "") -> security_pb2.CreateTokenResponse:
        r = self._call(
            "CreateToken",
            security_pb2.CreateTokenRequest(role=role, ttl_seconds=ttl_seconds, description=description),
            service="_security",
        )
        assert isinstance(r, security_pb2.CreateTokenResponse)
        return r

    def list_tokens(self) -> TokenInfos:
        r = self._call("ListTokens", security_pb2.ListTokensRequest(), service="_security")
        assert isinstance(r, security_pb2.ListTokensResponse)
        return list(r.tokens)

    def revoke_token(self, token_id: str) -> security_pb2.JoinTokenInfo:
        r = self._call("RevokeToken", security_pb2.RevokeTokenRequest(id=token_id), service="_security")
        assert isinstance(r, security_pb2.RevokeTokenResponse)
        return r.info

    def revoke_node(self, node_name: str) -> security_pb2.RevokeNodeResponse:
        r = self._call("RevokeNode", security_pb2.RevokeNodeRequest(node_name=node_name), service="_security")
        assert isinstance(r, security_pb2.RevokeNodeResponse)
        return r
