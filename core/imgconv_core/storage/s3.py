"""Blob storage in an S3 bucket (AWS, SeaweedFS, MinIO...), through obstore.

obstore (Rust's object_store under Python) was chosen by measurement: it spends about a third
of boto3's CPU per 400 KB put and a quarter per get (`python -m bench.s3_clients`, numbers in
the README). The client is created on first use in each process, so nothing connects at import
and a forked worker child never shares its parent's connections. With the key pair in files (a
mounted Secret), the files are looked at again every few seconds and after any failed request;
a changed pair gets a new client, so a rotated key is used without a restart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store
from sqlalchemy.orm import Session

from imgconv_core.errors import StorageUnavailable
from imgconv_core.settings import Settings, StorageBackend
from imgconv_core.storage.base import DOWNLOAD_CHUNK_BYTES, StoredBlob

if TYPE_CHECKING:
    from obstore import GetResult
    from obstore.store import ClientConfig, RetryConfig

log = logging.getLogger(__name__)

# Errors that mean "the store did not do it" (unreachable, timed out, refused, misconfigured).
# FileNotFoundError (a missing key) is not among them: it means "no such blob".
_FAILURES = (BaseError, ConnectionError, TimeoutError)

# A file bigger than one part goes up as a multipart upload, this many parts at a time: a few
# uploads of 25 MiB files at once hold 10 MiB each, not their whole files.
PART_BYTES = 5 * 1024 * 1024  # S3's smallest part
PARTS_IN_FLIGHT = 2

# How long a client trusts the key pair it read from files. Kubernetes updates a mounted
# Secret within about a minute; a request failing meanwhile (the old key refused) makes the
# next one look at once, so this only bounds the cost: two small reads per interval.
CREDENTIALS_RECHECK_SECONDS = 10.0


def _content_type(result: GetResult) -> str:
    return result.attributes.get("Content-Type") or "application/octet-stream"


@dataclass
class _Client:
    """A process's S3 client and the key pair it signs with (None: the environment's chain)."""

    pid: int
    store: S3Store
    credentials: tuple[str, str] | None
    recheck_at: float  # time.monotonic() after which the credential files are read again


class S3BlobReader:
    """An S3 GET whose body is read as the download goes."""

    def __init__(self, result: GetResult, retry_after: int) -> None:
        self._result: GetResult | None = result
        self._retry_after = retry_after
        self.content_type = _content_type(result)
        self.size = result.meta["size"]

    def chunks(self, chunk_size: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes, in pieces of about `chunk_size` (the last may be smaller)."""
        assert self._result is not None, "closed"
        try:
            for piece in self._result.stream(min_chunk_size=chunk_size):
                yield bytes(piece)
        except _FAILURES as exc:
            raise StorageUnavailable(
                "the image store stopped answering", retry_after=self._retry_after
            ) from exc

    def close(self) -> None:
        """Drop the response (its connection goes back to the pool or is closed)."""
        self._result = None


