"""Storage decisions that need no server: keys, the orphan rule, S3 settings and credentials,
the SeaweedFS command line of `make up` and the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from imgconv_core.jobs import JobStatus
from imgconv_core.settings import Settings, StorageBackend
from imgconv_core.storage import blob_key, job_keys, make_stores, parse_blob_key
from imgconv_core.storage.orphans import JobState, orphaned_keys
from imgconv_core.storage.postgres import PostgresBlobStore
from imgconv_core.storage.s3 import S3BlobStore
from scripts.run_local import SeaweedPorts, seaweedfs_command

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(hours=1)


def test_keys_round_trip_and_foreign_keys_are_not_ours() -> None:
    job = uuid.uuid4()
    assert parse_blob_key(blob_key(job, "source")) == (job, "source")
    assert job_keys([job]) == [f"{job}/source", f"{job}/result"]
    for foreign in ("notes.txt", f"{job}/thumbnail", "not-a-uuid/source", f"{job}"):
        assert parse_blob_key(foreign) is None


def test_orphaned_keys_only_old_objects_no_job_needs() -> None:
    gone, canceled, failed, done, live = (uuid.uuid4() for _ in range(5))
    moved = uuid.uuid4()  # a job whose images are in Postgres (the object is a leftover)
    jobs = {
        canceled: JobState(JobStatus.CANCELED, StorageBackend.S3),
        failed: JobState(JobStatus.FAILED, StorageBackend.S3),
        done: JobState(JobStatus.COMPLETED, StorageBackend.S3),
        live: JobState(JobStatus.PROCESSING, StorageBackend.S3),
        moved: JobState(JobStatus.COMPLETED, StorageBackend.POSTGRES),
    }
    objects = [
        (blob_key(gone, "source"), OLD),
        (blob_key(canceled, "source"), OLD),
        (blob_key(failed, "source"), OLD),  # a failed job's source stays downloadable
        (blob_key(failed, "result"), OLD),
        (blob_key(done, "source"), OLD),
        (blob_key(done, "result"), OLD),
        (blob_key(live, "result"), OLD),  # an earlier attempt's: the next one overwrites it
        (blob_key(moved, "source"), OLD),
        ("someone-elses/file.txt", OLD),
    ]
    assert orphaned_keys(objects, jobs, written_before=NOW) == [
        blob_key(gone, "source"),
        blob_key(canceled, "source"),
        blob_key(failed, "result"),
        blob_key(moved, "source"),
    ]
    # Within the grace period nothing goes: its row may be about to commit.
    young = [(key, NOW) for key, _ in objects]
    assert orphaned_keys(young, jobs, written_before=NOW) == []


def test_stores_keep_every_backend_and_choose_the_current_one() -> None:
    stores = make_stores(Settings(mode="local"))
    assert isinstance(stores.current, PostgresBlobStore)
    assert isinstance(stores.of("s3"), S3BlobStore)  # built without connecting
    s3 = make_stores(Settings(mode="local", storage="s3"))
    assert isinstance(s3.current, S3BlobStore)
    assert s3.of(StorageBackend.POSTGRES).transactional


def test_s3_credentials_from_values_or_files(tmp_path: Path) -> None:
    assert Settings(mode="local").s3_credentials() is None
    direct = Settings(mode="local", s3_access_key_id="id", s3_secret_access_key="secret")
    assert direct.s3_credentials() == ("id", "secret")
    key_file, secret_file = tmp_path / "key", tmp_path / "secret"
    key_file.write_text("file-id\n")
    secret_file.write_text("file-secret\n")
    files = Settings(
        mode="local", s3_access_key_id_file=key_file, s3_secret_access_key_file=secret_file
    )
    assert files.s3_credentials() == ("file-id", "file-secret")
    secret_file.write_text("rotated\n")  # a Kubernetes Secret updated in place
    assert files.s3_credentials() == ("file-id", "rotated")
    with pytest.raises(ValidationError, match="IMGCONV_S3_SECRET_ACCESS_KEY"):
        Settings(mode="local", s3_access_key_id="id")


def test_unknown_storage_backend_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(mode="local", storage="ftp")


def test_seaweedfs_listens_on_the_given_ports_only_and_reports_nothing() -> None:
    ports = SeaweedPorts(*range(20001, 20009))
    argv = seaweedfs_command(Path("/bin/weed"), Path("/data"), ports, Path("/data/s3.json"))
    flags = dict(arg.lstrip("-").split("=", 1) for arg in argv[2:] if "=" in arg)
    assert flags["master.telemetry"] == "false"
    assert flags["ip.bind"] == "127.0.0.1"
    assert flags["s3.config"] == "/data/s3.json"
    given = {int(v) for k, v in flags.items() if k.endswith((".port", ".grpc"))}
    assert given == set(ports)
    # The catalogs that would otherwise take fixed ports are off.
    assert flags["s3.port.iceberg"] == flags["s3.port.lance"] == "0"
