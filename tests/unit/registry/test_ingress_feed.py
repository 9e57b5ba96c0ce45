"""IngressFeed over informers on the memory store: the hub's ingress table follows
Ingresses, Services and Secrets, and only TLS Secrets an Ingress names are sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.informer import Informer
from controlplane.registry.hub import RouteHub
from controlplane.registry.ingress_feed import IngressFeed
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import ingress_pb2, secret_pb2, service_pb2
from protos.ingresses import CONTROLLER, IS_DEFAULT_CLASS
from protos.kinds import by_kind

WAIT = 5.0


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


@pytest.fixture
async def feed() -> AsyncIterator[tuple[ObjectApi, RouteHub]]:
    objects = ObjectStore(MemoryStore())
    informers = {
        k: Informer(objects, by_kind(k)) for k in ("Service", "EndpointSlice", "Ingress", "IngressClass", "Secret")
    }
    hub = RouteHub(informers["Service"], informers["EndpointSlice"], coalesce=0.01)
    ingress_feed = IngressFeed(
        hub,
        ingresses=informers["Ingress"],
        classes=informers["IngressClass"],
        services=informers["Service"],
        secrets=informers["Secret"],
        coalesce=0.01,
    )
    api = ObjectApi(objects)
    klass = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=CONTROLLER))
    klass.metadata.name = "corral"
    klass.metadata.annotations[IS_DEFAULT_CLASS] = "true"
    await api.create(klass)
    tasks = [asyncio.create_task(i.run()) for i in informers.values()]
    tasks += [asyncio.create_task(hub.run()), asyncio.create_task(ingress_feed.run())]
    try:
        yield api, hub
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_table_follows_ingresses_services_and_secrets(feed: tuple[ObjectApi, RouteHub]) -> None:
    api, hub = feed
    ing = ingress_pb2.Ingress()
    ing.metadata.name = "web"
    ing.spec.tls.add(hosts=["a.test"], secret_name="a-tls")
    p = ing.spec.rules.add(host="a.test").http.paths.add(path="/", path_type="Prefix")
    p.backend.service.name, p.backend.service.port.number = "web", 80
    await api.create(ing)
    unrelated = secret_pb2.Secret(type="kubernetes.io/tls", data={"tls.crt": b"X", "tls.key": b"Y"})
    unrelated.metadata.name = "unrelated"
    await api.create(unrelated)

    def backend() -> ingress_pb2.IngressRouteBackend | None:
        table = hub.ingress
        return table.hosts[0].paths[0].backend if table is not None and table.hosts else None

    await wait_for(lambda: (b := backend()) is not None and b.problem != "", "a route without its Service")
    assert hub.ingress is not None and list(hub.ingress.hosts_without_certificate) == ["a.test"]
    svc = service_pb2.Service()
    svc.metadata.name = "web"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(name="http", port=80)
    await api.create(svc)
    await wait_for(lambda: (b := backend()) is not None and b.port_name == "http" and not b.problem, "the port named")
    secret = secret_pb2.Secret(type="kubernetes.io/tls", data={"tls.crt": b"CERT", "tls.key": b"KEY"})
    secret.metadata.name = "a-tls"
    await api.create(secret)
    await wait_for(lambda: hub.ingress is not None and len(hub.ingress.certificates) == 1, "the certificate")
    assert [c.secret for c in hub.ingress.certificates] == ["default/a-tls"]  # never the unrelated one
    await api.delete("Ingress", "default", "web")
    await wait_for(lambda: hub.ingress is not None and not hub.ingress.hosts, "the Ingress gone")
    assert not hub.ingress.certificates
