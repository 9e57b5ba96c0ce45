"""Kubernetes quantity parsing: protos/quantity.py."""

from __future__ import annotations

from fractions import Fraction

import pytest

from protos.quantity import cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("0", Fraction(0), id="zero"),
        pytest.param("1", Fraction(1), id="integer"),
        pytest.param("+2", Fraction(2), id="explicit-plus"),
        pytest.param("0.5", Fraction(1, 2), id="decimal"),
        pytest.param(".5", Fraction(1, 2), id="leading-dot"),
        pytest.param("5.", Fraction(5), id="trailing-dot"),
        pytest.param("250m", Fraction(1, 4), id="milli"),
        pytest.param("100n", Fraction(1, 10**7), id="nano"),
        pytest.param("3u", Fraction(3, 10**6), id="micro"),
        pytest.param("2k", Fraction(2000), id="kilo"),
        pytest.param("1M", Fraction(10**6), id="mega"),
        pytest.param("1G", Fraction(10**9), id="giga"),
        pytest.param("1T", Fraction(10**12), id="tera"),
        pytest.param("1P", Fraction(10**15), id="peta"),
        pytest.param("1E", Fraction(10**18), id="exa"),
        pytest.param("1Ki", Fraction(1024), id="kibi"),
        pytest.param("128Mi", Fraction(128 * 2**20), id="mebi"),
        pytest.param("1.5Gi", Fraction(3 * 2**29), id="gibi-fraction"),
        pytest.param("1Ti", Fraction(2**40), id="tebi"),
        pytest.param("1Pi", Fraction(2**50), id="pebi"),
        pytest.param("1Ei", Fraction(2**60), id="exbi"),
        pytest.param("1e3", Fraction(1000), id="exponent"),
        pytest.param("1E3", Fraction(1000), id="exponent-capital"),
        pytest.param("5e-1", Fraction(1, 2), id="negative-exponent"),
        pytest.param("1e+20", Fraction(10**20), id="python-float-repr"),
    ],
)
def test_parse_quantity(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("12x", 'invalid quantity "12x"', id="unknown-suffix"),
        pytest.param("", 'invalid quantity ""', id="empty"),
        pytest.param("m", 'invalid quantity "m"', id="suffix-only"),
        pytest.param("1 Gi", 'invalid quantity "1 Gi"', id="inner-space"),
        pytest.param(" 1", 'invalid quantity " 1"', id="leading-space"),
        pytest.param("1KI", 'invalid quantity "1KI"', id="wrong-case"),
        pytest.param("1K", 'invalid quantity "1K"', id="capital-k"),
        pytest.param("1e", 'invalid quantity "1e"', id="bare-e"),
        pytest.param("1.2.3", 'invalid quantity "1.2.3"', id="two-dots"),
        pytest.param("nan", 'invalid quantity "nan"', id="nan"),
        pytest.param("-1", 'invalid quantity "-1": must not be negative', id="negative"),
        pytest.param("-500m", 'invalid quantity "-500m": must not be negative', id="negative-milli"),
        pytest.param("1e999", 'invalid quantity "1e999": exponent out of range', id="huge-exponent"),
        pytest.param("9" * 100, f'invalid quantity "{"9" * 64}..."', id="too-long"),
    ],
)
def test_invalid_quantity(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        pytest.param("1", 1000, id="one-core"),
        pytest.param("250m", 250, id="milli"),
        pytest.param("0.5", 500, id="half"),
        pytest.param("0.0001", 1, id="rounds-up"),
        pytest.param("100n", 1, id="nano-rounds-up"),
        pytest.param("2k", 2_000_000, id="kilo"),
    ],
)
def test_cpu_millis(text: str, millis: int) -> None:
    assert cpu_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("128Mi", 134_217_728, id="mebi"),
        pytest.param("1G", 1_000_000_000, id="giga"),
        pytest.param("1e3", 1000, id="exponent"),
        pytest.param("1500m", 2, id="milli-rounds-up"),
        pytest.param("0", 0, id="zero"),
    ],
)
def test_memory_bytes(text: str, size: int) -> None:
    assert memory_bytes(text) == size


def test_helpers_refuse_what_parse_refuses() -> None:
    with pytest.raises(ValueError, match='invalid quantity "lots"'):
        cpu_millis("lots")
    with pytest.raises(ValueError, match="must not be negative"):
        memory_bytes("-1Gi")
