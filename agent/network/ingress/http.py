"""The ingress proxy's HTTP side: aiohttp's server and client (HTTP/1.1; no HTTP/2).

Per request: the router picks the backend (`proxy.py`); nothing matches → 404,
a backend without a Service, port or ready endpoint → 503; plain HTTP to a
backend that asks for it → 308 to https (same host and path); otherwise the
request goes to an endpoint the Service port's `Balancer` picks, over a pool
of keep-alive connections. A connect failure ejects that endpoint and tries
another, up to `max_attempts` distinct ones (then 502); a backend that fails
after connecting (closes early, sends garbage) is a 502, not retried. The backend gets the
client's Host and `X-Forwarded-For` (the client's address appended),
`-Proto`, `-Host`, `-Port` and `X-Real-IP`; hop-by-hop headers are dropped
both ways. An `Upgrade: websocket` request is carried as a WebSocket to the
backend and relayed message by message (text, binary, ping, pong, close).

Listening: every proxy address on the HTTP and HTTPS ports; a port that
cannot be bound is logged (`ingress_port_unavailable`) and tried again every
`retry_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from agent.network.ingress.proxy import IngressProxy
from agent.network.proxy.endpoints import Backend, Balancer

log = structlog.get_logger(__name__)

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
WEBSOCKET_HEADERS = frozenset(
    ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol")
)
# Bodies up to this size are read whole (a Content-Length to the backend); larger ones stream.
BUFFER_BODY = 1024 * 1024
CHUNK = 64 * 1024
# Responses up to this size (with a Content-Length) are read whole and sent in one write.
BUFFER_RESPONSE = 64 * 1024


def _drop(headers: CIMultiDictProxy[str], extra: Iterable[str] = ()) -> CIMultiDict[str]:
    """Headers without the hop-by-hop ones (and those the Connection header lists)."""
    listed = {t.strip().lower() for v in headers.getall("Connection", []) for t in v.split(",")}
    dropped = HOP_BY_HOP | listed | set(extra)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def forwarded_headers(request: web.BaseRequest, scheme: str, port: int, extra: Iterable[str] = ()) -> CIMultiDict[str]:
    headers = _drop(request.headers, extra)
    client = request.remote or ""
    before = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{before}, {client}" if before else client
    headers["X-Real-IP"] = client
    headers["X-Forwarded-Proto"] = scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Port"] = str(port)
    return headers


class IngressHttp:
    def __init__(self, proxy: IngressProxy) -> None:
        self.proxy = proxy
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, connect=proxy.connect_timeout, sock_read=None),
            auto_decompress=False,
            # Cookies pass through as headers; no jar (aiohttp's ignores IP hosts anyway; this one costs nothing).
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )

    async def close(self) -> None:
        await self.session.close()

    def handler(self, scheme: str, port: int) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            return await self.handle(request, scheme, port)

        return handle

    async def handle(self, request: web.BaseRequest, scheme: str, port: int) -> web.StreamResponse:
        match = self.proxy.router.match(request.host, request.path)
        if match is None:
            return web.Response(status=404, text="404 Not Found: no Ingress rule matches this host and path\n")
        backend = match.backend
        if scheme == "http" and backend.ssl_redirect and self.proxy.ports.https:
            return _redirect(request, self.proxy.ports.https)
        if backend.problem:
            return web.Response(status=503, text=f"503 Service Unavailable: {backend.problem}\n")
        balancer = self.proxy.balancer(backend.service, backend.port_name)
        if balancer is None:
            return web.Response(status=503, text=f"503 Service Unavailable: {backend.service} is not known here\n")
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        body: object = None
        if not websocket and request.body_exists:
            length = request.content_length
            body = await request.read() if length is not None and length <= BUFFER_BODY else request.content
        tried: list[str] = []
        loop = asyncio.get_running_loop()
        while len(tried) < self.proxy.max_attempts:
            chosen = balancer.pick(loop.time(), exclude=tried)
            if chosen is None:
                break
            tried.append(chosen.key)
            try:
                if websocket:
                    return await self._websocket(request, chosen, scheme, port, balancer)
                return await self._forward(request, chosen, scheme, port, body, balancer)
            except aiohttp.ClientConnectorError as e:
                duration = balancer.failed(chosen.key, loop.time())
                log.warning(
                    "ingress_backend_unreachable",
                    service=backend.service,
                    backend=chosen.key,
                    pod=chosen.pod,
                    ejected_for=duration,
                    reason=str(e.os_error) if e.os_error else str(e),
                )
                if body is not None and not isinstance(body, bytes):
                    break  # a streamed body cannot be sent twice
            except (aiohttp.ClientError, TimeoutError) as e:  # connected, then the exchange failed
                log.warning("ingress_backend_failed", service=backend.service, backend=chosen.key, reason=repr(e))
                return web.Response(status=502, text="502 Bad Gateway: the backend failed to answer\n")
        if not tried:
            return web.Response(status=503, text=f"503 Service Unavailable: {backend.service} has no ready endpoint\n")
        return web.Response(status=502, text="502 Bad Gateway: no endpoint could be reached\n")

    async def _forward(
        self,
        request: web.BaseRequest,
        backend: Backend,
        scheme: str,
        port: int,
        body: object,
        balancer: Balancer,
    ) -> web.StreamResponse:
        url = f"http://{_host(backend.address)}:{backend.port}{request.raw_path}"
        headers = forwarded_headers(request, scheme, port)
        if isinstance(body, bytes):
            headers.pop("Content-Length", None)
        async with self.session.request(
            request.method, url, headers=headers, data=body, allow_redirects=False, compress=None
        ) as upstream:
            balancer.opened(backend.key)
            try:
                headers = _drop(upstream.headers)
                length = upstream.content_length
                if length is not None and length <= BUFFER_RESPONSE and request.method != "HEAD":
                    # Small: one write of headers and body (one TLS record, one system call).
                    body = await upstream.read()
                    headers.pop("Content-Length", None)
                    return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
                if length is None and request.method != "HEAD":
                    response.enable_chunked_encoding()
                await response.prepare(request)
                try:
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        await response.write(chunk)
                    await response.write_eof()
                except ConnectionResetError:  # the client went away: nothing left to answer
                    log.debug("ingress_client_gone", backend=backend.key)
                except aiohttp.ClientError as e:  # the backend broke off: the client's connection is closed
                    log.warning("ingress_backend_failed", backend=backend.key, reason=repr(e))
                    response.force_close()
                return response
            finally:
                balancer.closed(backend.key)

    async def _websocket(
        self, request: web.BaseRequest, backend: Backend, scheme: str, port: int, balancer: Balancer
    ) -> web.StreamResponse:
        url = f"http://{_host(backend.address)}:{backend.port}{request.raw_path}"
        headers = forwarded_headers(request, scheme, port, WEBSOCKET_HEADERS)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            upstream = await self.session.ws_connect(url, headers=headers, protocols=protocols, autoping=False)
        except aiohttp.WSServerHandshakeError as e:
            return web.Response(status=502, text=f"502 Bad Gateway: the backend refused the WebSocket ({e.status})\n")
        balancer.opened(backend.key)
        try:
            client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else [], autoping=False)
            await client.prepare(request)
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(client, upstream))
                group.create_task(_pump(upstream, client))
            return client
        finally:
            await upstream.close()
            balancer.closed(backend.key)


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Relay messages until either side closes, then close the other with the same code."""
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == aiohttp.WSMsgType.PONG:
            await sink.pong(message.data)
    if not sink.closed:
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _redirect(request: web.BaseRequest, https_port: int) -> web.Response:
    host = request.host.rsplit(":", 1)[0] if request.host.count(":") == 1 else request.host
    authority = host if https_port == 443 else f"{host}:{https_port}"
    return web.Response(status=308, headers={"Location": f"https://{authority}{request.raw_path}"})


