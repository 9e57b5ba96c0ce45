"""Join token format: K10<ca hash>::<id>.<secret>."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.common.pki import tokens
from corral.common.pki.tokens import TokenFormatError

HASH = "ab" * 32


def test_round_trip_and_shape() -> None:
    token = tokens.new_token(HASH)
    text = str(token)
    assert text.startswith("K10" + HASH + "::")
    assert tokens.parse_token(text) == token
    assert tokens.parse_token(f"  {text}\n") == token
    assert len(token.id) == 6 and len(token.secret) == 16
    assert tokens.secret_matches(token.secret, tokens.secret_digest(token.secret))
    assert not tokens.secret_matches(token.secret + "x", tokens.secret_digest(token.secret))


def test_tokens_differ() -> None:
    assert len({str(tokens.new_token(HASH)) for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "text",
    [
        "",
        "K10::abcdef.0123456789abcdef",
        f"K10{HASH}::abcdef0123456789abcdef",
        f"K10{HASH}::ABCDEF.0123456789abcdef",
        f"K10{HASH[:-1]}::abcdef.0123456789abcdef",
        f"K11{HASH}::abcdef.0123456789abcdef",
        "abcdef.0123456789abcdef",
    ],
)
def test_malformed_tokens_are_refused_with_the_expected_shape(text: str) -> None:
    with pytest.raises(TokenFormatError, match="K10<64 hex digits>"):
        tokens.parse_token(text)


@given(st.text(max_size=120))
def test_parse_never_crashes(text: str) -> None:
    try:
        token = tokens.parse_token(text)
    except TokenFormatError:
        return
    assert str(token) == text.strip()
