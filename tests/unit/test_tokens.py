"""Client tokens: issued, verified, never forged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from imgconv_core.tokens import hash_token, issue_token, verify_token

SECRET = b"s" * 32


def test_issued_token_verifies_to_its_client() -> None:
    issued = issue_token(SECRET)
    assert verify_token(SECRET, issued.token) == issued.client_id
    assert issued.token_hash == hash_token(issued.token)
    assert issued.token not in issued.token_hash.hex()


def test_token_from_another_secret_or_tampered_is_rejected() -> None:
    issued = issue_token(SECRET)
    assert verify_token(b"x" * 32, issued.token) is None
    middle = issued.token[30]
    flipped = issued.token[:30] + ("A" if middle != "A" else "B") + issued.token[31:]
    assert verify_token(SECRET, flipped) is None


@given(st.text(max_size=80))
def test_arbitrary_strings_are_never_valid_tokens(text: str) -> None:
    assert verify_token(SECRET, text) is None
