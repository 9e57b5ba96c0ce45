"""`corral get endpoints [NAME…]` (also `ep`): the ready endpoints behind
Services, as kubectl shows Endpoints, from the control plane's service
registry (DiscoveryService.ListEndpoints) rather than from stored objects.
An endpoint is a node address and the host port the pod published there;
only ready ones are listed. Routes carry no age, so there is no AGE column.

    NAME   ENDPOINTS
    web    10.0.0.1:31001,10.0.0.2:31007,10.0.0.3:31002 + 2 more...
"""

from __future__ import annotations

import sys
from typing import Any

import click

from corral import client as api
from corral.cli import printers
from protos import codec
from protos.corral.v1 import discovery_pb2
from protos.wellknown import DEFAULT_NAMESPACE

NAMES = frozenset({"endpoints", "endpoint", "ep"})
# kubectl shows this many addresses, then "+ N more...".
SHOWN = 3


def is_endpoints(kind_arg: str) -> bool:
    """Whether `get` was asked for endpoints (`endpoints`, `ep`, `ep/web`)."""
    return kind_arg.partition("/")[0].strip().lower() in NAMES


def _shortened(items: list[str]) -> str:
    if not items:
        return "<none>"
    text = ",".join(items[:SHOWN])
    return f"{text} + {len(items) - SHOWN} more..." if len(items) > SHOWN else text


def _unique(values: list[str]) -> list[str]:
    return sorted(set(values) - {""})


def _backends(route: discovery_pb2.ServiceRoute) -> list[discovery_pb2.RouteBackend]:
    """A proxied Service's backends per port; a headless Service's endpoints (pod addresses)."""
    return list(route.endpoints) if route.headless else [b for p in route.ports for b in p.backends]


def endpoints_text(route: discovery_pb2.ServiceRoute) -> str:
    if route.headless:
        return _shortened([b.address for b in route.endpoints])
    return _shortened([f"{b.address}:{b.port}" for p in route.ports for b in p.backends])


def table(routes: list[discovery_pb2.ServiceRoute], *, wide: bool, all_namespaces: bool) -> str:
    headers = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "ENDPOINTS"]
    headers += ["PODS", "NODES"] if wide else []
    rows = []
    for route in routes:
        row = ([route.namespace] if all_namespaces else []) + [route.name, endpoints_text(route)]
        if wide:
            backends = _backends(route)
            row += [_shortened(_unique([b.pod for b in backends])), _shortened(_unique([b.node for b in backends]))]
        rows.append(row)
    return printers.format_table(rows, headers)


def document(routes: list[discovery_pb2.ServiceRoute], *, single: bool) -> dict[str, Any]:
    if single and len(routes) == 1:
        return codec.to_dict(routes[0])
    return {"kind": "List", "items": [codec.to_dict(r) for r in routes]}


def get_endpoints(
    c: api.Client,
    kind_arg: str,
    names: tuple[str, ...],
    *,
    namespace: str,
    all_namespaces: bool,
    output: str | None,
    selector: str,
    watch: bool,
) -> None:
    if watch:
        raise click.UsageError("--watch is not supported for endpoints; use `corral get endpointslices -w`")
    if selector:
        raise click.UsageError("--selector is not supported for endpoints; name the Services instead")
    _, _, first = kind_arg.partition("/")
    wanted = [n for n in (first, *names) if n]
    ns = "" if all_namespaces else (namespace or DEFAULT_NAMESPACE)
    routes: list[discovery_pb2.ServiceRoute] = []
    missing: list[str] = []
    if not wanted:
        routes = c.list_endpoints(ns, all_namespaces=all_namespaces)
    for name in wanted:
        try:
            routes += c.list_endpoints(ns, name, all_namespaces=all_namespaces)
        except api.NotFoundError as e:
            missing.append(str(e))
    _print(routes, output, all_namespaces=all_namespaces, single=len(wanted) == 1)
    for message in missing:
        click.echo(f"Error from server (NotFound): {message}", err=True)
    if missing:
        sys.exit(1)


def _print(routes: list[discovery_pb2.ServiceRoute], output: str | None, *, all_namespaces: bool, single: bool) -> None:
    if output in ("yaml", "json"):
        click.echo(printers.dump(document(routes, single=single), output))
    elif output == "name":
        for route in routes:
            click.echo(f"endpoints/{route.name}")
    elif not routes:
        click.echo("No resources found.", err=True)
    else:
        click.echo(table(routes, wide=output == "wide", all_namespaces=all_namespaces))
