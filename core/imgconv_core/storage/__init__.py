"""Image storage behind a small interface (`BlobStore`)."""

from imgconv_core.settings import Settings
from imgconv_core.storage.base import BlobRole, BlobStore, StoredBlob, blob_key
from imgconv_core.storage.postgres import PostgresBlobStore

__all__ = ["BlobRole", "BlobStore", "PostgresBlobStore", "StoredBlob", "blob_key", "make_store"]


def make_store(settings: Settings) -> BlobStore:
    """The configured storage backend (only Postgres for now)."""
    del settings  # the backend choice will read settings once there is a second one
    return PostgresBlobStore()
