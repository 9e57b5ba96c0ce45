"""The gRPC ObjectService: a thin shell over `ObjectApi`.

Unwraps `Object` envelopes, calls the handler, wraps the answer, and turns
`ApiError`s into gRPC statuses through `status.abort` (the one mapping table).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import Message

from controlplane.apiserver.errors import ApiError, BadRequestError
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi
from controlplane.apiserver.status import abort
from controlplane.store.objects import Change
from protos.corral.v1 import api_pb2, api_pb2_grpc
from protos.kinds import UnknownKindError, unwrap, wrap

Context = grpc.aio.ServicerContext[object, object]

_RESULTS = {
    ApplyOutcome.CREATED: api_pb2.APPLY_RESULT_CREATED,
    ApplyOutcome.CONFIGURED: api_pb2.APPLY_RESULT_CONFIGURED,
    ApplyOutcome.UNCHANGED: api_pb2.APPLY_RESULT_UNCHANGED,
}
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


class ObjectService(api_pb2_grpc.ObjectServiceServicer):
    def __init__(self, api: ObjectApi) -> None:
        self.api = api

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
                request.kind, request.namespace, selector=request.label_selector,
                limit=request.limit, continue_token=getattr(request, "continue"))
        except ApiError as e:
            await abort(context, e)
        response = api_pb2.ListResponse(
            items=[wrap(o) for o in result.items], resource_version=str(result.resource_version))
        setattr(response, "continue", result.continue_token)
        return response

    async def Watch(
        self, request: api_pb2.WatchRequest, context: Context
    ) -> AsyncIterator[api_pb2.WatchEvent]:
        try:
            async for item in self.api.watch(
                request.kind, request.namespace, selector=request.label_selector,
                resource_version=request.resource_version,
            ):
                yield api_pb2.WatchEvent(type=_CHANGES[item.change], object=wrap(item.obj))
        except ApiError as e:
            await abort(context, e)

    async def Delete(self, request: api_pb2.DeleteRequest, context: Context) -> api_pb2.ObjectResponse:
        try:
            obj = await self.api.delete(request.kind, request.namespace, request.name, uid=request.uid)
        except ApiError as e:
            await abort(context, e)
        return api_pb2.ObjectResponse(object=wrap(obj))
