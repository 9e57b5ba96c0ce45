"""Errors of the runtime boundary. Adapters translate their SDK's exceptions
into these, in one place each, with `raise ... from`.

    RuntimeFailure
    ├── ImageNotFoundError       the image is not present and may not / cannot be pulled
    ├── ImagePullError           a pull was attempted and failed (engine's message)
    ├── ContainerStartError      create or start failed (bad command, port taken, …)
    │   └── ContainerConfigError the spec asks for what this runtime refuses or cannot do
    │                            (a volume on the process runtime, runAsNonRoot with a root image, …)
    ├── ContainerNotFoundError   no container with that id
    └── RuntimeUnavailableError  the engine does not answer (temporary)
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    temporary = False


class ImageNotFoundError(RuntimeFailure):
    pass


class ImagePullError(RuntimeFailure):
    pass


class ContainerStartError(RuntimeFailure):
    pass


class ContainerConfigError(ContainerStartError):
    """Permanent for this spec: the pod shows CreateContainerConfigError."""


class ContainerNotFoundError(RuntimeFailure):
    pass


class RuntimeUnavailableError(RuntimeFailure):
    temporary = True
