"""The gRPC ObjectService: a thin shell over `ObjectApi`.

Unwraps `Object` envelopes, calls the handler, wraps the answer, and turns
`ApiError`s into gRPC statuses through `status.abort` (the one mapping table).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import grpc
import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ApiError, BadRequestError, GoneError, UnavailableError
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi, WatchItem
from controlplane.apiserver.ready_batches import Bound, BufferOverflow, ready_batches
from controlplane.apiserver.status import abort
from controlplane.store.objects import Change
from controlplane.tunnels import LogsOverflowError, TunnelError, TunnelRegistry
from protos.corral.v1 import api_pb2, api_pb2_grpc, node_service_pb2, pod_pb2, policy_pb2
from protos.kinds import UnknownKindError, unwrap, wrap

log = structlog.get_logger(__name__)

Context = grpc.aio.ServicerContext[object, object]

_RESULTS = {
    ApplyOutcome.CREATED: api_pb2.APPLY_RESULT_CREATED,
    ApplyOutcome.CONFIGURED: api_pb2.APPLY_RESULT_CONFIGURED,
    ApplyOutcome.UNCHANGED: api_pb2.APPLY_RESULT_UNCHANGED,
}
# At most this many events, and about this many bytes, in one WatchBatch (a
# single larger object still goes, alone; clients take messages up to 8 MiB).
WATCH_BATCH_EVENTS = 500
WATCH_BATCH_BYTES = 1024 * 1024
# A watch whose client stops reading is ended (OUT_OF_RANGE: list again) once
# this many events, or this many bytes of objects, wait to be sent to it.
WATCH_BUFFER_EVENTS = 10_000
WATCH_BUFFER_BYTES = 16 * 1024 * 1024

_CHANGES = {
    Change.ADDED: api_pb2.WatchEvent.ADDED,
    Change.MODIFIED: api_pb2.WatchEvent.MODIFIED,
    Change.DELETED: api_pb2.WatchEvent.DELETED,
}


def _unwrapped(envelope: api_pb2.Object) -> Message:
    try:
        return unwrap(envelope)[1]
    except UnknownKindError as e:
        raise BadRequestError("request carries no object") from e


def _container_for(pod: pod_pb2.Pod, requested: str) -> str:
    names = [c.name for c in pod.spec.containers]
    inits = [c.name for c in pod.spec.init_containers]
    if requested:
        if requested not in names + inits:
            also = f" or one of the init containers: {' '.join(inits)}" if inits else ""
            raise BadRequestError(
                f"container {requested} is not valid for pod {pod.metadata.name}; choose one of: {' '.join(names)}"
                + also
            )
        return requested
    if len(names) != 1:
        raise BadRequestError(
            f"a container name must be specified for pod {pod.metadata.name}, choose one of: {' '.join(names)}"
        )
    return names[0]


Batch = list[WatchItem]  # named here because ObjectService.list shadows `list` in the class body


def _item_size(item: WatchItem) -> int:
    return item.obj.ByteSize()


def watch_bound(events: int = WATCH_BUFFER_EVENTS, size: int = WATCH_BUFFER_BYTES) -> Bound[WatchItem]:
    return Bound(events, size, _item_size)


class ObjectService(api_pb2_grpc.ObjectServiceServicer):
    def __init__(
        self, api: ObjectApi, tunnels: TunnelRegistry | None = None, *, watch_limit: Bound[WatchItem] | None = None
    ) -> None:
        self.api = api
        self.tunnels = tunnels or TunnelRegistry()
        self.watch_limit = watch_limit or watch_bound()

    async def _watched(self, request: api_pb2.WatchRequest, max_items: int) -> AsyncGenerator[Batch, None]:
        """The watch's events, as lists of what is ready; `GoneError` once too many wait for the client.

        What exists when a watch without a resourceVersion starts is read at once and sent as the
        client takes it (it is not counted against the bound); only the changes after it are."""
        version = request.resource_version
        if not version:
            existing, revision = await self.api.watch_start(
                request.kind, request.namespace, selector=request.label_selector
            )
            for i in range(0, len(existing), max_items):
                yield existing[i : i + max_items]
            version = str(revision)
        events = self.api.watch(
            request.kind, request.namespace, selector=request.label_selector, resource_version=version
        )

        def cut_off(e: BufferOverflow) -> None:
            log.warning(
                "watch_cut_off",
                kind=request.kind,
                namespace=request.namespace,
                buffered_events=e.items,
                buffered_bytes=e.bytes,
                max_events=self.watch_limit.items,
                max_bytes=self.watch_limit.bytes,
            )

        try:
            async for items in ready_batches(events, max_items, self.watch_limit, on_overflow=cut_off):
                yield items
        except BufferOverflow as e:
            raise GoneError(
                f"watch of {request.kind or 'objects'} closed: the client fell behind by more than "
                f"{self.watch_limit.items} events or {self.watch_limit.bytes} bytes; "
                f"list again and watch from the list's resourceVersion"
            ) from e

    async def Apply(self, request: api_pb2.ApplyRequest, context: Context) -> api_pb2.ApplyResponse:
        try:
            obj, outcome = await self.api.apply(_unwrapped(request.object), dry_run=request.dry_run)
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ApplyResponse(object=wrap(obj), result=_RESULTS[outcome])

    async def Create(self, request: api_pb2.CreateRequest, context: Context) -> api_pb2.ObjectResponse:
        try:
            obj = await self.api.create(_unwrapped(request.object), dry_run=request.dry_run)
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ObjectResponse(object=wrap(obj))

    async def Update(self, request: api_pb2.UpdateRequest, context: Context) -> api_pb2.ObjectResponse:
        try:
            obj = await self.api.update(_unwrapped(request.object), dry_run=request.dry_run)
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ObjectResponse(object=wrap(obj))

    async def Get(self, request: api_pb2.GetRequest, context: Context) -> api_pb2.ObjectResponse:
        try:
            obj = await self.api.get(request.kind, request.namespace, request.name)
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ObjectResponse(object=wrap(obj))

    async def List(self, request: api_pb2.ListRequest, context: Context) -> api_pb2.ListResponse:
        try:
            result = await self.api.list(
                request.kind,
                request.namespace,
                selector=request.label_selector,
                limit=request.limit,
                continue_token=getattr(request, "continue"),
            )
        except ApiError as e:
            await abort(context, e)
        response = api_pb2.ListResponse(
            items=[wrap(o) for o in result.items], resource_version=str(result.resource_version)
        )
        setattr(response, "continue", result.continue_token)
        return response

    async def Watch(self, request: api_pb2.WatchRequest, context: Context) -> AsyncIterator[api_pb2.WatchEvent]:
        try:
            async with contextlib.aclosing(self._watched(request, WATCH_BATCH_EVENTS)) as batches:
                async for items in batches:
                    for item in items:
                        yield api_pb2.WatchEvent(type=_CHANGES[item.change], object=wrap(item.obj))
        except ApiError as e:
            await abort(context, e)

    async def WatchBatches(self, request: api_pb2.WatchRequest, context: Context) -> AsyncIterator[api_pb2.WatchBatch]:
        try:
            async with contextlib.aclosing(self._watched(request, WATCH_BATCH_EVENTS)) as batches:
                async for items in batches:
                    for batch in _watch_batches(items):
                        yield batch
        except ApiError as e:
            await abort(context, e)

    async def Delete(self, request: api_pb2.DeleteRequest, context: Context) -> api_pb2.ObjectResponse:
        try:
            grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
            obj = await self.api.delete(
                request.kind, request.namespace, request.name, uid=request.uid, grace_period_seconds=grace
            )
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ObjectResponse(object=wrap(obj))

    async def Evict(self, request: policy_pb2.EvictRequest, context: Context) -> api_pb2.ObjectResponse:
        try:
            grace = request.grace_period_seconds if request.HasField("grace_period_seconds") else None
            obj = await self.api.evict(request.namespace, request.name, uid=request.uid, grace_period_seconds=grace)
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ObjectResponse(object=wrap(obj))

    async def Logs(self, request: api_pb2.LogsRequest, context: Context) -> AsyncIterator[api_pb2.LogsChunk]:
        try:
            pod = await self.api.get("Pod", request.namespace, request.name)
            assert isinstance(pod, pod_pb2.Pod)
            container = _container_for(pod, request.container)
            if not pod.spec.node_name:
                raise BadRequestError(f"pod {pod.metadata.name} is not running on a node yet")
            ask = node_service_pb2.LogRequest(
                namespace=pod.metadata.namespace,
                pod_name=pod.metadata.name,
                pod_uid=pod.metadata.uid,
                container=container,
                follow=request.follow,
                tail_lines=request.tail_lines,
                previous=request.previous,
            )
            try:
                async for data in self.tunnels.logs(pod.spec.node_name, ask):
                    yield api_pb2.LogsChunk(data=data)
            except LogsOverflowError as e:
                raise GoneError(str(e)) from e
            except TunnelError as e:
                raise UnavailableError(str(e)) from e
        except ApiError as e:
            await abort(context, e)


def _watch_batches(items: list[WatchItem]) -> Iterator[api_pb2.WatchBatch]:
    """``items`` as WatchBatch messages of about WATCH_BATCH_BYTES at most."""
    batch, size = api_pb2.WatchBatch(), 0
    for item in items:
        event = api_pb2.WatchEvent(type=_CHANGES[item.change], object=wrap(item.obj))
        n = event.ByteSize()
        if batch.events and size + n > WATCH_BATCH_BYTES:
            yield batch
            batch, size = api_pb2.WatchBatch(), 0
        batch.events.append(event)
        size += n
    if batch.events:
        yield batch
