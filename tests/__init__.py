"""corral's tests. ``corral`` is imported first: it sets gRPC's fork mode, which must precede ``import grpc``."""

import corral  # noqa: F401
