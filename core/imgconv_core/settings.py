"""All configuration, from IMGCONV_* environment variables (see the README's table)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_SECRET = "local-insecure-secret-change-me"


class Mode(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class StorageBackend(StrEnum):
    """Where image bytes live; each job records the backend that holds its own."""

    POSTGRES = "postgres"
    S3 = "s3"


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

    # image storage: new images go to `storage`; each job keeps the backend it was stored in
    storage: StorageBackend = StorageBackend.POSTGRES
    s3_endpoint_url: str | None = None  # None: AWS's own endpoint for the region
    s3_bucket: str = "imgconv"
    s3_region: str = "us-east-1"
    s3_path_style: bool = False  # https://host/bucket/key instead of https://bucket.host/key
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "imgconv/" in a shared bucket
    # Credentials: the values, or files holding them (a mounted Kubernetes Secret); neither
    # leaves them to the environment's chain (AWS_* variables, web identity, instance profile).
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_access_key_id_file: Path | None = None
    s3_secret_access_key_file: Path | None = None
    s3_connect_timeout_seconds: float = Field(default=2, gt=0)
    s3_read_timeout_seconds: float = Field(default=10, gt=0)  # silence that ends a request
    s3_request_timeout_seconds: float = Field(default=300, gt=0)  # whole request, body included
    s3_max_retries: int = Field(default=2, ge=0)
    s3_presigned_downloads: bool = False  # downloads answer 307 to a presigned URL
    s3_presign_expires_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    s3_orphan_grace_seconds: float = Field(default=900, gt=0)
    storage_retry_after_seconds: int = Field(default=5, ge=1)

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

    # API: slow clients and the memory uploads take
    header_timeout_seconds: float = Field(default=10, gt=0)
    body_timeout_seconds: float = Field(default=30, gt=0)
    body_min_bytes_per_second: float = Field(default=4096, gt=0)
    upload_budget_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    upload_memory_bytes: int = Field(default=128 * 1024 * 1024, ge=0)
    upload_storing_wait_seconds: float = Field(default=30.0, gt=0, le=300)

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
        if self.upload_budget_bytes < self.max_request_bytes:
            raise ValueError(
                "IMGCONV_UPLOAD_BUDGET_BYTES must hold at least one upload of the largest size "
                f"({self.max_request_bytes} bytes: IMGCONV_MAX_FILES x IMGCONV_MAX_FILE_BYTES)"
            )
        for proxy in self.trusted_proxies:
            ipaddress.ip_network(proxy, strict=False)
        has_key_id = self.s3_access_key_id is not None or self.s3_access_key_id_file is not None
        has_secret = (
            self.s3_secret_access_key is not None or self.s3_secret_access_key_file is not None
        )
        if has_key_id != has_secret:
            raise ValueError(
                "set both IMGCONV_S3_ACCESS_KEY_ID(_FILE) and IMGCONV_S3_SECRET_ACCESS_KEY(_FILE), "
                "or neither"
            )
        return self

    def s3_credentials(self) -> tuple[str, str] | None:
        """The S3 key pair (a `_FILE` setting is read now: S3BlobStore calls this again to pick
        up a rotated Secret), or None to leave credentials to the environment's chain."""

        def value(direct: SecretStr | None, file: Path | None) -> str | None:
            if file is not None:
                return file.read_text().strip()
            return direct.get_secret_value() if direct is not None else None

        key_id = value(self.s3_access_key_id, self.s3_access_key_id_file)
        secret = value(self.s3_secret_access_key, self.s3_secret_access_key_file)
        return (key_id, secret) if key_id is not None and secret is not None else None

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
