"""The one table from API errors to gRPC status codes, and the abort helper.

INVALID_ARGUMENT from validation (and PERMISSION_DENIED from admission) also carries every field cause in the
trailing metadata key `corral-error-details-bin` (a serialized
`corral.v1.ErrorDetails`), so clients can print one line per problem; so does
RESOURCE_EXHAUSTED from a refused eviction (reason "TooManyRequests", the
budget's cause), which tells it apart from a full database.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from controlplane.apiserver import errors
from protos.corral.v1 import api_pb2

DETAILS_KEY = "corral-error-details-bin"

CODES: dict[type[errors.ApiError], grpc.StatusCode] = {
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.ConflictError: grpc.StatusCode.ABORTED,
    errors.InvalidError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.BadRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ForbiddenError: grpc.StatusCode.PERMISSION_DENIED,
    errors.TooManyRequestsError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.GoneError: grpc.StatusCode.OUT_OF_RANGE,
    errors.StorageFullError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FencedError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
}


def code_for(error: errors.ApiError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def details_for(error: errors.ApiError) -> api_pb2.ErrorDetails | None:
    if isinstance(error, errors.InvalidError):
        reason = "Invalid"
    elif isinstance(error, errors.ForbiddenError) and error.causes:
        reason = "Forbidden"
    elif isinstance(error, errors.TooManyRequestsError):
        reason = error.reason
    else:
        return None
    return api_pb2.ErrorDetails(
        reason=reason,
        causes=[api_pb2.FieldCause(field=c.field, message=c.message) for c in error.causes],
    )


async def abort(context: grpc.aio.ServicerContext[object, object], error: errors.ApiError) -> NoReturn:
    details = details_for(error)
    if details is not None:
        context.set_trailing_metadata(((DETAILS_KEY, details.SerializeToString()),))
    await context.abort(code_for(error), str(error))
