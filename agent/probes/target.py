"""Where and how to probe: a `pod_pb2.Probe` resolved against its container. Pure.

`resolve_probe_target` picks the probe's action and turns it into a plain
value the runner acts on:

* `HttpTarget` / `TcpTarget`: the port (a number, or the name of one of the
  container's ports) is a *container* port; the agent reaches it at `host`
  on the port `port_map` maps it to (for Docker, the published host port;
  ports not in the map are reached on the same number, as for the process
  runtime). When the probe names its own `host`, that address is used with
  the container port as given: the user said where to go.
* `GrpcTarget`: a container port given as a number (gRPC probes have no
  named ports nor `host`), mapped as above, and the health service to ask.
* `ExecTarget`: the command to run inside the container.
* `InvalidTarget`: a probe that cannot run (a named port the container does
  not have, no action, …). It always fails, with its message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protos.corral.v1 import meta_pb2, pod_pb2


@dataclass(frozen=True)
class HttpTarget:
    host: str
    port: int
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TcpTarget:
    host: str
    port: int


@dataclass(frozen=True)
class GrpcTarget:
    host: str
    port: int
    service: str = ""


@dataclass(frozen=True)
class ExecTarget:
    command: tuple[str, ...]


@dataclass(frozen=True)
class InvalidTarget:
    message: str


ProbeTarget = HttpTarget | TcpTarget | GrpcTarget | ExecTarget | InvalidTarget


class _PortError(ValueError):
    pass


def resolve_probe_target(
    probe: pod_pb2.Probe,
    container: pod_pb2.Container,
    *,
    host: str,
    port_map: Mapping[int, int],
) -> ProbeTarget:
    """The probe's action, with its port resolved and mapped to where the agent reaches it."""
    try:
        if probe.HasField("http_get"):
            return _http_target(probe.http_get, container, host=host, port_map=port_map)
        if probe.HasField("tcp_socket"):
            return _tcp_target(probe.tcp_socket, container, host=host, port_map=port_map)
        if probe.HasField("grpc"):
            return _grpc_target(probe.grpc, container, host=host, port_map=port_map)
    except _PortError as exc:
        return InvalidTarget(str(exc))
    if probe.HasField("exec"):
        return _exec_target(probe.exec)
    return InvalidTarget("probe has no action: set exec, httpGet, tcpSocket or grpc")


def _http_target(
    action: pod_pb2.HTTPGetAction,
    container: pod_pb2.Container,
    *,
    host: str,
    port_map: Mapping[int, int],
) -> ProbeTarget:
    scheme = (action.scheme or "HTTP").upper()
    if scheme not in ("HTTP", "HTTPS"):
        return InvalidTarget(f"unsupported HTTP probe scheme {action.scheme!r}")
    address, port = _address(action.host, action.port, container, host=host, port_map=port_map)
    headers = tuple((header.name, header.value) for header in action.http_headers)
    return HttpTarget(host=address, port=port, path=action.path or "/", scheme=scheme, headers=headers)


def _tcp_target(
    action: pod_pb2.TCPSocketAction,
    container: pod_pb2.Container,
    *,
    host: str,
    port_map: Mapping[int, int],
) -> ProbeTarget:
    address, port = _address(action.host, action.port, container, host=host, port_map=port_map)
    return TcpTarget(host=address, port=port)


def _grpc_target(
    action: pod_pb2.GRPCAction,
    container: pod_pb2.Container,
    *,
    host: str,
    port_map: Mapping[int, int],
) -> ProbeTarget:
    port = meta_pb2.IntOrString(int_val=action.port)
    address, mapped = _address("", port, container, host=host, port_map=port_map)
    return GrpcTarget(host=address, port=mapped, service=action.service)


def _exec_target(action: pod_pb2.ExecAction) -> ProbeTarget:
    if not action.command:
        return InvalidTarget("exec probe has no command")
    return ExecTarget(command=tuple(action.command))


def _address(
    own_host: str,
    port: meta_pb2.IntOrString,
    container: pod_pb2.Container,
    *,
    host: str,
    port_map: Mapping[int, int],
) -> tuple[str, int]:
    container_port = resolve_port(port, container)
    if own_host:
        return own_host, container_port
    return host, port_map.get(container_port, container_port)


def resolve_port(port: meta_pb2.IntOrString, container: pod_pb2.Container) -> int:
    """The container port a probe's port names; _PortError when there is none.

    As the kubelet: a string is a port name, or failing that a number written
    as a string; the result must be 1-65535.
    """
    match port.WhichOneof("value"):
        case "int_val":
            number = port.int_val
        case "str_val":
            number = _named_port(port.str_val, container)
        case _:
            raise _PortError("probe port is not set")
    if not 0 < number < 65536:
        raise _PortError(f"invalid port number: {number}")
    return number


def _named_port(name: str, container: pod_pb2.Container) -> int:
    for declared in container.ports:
        if declared.name == name:
            return declared.container_port
    if name.isdigit():
        return int(name)
    raise _PortError(f'port "{name}" not found in container')
