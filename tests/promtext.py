"""Reading Prometheus text exposition in tests, with prometheus-client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Key, float]:
    """Every sample, keyed by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def families(text: str) -> dict[str, str]:
    """Every family's name and type ("counter", "gauge", "histogram")."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def value(samples: dict[Key, float], name: str, **labels: str) -> float | None:
    """The sample `name` with exactly these labels, or None."""
    return samples.get((name, frozenset(labels.items())))


def total(samples: dict[Key, float], name: str, **labels: str) -> float:
    """The sum of every `name` sample whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def scrape(address: str, timeout: float = 5.0) -> str:
    """GET http://address/metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
        body: bytes = response.read()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
    return body.decode()
