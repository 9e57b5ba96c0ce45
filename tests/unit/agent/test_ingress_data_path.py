"""`--ingress-proxy`: which data path the agent runs, by what is installed."""

from __future__ import annotations

import pytest

from agent.network.ingress.proxy import select_data_path


@pytest.mark.parametrize(
    ("choice", "nginx", "caddy", "expected"),
    [
        pytest.param("auto", "/usr/sbin/nginx", "/venv/bin/caddy", ("nginx", "/usr/sbin/nginx"), id="auto-nginx-first"),
        pytest.param("auto", None, "/venv/bin/caddy", ("caddy", "/venv/bin/caddy"), id="auto-caddy-without-nginx"),
        pytest.param("auto", None, None, ("caddy", None), id="auto-neither-ingress-off"),
        pytest.param("caddy", "/usr/sbin/nginx", "/venv/bin/caddy", ("caddy", "/venv/bin/caddy"), id="caddy-asked"),
        pytest.param("nginx", None, "/venv/bin/caddy", ("nginx", None), id="nginx-asked-missing-no-fallback"),
    ],
)
def test_select_data_path(choice: str, nginx: str | None, caddy: str | None, expected: tuple[str, str | None]) -> None:
    assert select_data_path(choice, lambda: nginx, lambda: caddy) == expected
