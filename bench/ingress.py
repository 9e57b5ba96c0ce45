"""Benchmark: HTTPS through corral's ingress proxy against direct HTTP to the backend
and against nginx as a TLS-terminating reverse proxy, same backend, same run.

Processes on loopback:

- the backend: nginx (one worker) answering 1 KiB on 127.0.0.1;
- corral's ingress: `agent.network.ingress.proxy.IngressProxy` in a process of
  its own, one Ingress rule (host `localhost`, a self-signed certificate from a
  TLS Secret) to the backend, as in the agent: it runs and feeds the managed
  nginx (`--ingress-proxy nginx`, `worker_processes auto`: one per core of the box)
  and, in another process, the managed Caddy, which serves (with
  `GOMAXPROCS=--cores`, and `GOGC=--gogc` if given, else 200);
  one more of each as with `--proxy-mode nftables` (the upstream is the Service's
  clusterIP, one new connection per request; here the "clusterIP" is the
  backend's own address: the kernel's DNAT is left out);
- the peer: nginx (`--cores` workers) terminating TLS with the same
  certificate and proxying to the backend over keep-alive connections;
- the load: `wrk` (keep-alive, `--connections` connections, one thread),
  HTTPS to both proxies, plain HTTP to the backend (and to corral's ingress,
  to show what TLS costs it).

Cases alternate for `--rounds` rounds; the median run of each is shown: requests
per second (and the range over the rounds), p50/p99 latency, the proxy's CPU time
per request (corral: the Python process and nginx's or Caddy's processes) and
wrk's, then the RSS of the Python process and of Caddy.
nginx and wrk are installed with apt-get when missing (needs root).

    .venv/bin/python bench/ingress.py [--seconds 5] [--connections 8] [--rounds 3] [--cores 1] [--gogc 100]

Writes bench/results/ingress.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import free_port, machine, stop, wait_for, write_result  # noqa: E402 - after the repo is on the path

BODY = "x" * 1023 + "\n"


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("nginx", "nginx-light"), ("wrk", "wrk")) if shutil.which(tool) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def nginx_conf(folder: Path, name: str, server: str, workers: int = 1) -> Path:
    conf = folder / f"{name}.conf"
    conf.write_text(
        f"""
