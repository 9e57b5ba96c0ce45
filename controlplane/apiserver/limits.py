"""Size and range limits of what the API stores. Pure: no I/O.

One user's object must not be able to exhaust etcd, the control plane's memory
or a node, nor hold a number that overflows where it is used (a grace period
as a date). Each check names the field, as the rest of validation does:

- an object as stored: at most ``MAX_OBJECT_BYTES`` (1.5 MiB, etcd's default
  request limit, which is what caps an object's size in Kubernetes);
- a pod (or a workload's pod template): at most ``MAX_CONTAINERS`` containers;
  per container at most ``MAX_ENV`` environment variables, each ``NAME=value``
  at most ``MAX_ENV_VAR_BYTES`` (the kernel's limit on one environment string,
  MAX_ARG_STRLEN: a longer one could never start), and at most ``MAX_ARGS``
  command and args entries;
- any duration in seconds that is turned into a date or a timer
  (terminationGracePeriodSeconds, tolerationSeconds, a delete's
  gracePeriodSeconds): 0 to ``MAX_SECONDS`` (2^31 - 1, some 68 years);
- a resource version in a request: 0 to ``MAX_RESOURCE_VERSION`` (etcd's
  revisions are int64);
- every timestamp (a gRPC client sends raw seconds and nanos): a date of years
  1 to 9999, nanos 0 to 999,999,999, as the JSON codec admits (protobuf
  refuses to turn any other into a date, where a Lease's renewTime is read).
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from protos.corral.v1 import pod_pb2
from protos.durations import MAX_SECONDS as MAX_SECONDS

MAX_OBJECT_BYTES = 3 * 512 * 1024
MAX_CONTAINERS = 64
MAX_ENV = 1000
MAX_ENV_VAR_BYTES = 128 * 1024
MAX_ARGS = 1000
MAX_RESOURCE_VERSION = 2**63 - 1
# A Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799


class Problems(Protocol):
    def add(self, path: str, message: str) -> None: ...


def seconds_problem(value: int) -> str | None:
    """What is wrong with a duration in seconds, or None."""
    return None if 0 <= value <= MAX_SECONDS else f"must be 0-{MAX_SECONDS} seconds, got {value}"


def check_seconds(p: Problems, path: str, value: int) -> None:
    problem = seconds_problem(value)
    if problem is not None:
        p.add(path, problem)


def parse_resource_version(value: str) -> int | None:
    """A resource version from a request as a number ("": 0), or None when it is not one."""
    if not value:
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if number <= MAX_RESOURCE_VERSION else None


def check_object(p: Problems, obj: Message) -> None:
    """The size of a whole object, and its metadata.resourceVersion (a number, when set)."""
    size = obj.ByteSize()
    if size > MAX_OBJECT_BYTES:
        p.add("", f"object is too large: {size} bytes, at most {MAX_OBJECT_BYTES} are allowed")
    version = obj.metadata.resource_version  # type: ignore[attr-defined]
    if parse_resource_version(version) is None:
        p.add("metadata.resourceVersion", f'must be a number from 0 to {MAX_RESOURCE_VERSION}, got "{version}"')


def check_timestamps(p: Problems, obj: Message, path: str = "") -> None:
    """Every Timestamp set in `obj` (at any depth) is a date protobuf can convert."""
    for field, value in obj.ListFields():
        if field.message_type is None or not _holds_timestamps(field.message_type):
            continue
        at = f"{path}.{field.json_name}" if path else field.json_name
        if not field.is_repeated:
            _check_timestamp_value(p, at, value)
        elif field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                _check_timestamp_value(p, f"{at}[{key}]", item)
        else:
            for i, item in enumerate(value):
                _check_timestamp_value(p, f"{at}[{i}]", item)


def _check_timestamp_value(p: Problems, path: str, value: Message) -> None:
    if not isinstance(value, Timestamp):
        check_timestamps(p, value, path)
    elif not (MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= value.nanos <= 999_999_999):
        p.add(path, f"timestamp out of range (years 1 to 9999), got seconds {value.seconds}, nanos {value.nanos}")


_HOLDS_TIMESTAMPS: dict[str, bool] = {}


def _holds_timestamps(message: Descriptor) -> bool:
    """Whether a message of this type can hold a Timestamp (a map entry: in its value)."""
    known = _HOLDS_TIMESTAMPS.get(message.full_name)
    if known is None:
        known, seen, stack = False, set(), [message]
        while stack and not known:
            current = stack.pop()
            known = current.full_name == Timestamp.DESCRIPTOR.full_name
            if current.full_name not in seen:
                seen.add(current.full_name)
                stack += [f.message_type for f in current.fields if f.message_type is not None]
        _HOLDS_TIMESTAMPS[message.full_name] = known
    return known


def check_pod_spec(p: Problems, path: str, spec: pod_pb2.PodSpec) -> None:
    """The size limits of a pod spec, and the range of its int64 durations."""
    for field, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        if len(containers) > MAX_CONTAINERS:
            p.add(f"{path}.{field}", f"too many: must have at most {MAX_CONTAINERS} items, got {len(containers)}")
    if spec.HasField("termination_grace_period_seconds"):
        check_seconds(p, f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds)
    for i, t in enumerate(spec.tolerations):
        if t.HasField("toleration_seconds") and t.toleration_seconds > MAX_SECONDS:
            # Negative is Kubernetes' "evict at once", as 0.
            p.add(
                f"{path}.tolerations[{i}].tolerationSeconds",
                f"must be at most {MAX_SECONDS} seconds, got {t.toleration_seconds}",
            )
    for field, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, c in enumerate(containers[:MAX_CONTAINERS]):
            _check_container(p, f"{path}.{field}[{i}]", c)


def _check_container(p: Problems, path: str, c: pod_pb2.Container) -> None:
    if len(c.env) > MAX_ENV:
        p.add(f"{path}.env", f"too many: must have at most {MAX_ENV} items, got {len(c.env)}")
    for i, var in enumerate(c.env[:MAX_ENV]):
        size = len(var.name.encode()) + 1 + len(var.value.encode())
        if size > MAX_ENV_VAR_BYTES:
            p.add(
                f"{path}.env[{i}].value",
                f"too long: NAME=value must have at most {MAX_ENV_VAR_BYTES} bytes, got {size}",
            )
    for field, values in (("command", c.command), ("args", c.args)):
        if len(values) > MAX_ARGS:
            p.add(f"{path}.{field}", f"too many: must have at most {MAX_ARGS} items, got {len(values)}")
    for name, probe in (
        ("livenessProbe", c.liveness_probe),
        ("readinessProbe", c.readiness_probe),
        ("startupProbe", c.startup_probe),
    ):
        if probe.HasField("termination_grace_period_seconds"):
            check_seconds(p, f"{path}.{name}.terminationGracePeriodSeconds", probe.termination_grace_period_seconds)
