"""The ingress ports may not be ports the agent reserves (the control plane's, its metrics)."""

from __future__ import annotations

import pytest

from agent.network.ingress.proxy import IngressPorts
from agent.network.stack import ReservedIngressPort, check_ingress_ports

RESERVED = {7443: "--server 10.0.0.1:7443", 9465: "--metrics-listen :9465"}


@pytest.mark.parametrize(
    ("ports", "error"),
    [
        pytest.param(IngressPorts(80, 443), "", id="defaults"),
        pytest.param(IngressPorts(0, 0), "", id="off"),
        pytest.param(
            IngressPorts(80, 7443),
            "--ingress-https-port 7443: the port is reserved on this node (--server 10.0.0.1:7443 uses it)",
            id="https-on-the-api-port",
        ),
        pytest.param(
            IngressPorts(9465, 443),
            "--ingress-http-port 9465: the port is reserved on this node (--metrics-listen :9465 uses it)",
            id="http-on-metrics",
        ),
        pytest.param(
            IngressPorts(8080, 8080), "--ingress-http-port and --ingress-https-port are both 8080", id="same-port"
        ),
    ],
)
def test_reserved_ingress_ports_are_refused(ports: IngressPorts, error: str) -> None:
    if not error:
        check_ingress_ports(ports, RESERVED)
        return
    with pytest.raises(ReservedIngressPort) as raised:
        check_ingress_ports(ports, RESERVED)
    assert str(raised.value) == error
