"""corral: a container orchestrator for machines you run yourself.

Importing this package switches off gRPC's fork handlers for the process (unless
``GRPC_ENABLE_FORK_SUPPORT`` is set already), so it must happen before ``grpc`` is
imported: every entry point (`corral ...`, ``python -m corral.cli.main``) starts
here. corral's processes fork only to exec (nft, etcd, process-runtime shims), and
the agent's event loop (uvloop) spawns with a real ``fork()``; with calls in flight,
gRPC's handlers then corrupt its polling state in the parent (calls that never
finish, grpc/grpc#37259), which once hung an agent before it registered. Measured
with 8 calls in flight and a spawn loop on uvloop: lost calls within a minute with
the handlers, none in 25,000 spawns without them.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
