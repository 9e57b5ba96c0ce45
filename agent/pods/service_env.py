"""What a pod's containers get to find Services: env vars and DNS settings.

The env vars are Kubernetes' (and Docker links') for every Service of the
pod's namespace known when the container is created, with NAME the Service
name upper-cased and "-" turned into "_":

    NAME_SERVICE_HOST=<host>              NAME_PORT=tcp://<host>:<first port>
    NAME_SERVICE_PORT=<first port>        NAME_PORT_<p>_TCP=tcp://<host>:<p>
    NAME_SERVICE_PORT_<PORTNAME>=<p>      NAME_PORT_<p>_TCP_PROTO=tcp
                                          NAME_PORT_<p>_TCP_PORT=<p>
                                          NAME_PORT_<p>_TCP_ADDR=<host>

<host> is the Service's clusterIP; for a route without one (from a control
plane before virtual IPs) it is where the pod reaches the node proxy: the
Docker pod network's gateway for Docker pods, the first proxy address for
process pods. The ports are the Service's ports. The pod's own env wins over these. They are
not part of the container's spec hash, so a new Service does not restart
running containers (as in Kubernetes, they see it when next started).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protos.corral.v1 import discovery_pb2

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ServiceAccess:
    """How the pods of one runtime reach the node proxy and DNS server."""

    host: str
    # The DNS server they are given; "" keeps the runtime's default resolver.
    dns_server: str = ""


@dataclass(frozen=True)
class PodNetwork:
    env: dict[str, str]
    dns_servers: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()


def env_name(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def _url(protocol: str, host: str, port: int) -> str:
    return f"{protocol}://[{host}]:{port}" if ":" in host else f"{protocol}://{host}:{port}"


def service_env(routes: Iterable[discovery_pb2.ServiceRoute], proxy: str) -> dict[str, str]:
    """The env vars for these Services (the caller picks the namespace's)."""
    env: dict[str, str] = {}
    for route in sorted(routes, key=lambda r: r.name):
        ports = [p for p in route.ports if 0 < p.port < 65536]
        if not ports:
            continue
        name = env_name(route.name)
        first = ports[0]
        host = route.cluster_ip or proxy
        env[f"{name}_SERVICE_HOST"] = host
        env[f"{name}_SERVICE_PORT"] = str(first.port)
        env[f"{name}_PORT"] = _url((first.protocol or "TCP").lower(), host, first.port)
        for port in ports:
            protocol = (port.protocol or "TCP").lower()
            if port.name:
                env[f"{name}_SERVICE_PORT_{env_name(port.name)}"] = str(port.port)
            prefix = f"{name}_PORT_{port.port}_{protocol.upper()}"
            env[prefix] = _url(protocol, host, port.port)
            env[f"{prefix}_PROTO"] = protocol
            env[f"{prefix}_PORT"] = str(port.port)
            env[f"{prefix}_ADDR"] = host
    return env


def dns_search(namespace: str) -> tuple[str, ...]:
    return (f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN)


def pod_network(routes: Iterable[discovery_pb2.ServiceRoute], namespace: str, access: ServiceAccess) -> PodNetwork:
    """Env and DNS settings for a container of a pod in `namespace`."""
    env = service_env((r for r in routes if r.namespace == namespace), access.host)
    if not access.dns_server:
        return PodNetwork(env)
    return PodNetwork(env, (access.dns_server,), dns_search(namespace))
