"""Settings: the rules a deployment's environment must satisfy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imgconv_core.settings import Settings


def test_production_mode_refuses_the_default_or_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(mode="production")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(mode="production", secret_key="short")
    assert Settings(mode="production", secret_key="k" * 40).mode == "production"
    assert Settings(mode="local").mode == "local"


def test_list_settings_accept_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCONV_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    monkeypatch.setenv("IMGCONV_MODE", "local")
    assert Settings().trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    monkeypatch.setenv("IMGCONV_TRUSTED_PROXIES", "not-an-ip")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_url", "mysql://db/imgconv"),
        ("database_url", "postgresql://"),
        ("database_url", "not a url"),
        ("redis_url", "http://cache:6379/0"),
        ("broker_url", "kafka://broker:9092"),
    ],
)
def test_service_urls_must_name_their_kind_of_server(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({"mode": "local", field: value})


def test_the_supported_url_forms_are_accepted() -> None:
    settings = Settings(
        mode="local",
        database_url="postgresql+psycopg://u:p@db:5432/imgconv",
        redis_url="rediss://cache:6380/2",
        broker_url="amqps://u:p@mq:5671/vhost",
    )
    assert settings.broker_url.startswith("amqps://")