class S3BlobStore:
    """BlobStore over one bucket (and key prefix); acts at once, outside any transaction."""

    backend = StorageBackend.S3
    transactional = False
    streams_files = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: _Client | None = None
        self._keys_in_files = (
            settings.s3_access_key_id_file is not None
            or settings.s3_secret_access_key_file is not None
        )

    def _store(self) -> S3Store:
        client, pid = self._client, os.getpid()
        if client is None or client.pid != pid:
            credentials = self._settings.s3_credentials()
            client = _Client(pid, self._connect(credentials), credentials, self._recheck_at())
            self._client = client
        elif self._keys_in_files and time.monotonic() >= client.recheck_at:
            client = self._rotated(client)
        return client.store

    def _recheck_at(self) -> float:
        return time.monotonic() + CREDENTIALS_RECHECK_SECONDS

    def _rotated(self, client: _Client) -> _Client:
        """`client`, or a new one if the key pair in the files changed."""
        try:
            credentials = self._settings.s3_credentials()
        except OSError as exc:  # e.g. the Secret's files being swapped: keep the pair in use
            log.warning("could not re-read the S3 credential files: %s", exc)
            client.recheck_at = self._recheck_at()
            return client
        if credentials == client.credentials:
            client.recheck_at = self._recheck_at()
            return client
        log.info("the S3 credential files changed: using the new key pair")
        self._client = _Client(
            client.pid, self._connect(credentials), credentials, self._recheck_at()
        )
        return self._client

    def _connect(self, credentials: tuple[str, str] | None) -> S3Store:
        s = self._settings
        plain_http = bool(s.s3_endpoint_url and s.s3_endpoint_url.startswith("http://"))
        config: dict[str, str | bool] = {
            "region": s.s3_region,
            "virtual_hosted_style_request": not s.s3_path_style,
            # Over TLS the payload's SHA-256 in the signature adds nothing TLS does not
            # guarantee (AWS's SDKs skip it too); over plain HTTP it is the integrity check.
            "unsigned_payload": not plain_http,
        }
        if s.s3_endpoint_url:
            config["endpoint"] = s.s3_endpoint_url
        if credentials is not None:
            config["access_key_id"], config["secret_access_key"] = credentials
        client: ClientConfig = {
            "allow_http": plain_http,
            "connect_timeout": timedelta(seconds=s.s3_connect_timeout_seconds),
            "read_timeout": timedelta(seconds=s.s3_read_timeout_seconds),
            "timeout": timedelta(seconds=s.s3_request_timeout_seconds),
        }
        retry: RetryConfig = {
            "max_retries": s.s3_max_retries,
            "retry_timeout": timedelta(seconds=s.s3_read_timeout_seconds),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
        }
        return S3Store(
            s.s3_bucket,
            prefix=s.s3_prefix or None,
            client_options=client,
            retry_config=retry,
            **config,  # type: ignore[arg-type]
        )

    def _unavailable(self, action: str, exc: Exception) -> NoReturn:
        if self._client is not None:  # a refused key may have been rotated: look next time
            self._client.recheck_at = 0.0
        log.warning("S3 %s failed: %s", action, str(exc).splitlines()[0] if str(exc) else exc)
        raise StorageUnavailable(
            "the image store is unreachable; try again shortly",
            retry_after=self._settings.storage_retry_after_seconds,
        ) from exc

    def put(self, tx: Session, key: str, data: bytes | BinaryIO, content_type: str) -> None:
        """Store `data` under `key` now (overwrites); a file is streamed, in parts when big."""
        del tx  # not transactional: the caller commits its row after this returns
        try:
            obstore.put(
                self._store(),
                key,
                data,
                attributes={"Content-Type": content_type},
                chunk_size=PART_BYTES,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        except _FAILURES as exc:
            self._unavailable("put", exc)

    def _get(self, key: str) -> GetResult | None:
        try:
            return obstore.get(self._store(), key)
        except FileNotFoundError:
            return None
        except _FAILURES as exc:
            self._unavailable("get", exc)

    def get(self, tx: Session, key: str) -> StoredBlob | None:
        """The object under `key`, or None if there is none."""
        del tx
        result = self._get(key)
        if result is None:
            return None
        try:
            data = bytes(result.bytes())
        except _FAILURES as exc:
            self._unavailable("get", exc)
        return StoredBlob(data=data, content_type=_content_type(result), size=len(data))

    def open(self, tx: Session, key: str) -> S3BlobReader | None:
        """The object under `key`, its body read as the caller goes, or None."""
        del tx
        result = self._get(key)
        return (
            None
            if result is None
            else S3BlobReader(result, self._settings.storage_retry_after_seconds)
        )

    def delete(self, tx: Session, keys: list[str]) -> None:
        """Delete the objects under `keys` now (one bulk request per 1,000); missing are fine."""
        del tx
        if not keys:
            return
        try:
            obstore.delete(self._store(), keys)
        except _FAILURES as exc:
            self._unavailable("delete", exc)

    def check(self) -> None:
        """List one key: the endpoint answers, the credentials work and the bucket exists."""
        try:
            next(iter(obstore.list(self._store(), chunk_size=1)), None)
        except _FAILURES as exc:
            self._unavailable("list", exc)

    def list_after(self, after: str | None, limit: int) -> list[tuple[str, datetime]]:
        """Up to `limit` (key, last modified) pairs in key order, after `after` (the orphan
        sweep's cursor through the bucket)."""
        stream = obstore.list(self._store(), offset=after, chunk_size=limit)
        try:
            page = next(iter(stream), [])
        except _FAILURES as exc:
            self._unavailable("list", exc)
        return [(meta["path"], meta["last_modified"]) for meta in page]

    def presigned_url(self, key: str) -> str:
        """A GET URL for `key` that works without our credentials for a few minutes."""
        expires = timedelta(seconds=self._settings.s3_presign_expires_seconds)
        try:
            return obstore.sign(self._store(), "GET", key, expires)
        except _FAILURES as exc:
            self._unavailable("sign", exc)
