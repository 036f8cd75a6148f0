"""All configuration, from IMGCONV_* environment variables (see the README's table)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_SECRET = "local-insecure-secret-change-me"


class Mode(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """One settings object for API, worker and migrations."""

    model_config = SettingsConfigDict(env_prefix="IMGCONV_", env_file=None, extra="ignore")

    mode: Mode = Mode.PRODUCTION
    secret_key: SecretStr = SecretStr(LOCAL_SECRET)

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/imgconv"
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)

    # upload limits
    max_file_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    max_files: int = Field(default=20, ge=1)
    max_pixels: int = Field(default=50_000_000, ge=1)
    max_frames: int = Field(default=1000, ge=1)

    # jobs
    retention_days: float = Field(default=7, gt=0)
    task_soft_time_limit: int = Field(default=120, ge=1)
    task_hard_time_limit: int = Field(default=150, ge=2)
    max_attempts: int = Field(default=3, ge=1)
    transient_retry_limit: int = Field(default=5, ge=0)
    worker_max_memory_per_child_kb: int = Field(default=1_048_576, ge=1024)
    sweep_interval_seconds: float = Field(default=10, gt=0)
    publish_grace_seconds: float = Field(default=5, ge=0)
    publish_timeout_seconds: float = Field(default=2, gt=0)
    orphan_after_seconds: float = Field(default=120, gt=0)

    # status cache / polling
    status_cache_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    unknown_job_cache_seconds: int = Field(default=60, ge=0)
    long_poll_max_seconds: int = Field(default=30, ge=0)
    poll_retry_after_seconds: int = Field(default=1, ge=1)

    # rate limits ("N per period" in the limits library's notation)
    upload_rate_per_token: str = "300/minute"
    upload_rate_per_ip: str = "600/minute"
    token_rate_per_ip: str = "30/minute"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # observability
    broker_management_url: str | None = None
    poll_metrics: bool = True

    # API
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _url(
            value, ("postgresql",), "a PostgreSQL URL, e.g. postgresql+psycopg://user@host/db"
        )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _url(value, ("redis", "rediss", "unix"), "a Redis URL, e.g. redis://host:6379/0")

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        return _url(
            value,
            ("amqp", "amqps", "pyamqp", "redis", "rediss"),
            "an AMQP URL, e.g. amqp://user:password@host:5672/vhost",
        )

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("trusted_proxies", "cors_origins"):
                value = data.get(key)
                if isinstance(value, str):
                    data[key] = [item.strip() for item in value.split(",") if item.strip()]
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.mode is not Mode.LOCAL:
            secret = self.secret_key.get_secret_value()
            if secret == LOCAL_SECRET or len(secret) < 32:
                raise ValueError(
                    "IMGCONV_SECRET_KEY must be set to a random value of 32+ characters "
                    "outside the local mode (IMGCONV_MODE=local)"
                )
        if self.task_hard_time_limit <= self.task_soft_time_limit:
            raise ValueError("IMGCONV_TASK_HARD_TIME_LIMIT must exceed the soft limit")
        for proxy in self.trusted_proxies:
            ipaddress.ip_network(proxy, strict=False)
        return self

    @property
    def max_request_bytes(self) -> int:
        """Upper bound of a whole multipart request: every file at its limit plus form overhead."""
        return self.max_files * (self.max_file_bytes + 16 * 1024) + 64 * 1024


def _url(value: str, schemes: tuple[str, ...], expected: str) -> str:
    """`value` unchanged if it is a URL with one of `schemes` (a `+driver` suffix allowed)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in schemes or not rest:
        raise ValueError(f"not {expected}")
    return value


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