worker_processes {workers};
daemon off;
pid {folder}/{name}.pid;
error_log {folder}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/{name}-body;
    proxy_temp_path {folder}/{name}-proxy;
    fastcgi_temp_path {folder}/{name}-fastcgi;
    uwsgi_temp_path {folder}/{name}-uwsgi;
    scgi_temp_path {folder}/{name}-scgi;
    {server}
}}
"""
    )
    return conf


def start_nginx(conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["nginx", "-c", str(conf), "-e", str(conf.with_suffix(".stderr"))], start_new_session=True)


def listening(port: int) -> bool:
    return any(
        getattr(c.laddr, "port", None) == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp")
    )


def cpu_of(process: psutil.Process, default: float = 0.0) -> float:
    try:
        return float(sum(process.cpu_times()[:2]))
    except psutil.Error:
        return default


def safe_children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return list(process.children(recursive=True))
    except psutil.Error:
        return []


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    cpu_before = children_cpu()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-H", "Host: localhost", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)

    def ms(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    wrk_cpu = (children_cpu() - cpu_before) / max(1.0, rate * max(1, round(seconds))) * 1e6
    errored = 1.0 if errors else 0.0
    return {"rps": rate, "p50_ms": ms("50"), "p99_ms": ms("99"), "errors": errored, "wrk_cpu_us": wrk_cpu}


def serve_ingress(args: argparse.Namespace) -> None:
    """The ingress proxy process: one route, host localhost, to the backend."""
    import asyncio

    from agent.network.ingress.config import Upstreams
    from agent.network.ingress.proxy import IngressPorts, IngressProxy
    from controlplane.registry.ingress import ingress_plan
    from protos.corral.v1 import discovery_pb2, ingress_pb2, secret_pb2, service_pb2
    from protos.ingresses import CONTROLLER, IS_DEFAULT_CLASS

    klass = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=CONTROLLER))
    klass.metadata.name = "corral"
    klass.metadata.annotations[IS_DEFAULT_CLASS] = "true"
    ingress = ingress_pb2.Ingress()
    ingress.metadata.name, ingress.metadata.namespace = "bench", "default"
    ingress.spec.tls.add(hosts=["localhost"], secret_name="tls")
    path = ingress.spec.rules.add(host="localhost").http.paths.add(path="/", path_type="Prefix")
    path.backend.service.name, path.backend.service.port.number = "backend", 80
    service = service_pb2.Service()
    service.metadata.name, service.metadata.namespace = "backend", "default"
    service.spec.ports.add(name="http", port=80)
    secret = secret_pb2.Secret(type="kubernetes.io/tls")
    secret.metadata.name, secret.metadata.namespace = "tls", "default"
    secret.data["tls.crt"] = Path(args.cert).read_bytes()
    secret.data["tls.key"] = Path(args.key).read_bytes()
    routes = ingress_plan([ingress], [klass], {"default/backend": service}, {"default/tls": secret}).routes
    route = discovery_pb2.ServiceRoute(namespace="default", name="backend", load_balancing="RoundRobin")
    route.ports.add(name="http", port=80).backends.add(address="127.0.0.1", port=args.backend_port, pod="backend")
    if args.via_cluster_ip:  # the backend's address stands in for the clusterIP the kernel would DNAT
        route.cluster_ip, route.ports[0].port = "127.0.0.1", args.backend_port

    async def main() -> None:
        name = f"ingress-{args.data_path}" + ("-kernel" if args.via_cluster_ip else "")
        proxy = IngressProxy(
            ["127.0.0.1"],
            IngressPorts(args.http_port, args.https_port),
            directory=Path(args.cert).parent / name,
            upstreams=Upstreams(via_cluster_ip=args.via_cluster_ip),
            data_path=args.data_path,
        )
        proxy.update({"default/backend": route})
        proxy.update_ingress(routes)
        await proxy.run()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cores", type=int, default=1, help="the peer nginx's workers and Caddy's GOMAXPROCS (corral's nginx: auto)"
    )
    parser.add_argument("--gogc", default="", help="Caddy's GOGC (default: the agent's, 200)")
    parser.add_argument("--via-cluster-ip", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-path", default="caddy", help=argparse.SUPPRESS)
    parser.add_argument("--serve-ingress", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--https-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--backend-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cert", default="", help=argparse.SUPPRESS)
    parser.add_argument("--key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ingress:
        serve_ingress(args)
        return
    ensure_tools()
    from corral.common.pki.certs import cert_pem, key_pem, self_signed

    folder = Path(tempfile.mkdtemp(prefix="corral-bench-ingress-"))
    key, cert = self_signed("localhost", ["localhost"], dt.datetime.now(dt.UTC))
    (folder / "tls.crt").write_bytes(cert_pem(cert))
    (folder / "tls.key").write_bytes(key_pem(key))
    backend_port, corral_port, corral_http, nginx_port = free_port(), free_port(), free_port(), free_port()
    backend = start_nginx(
        nginx_conf(
            folder,
            "backend",
            f"server {{ listen 127.0.0.1:{backend_port}; keepalive_requests 1000000; "
            f'location / {{ default_type text/plain; return 200 "{BODY.strip()}\\n"; }} }}',
        )
    )
    peer = start_nginx(
        nginx_conf(
            folder,
            "peer",
            f"upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 64; }} "
            f"server {{ listen 127.0.0.1:{nginx_port} ssl; server_name localhost; keepalive_requests 1000000; "
            f"ssl_certificate {folder}/tls.crt; ssl_certificate_key {folder}/tls.key; "
            f"location / {{ proxy_pass http://backend; proxy_http_version 1.1; "
            f'proxy_set_header Connection ""; proxy_set_header Host $host; '
            f"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
            f"proxy_set_header X-Forwarded-Proto $scheme; }} }}",
            workers=args.cores,
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "GOMAXPROCS": str(args.cores)}
    if args.gogc:
        env["GOGC"] = args.gogc

    def start_ingress(https_port: int, http_port: int, *extra: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-ingress",
                f"--https-port={https_port}",
                f"--http-port={http_port}",
                f"--backend-port={backend_port}",
                f"--cert={folder / 'tls.crt'}",
                f"--key={folder / 'tls.key'}",
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    kernel_port, managed_port, managed_http, managed_kernel = free_port(), free_port(), free_port(), free_port()
    corral = start_ingress(corral_port, corral_http)
    kernel = start_ingress(kernel_port, 0, "--via-cluster-ip")
    managed = start_ingress(managed_port, managed_http, "--data-path=nginx")
    managed_k = start_ingress(managed_kernel, 0, "--data-path=nginx", "--via-cluster-ip")
    try:
        for port in (backend_port, corral_port, nginx_port, kernel_port, managed_port, managed_kernel):
            wait_for(lambda p=port: listening(p), 30, f"port {port} listening")  # type: ignore[misc]
        peer_workers = list(psutil.Process(peer.pid).children())

        def tree(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
            top = psutil.Process(proc.pid)
            return [top, *top.children(recursive=True)]

        ingress = tree(corral)
        agent = ingress[0]
        cases = {
            "direct (HTTP)": (f"http://127.0.0.1:{backend_port}/", []),
            "corral nginx (HTTPS)": (f"https://localhost:{managed_port}/", tree(managed)),
            "corral nginx (HTTP)": (f"http://localhost:{managed_http}/", tree(managed)),
            "corral nginx, clusterIP upstream (HTTPS)": (f"https://localhost:{managed_kernel}/", tree(managed_k)),
            "corral Caddy (HTTPS)": (f"https://localhost:{corral_port}/", ingress),
            "corral Caddy (HTTP)": (f"http://localhost:{corral_http}/", ingress),
            "corral Caddy, clusterIP upstream (HTTPS)": (f"https://localhost:{kernel_port}/", tree(kernel)),
            "nginx by hand (HTTPS)": (f"https://localhost:{nginx_port}/", peer_workers),
        }
        for url, _ in cases.values():  # warm up (TLS sessions, pools)
            wrk(url, 1, args.connections)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (url, procs) in cases.items():
                procs = [p for p in procs if p.is_running()]
                # The processes now (nginx's workers of an older config have left since the start).
                procs = list({q.pid: q for p in procs for q in (p, *safe_children(p))}.values())
                before = {p.pid: cpu_of(p) for p in procs}
                result = wrk(url, args.seconds, args.connections)
                cpu = sum(cpu_of(p, before[p.pid]) - before[p.pid] for p in procs)
                result["proxy_cpu_us_per_request"] = (
                    cpu / max(1.0, result["rps"] * args.seconds) * 1e6 if procs else 0.0
                )
                runs[name].append(result)
        rss = {
            "python_mb": agent.memory_info().rss / 2**20,
            "caddy_mb": sum(p.memory_info().rss for p in ingress[1:]) / 2**20,
            "nginx_workers_mb": sum(p.memory_info().rss for p in peer_workers) / 2**20,
        }
        medians = {name: sorted(r, key=lambda x: x["rps"])[len(r) // 2] for name, r in runs.items()}
        print(
            f"\n{machine()}; {args.connections} keep-alive connections, wrk -t1, "
            f"{args.seconds:g}s x {args.rounds} rounds, {args.cores} core(s) for each proxy"
            + (f", Caddy GOGC={args.gogc}" if args.gogc else "")
        )
        print(f"{'case':<44}{'req/s':>9}{'range':>15}{'p50 ms':>8}{'p99 ms':>8}", end="")
        print(f"{'proxy us/req':>14}{'wrk us/req':>12}")
        for name, m in medians.items():
            low, high = min(r["rps"] for r in runs[name]), max(r["rps"] for r in runs[name])
            cpu_text = f"{m['proxy_cpu_us_per_request']:.0f}" if m["proxy_cpu_us_per_request"] else "-"
            print(
                f"{name:<44}{m['rps']:>9.0f}{f'{low:.0f}-{high:.0f}':>15}{m['p50_ms']:>8.2f}{m['p99_ms']:>8.2f}"
                f"{cpu_text:>14}{m['wrk_cpu_us']:>12.0f}"
            )
        peer_rps = medians["nginx by hand (HTTPS)"]["rps"]
        for name in [n for n in cases if n.endswith("(HTTPS)") and n.startswith("corral")]:
            print(f"{name} / nginx by hand throughput: {medians[name]['rps'] / peer_rps:.2f}")
        print(
            f"RSS after the runs: the Python process {rss['python_mb']:.1f} MB, Caddy {rss['caddy_mb']:.1f} MB, "
            f"nginx workers {rss['nginx_workers_mb']:.1f} MB"
        )
        write_result(
            "ingress",
            {
                "machine": machine(),
                "connections": args.connections,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "cores": args.cores,
                "gogc": args.gogc,
                "rss": rss,
                "median": medians,
                "runs": runs,
                "nginx_rps_stdev": statistics.pstdev(r["rps"] for r in runs["nginx by hand (HTTPS)"]),
            },
        )
    finally:
        for proc in (corral, kernel, managed, managed_k, peer, backend):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        stop(corral, kernel, managed, managed_k, peer, backend)
        time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
