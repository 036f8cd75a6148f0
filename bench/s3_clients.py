"""`python -m bench.s3_clients`: CPU per 400 KB put and get for each S3 client candidate.

The S3 store's client was chosen with this (the numbers are in the README). Each candidate
talks to the same private SeaweedFS; rounds interleave the candidates so machine noise hits
them alike, and the CPU is this process's own (every thread, the Rust runtime's included):
what one API or worker process would spend per object on top of its own work.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.conversion import format_table, photo_jpeg
from tests.support.seaweedfs import SeaweedFS, seaweedfs

Put = Callable[[str, bytes], None]
Get = Callable[[str], bytes]


@dataclass(frozen=True)
class Candidate:
    name: str
    put: Put
    get: Get
    get_stream: Get  # read in 64 KiB chunks, as a download does


def boto3_candidate(server: SeaweedFS) -> Candidate:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            # botocore >= 1.36 adds a CRC32 to every PUT by default; this is the same work
            # over plain HTTP as the SigV4 payload hash already proves.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    bucket = server.bucket

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")

    def get(key: str) -> bytes:
        body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def get_stream(key: str) -> bytes:
        stream = client.get_object(Bucket=bucket, Key=key)["Body"]
        return b"".join(stream.iter_chunks(65536))

    return Candidate("boto3", put, get, get_stream)


def obstore_candidate(server: SeaweedFS) -> Candidate:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        server.bucket,
        endpoint=server.endpoint,
        region="us-east-1",
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )

    def put(key: str, data: bytes) -> None:
        obstore.put(store, key, data, attributes={"Content-Type": "image/jpeg"})

    def get(key: str) -> bytes:
        return bytes(obstore.get(store, key).bytes())

    def get_stream(key: str) -> bytes:
        return b"".join(bytes(c) for c in obstore.get(store, key).stream(65536))

    return Candidate("obstore", put, get, get_stream)


def minio_candidate(server: SeaweedFS) -> Candidate:
    from minio import Minio

    client = Minio(
        server.endpoint.removeprefix("http://"),
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
        region="us-east-1",
    )
    bucket = server.bucket

    def put(key: str, data: bytes) -> None:
        client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg")

    def get(key: str) -> bytes:
        response = client.get_object(bucket, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def get_stream(key: str) -> bytes:
        response = client.get_object(bucket, key)
        try:
            return b"".join(response.stream(65536))
        finally:
            response.close()
            response.release_conn()

    return Candidate("minio", put, get, get_stream)


def _putting(put: Put, data: bytes) -> Callable[[str], None]:
    def put_one(key: str) -> None:
        put(key, data)

    return put_one


def _cpu_ms(op: Callable[[str], object], keys: list[str]) -> tuple[float, float]:
    """CPU and wall milliseconds per call of `op` over `keys`."""
    cpu, wall = time.process_time(), time.perf_counter()
    for key in keys:
        op(key)
    n = len(keys)
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


def measure(server: SeaweedFS, data: bytes, per_round: int, rounds: int) -> list[dict[str, object]]:
    """The median over `rounds` of CPU ms per put, get and streamed get, per candidate."""
    candidates = [boto3_candidate(server), obstore_candidate(server), minio_candidate(server)]
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        c.name: {"put": [], "get": [], "stream": []} for c in candidates
    }
    for candidate in candidates:  # warm-up: connections, credential and signer caches
        key = f"warm/{candidate.name}"
        candidate.put(key, data)
        assert candidate.get(key) == data
        assert candidate.get_stream(key) == data
    for _ in range(rounds):
        for candidate in candidates:
            keys = [f"bench/{candidate.name}/{uuid.uuid4()}" for _ in range(per_round)]
            by_op = samples[candidate.name]
            by_op["put"].append(_cpu_ms(_putting(candidate.put, data), keys))
            by_op["get"].append(_cpu_ms(candidate.get, keys))
            by_op["stream"].append(_cpu_ms(candidate.get_stream, keys))

    def cell(values: list[tuple[float, float]]) -> str:
        cpu = sorted(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        return f"{statistics.median(cpu):.2f} ({cpu[0]:.2f}-{cpu[-1]:.2f}), wall {wall:.1f}"

    return [
        {
            "client": name,
            "put: CPU ms (range), wall ms": cell(by_op["put"]),
            "get": cell(by_op["get"]),
            "get in 64 KiB chunks": cell(by_op["stream"]),
        }
        for name, by_op in samples.items()
    ]


def main() -> None:
    """Start a private SeaweedFS, measure every candidate, print the table."""
    per_round = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    data = photo_jpeg(1152, 864)
    with seaweedfs(Path(tempfile.mkdtemp(prefix="imgconv-bench-"))) as server:
        rows = measure(server, data, per_round, rounds)
    print(f"{len(data) // 1000} KB object, {rounds} rounds of {per_round} calls each")
    print(format_table(rows))


if __name__ == "__main__":
    main()