async def _listen(
    server: web.Server, address: str, port: int, context: ssl.SSLContext | None, proxy: IngressProxy
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            listener = await loop.create_server(server, address, port, ssl=context, reuse_address=True, backlog=1024)
        except OSError as e:
            log.warning(
                "ingress_port_unavailable",
                address=address,
                port=port,
                reason=e.strerror or str(e),
                retry_in=proxy.retry_seconds,
            )
            await asyncio.sleep(proxy.retry_seconds)
            continue
        proxy.bound.add((address, port))
        log.info("ingress_listening", address=address, port=port, tls=context is not None)
        try:
            await asyncio.Future()
        finally:
            proxy.bound.discard((address, port))
            listener.close()


async def serve(proxy: IngressProxy) -> None:
    """Listen on every proxy address until cancelled."""
    http = IngressHttp(proxy)
    servers: list[tuple[web.Server, int, ssl.SSLContext | None]] = []
    if proxy.ports.http:
        servers.append((web.Server(http.handler("http", proxy.ports.http), access_log=None), proxy.ports.http, None))
    if proxy.ports.https and proxy.tls is not None:
        server = web.Server(http.handler("https", proxy.ports.https), access_log=None)
        servers.append((server, proxy.ports.https, proxy.tls.default))
    try:
        async with asyncio.TaskGroup() as group:
            for server, port, context in servers:
                for address in proxy.addresses:
                    group.create_task(_listen(server, address, port, context, proxy))
    finally:
        for server, _, _ in servers:
            with contextlib.suppress(Exception):
                await server.shutdown(1.0)
        await http.close()
