"""Credentials from kopf's login become headers and TLS settings for our own API calls."""

from __future__ import annotations

import base64
import ssl

from imgconv_operator.kube import Credentials


def test_token_wins_over_basic_auth() -> None:
    creds = Credentials(server="https://api", token="t0k", username="u", password="p")
    assert creds.headers() == {"Authorization": "Bearer t0k"}


def test_basic_auth_and_anonymous() -> None:
    basic = Credentials(server="https://api", username="u", password="p")
    assert basic.headers() == {"Authorization": f"Basic {base64.b64encode(b'u:p').decode()}"}
    assert Credentials(server="http://api").headers() == {}


def test_plain_http_needs_no_tls_and_insecure_skips_verification() -> None:
    assert Credentials(server="http://127.0.0.1:8080").ssl_context() is True
    ctx = Credentials(server="https://api", insecure=True).ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.check_hostname is False
    strict = Credentials(server="https://api").ssl_context()
    assert isinstance(strict, ssl.SSLContext)
    assert strict.verify_mode == ssl.CERT_REQUIRED
