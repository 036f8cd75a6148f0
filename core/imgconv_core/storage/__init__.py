"""Image storage behind a small interface (`BlobStore`): Postgres or S3, chosen by
IMGCONV_STORAGE for new images, while each job keeps the backend that holds its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgconv_core.settings import Settings, StorageBackend
from imgconv_core.storage.base import (
    BLOB_ROLES,
    DOWNLOAD_CHUNK_BYTES,
    BlobReader,
    BlobRole,
    BlobStore,
    StoredBlob,
    blob_key,
    job_keys,
    parse_blob_key,
)
from imgconv_core.storage.postgres import PostgresBlobStore

__all__ = [
    "BLOB_ROLES",
    "DOWNLOAD_CHUNK_BYTES",
    "BlobReader",
    "BlobRole",
    "BlobStore",
    "BlobStores",
    "PostgresBlobStore",
    "StoredBlob",
    "blob_key",
    "job_keys",
    "make_store",
    "make_stores",
    "parse_blob_key",
]


@dataclass
class BlobStores:
    """Every backend a deployment can have images in; `current` receives new ones. A backend
    is built on first use (building one connects nothing either)."""

    settings: Settings
    _built: dict[StorageBackend, BlobStore] = field(default_factory=dict)

    @property
    def current(self) -> BlobStore:
        """Where new images go (IMGCONV_STORAGE)."""
        return self.of(self.settings.storage)

    def of(self, backend: StorageBackend | str) -> BlobStore:
        """The store of a backend, e.g. the one a job's `storage` column names."""
        backend = StorageBackend(backend)
        store = self._built.get(backend)
        if store is None:
            if backend is StorageBackend.S3:
                from imgconv_core.storage.s3 import S3BlobStore  # only deployments using S3

                store = S3BlobStore(self.settings)
            else:
                store = PostgresBlobStore()
            self._built[backend] = store
        return store


def make_stores(settings: Settings) -> BlobStores:
    """The stores of this deployment (nothing connects until one is used)."""
    return BlobStores(settings)


def make_store(settings: Settings) -> BlobStore:
    """The store new images go to."""
    return make_stores(settings).current
