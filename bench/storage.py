"""The S3 sections of `make bench`: uploads with the S3 backend beside SeaweedFS alone storing
the same bytes, the CPU each process spends per upload (the budget), and conversions with
S3 (`python -m bench.run uploads-s3 conversions-s3`)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.conversion import photo_jpeg
from bench.http_load import POST_BODY, LoadResult, wrk
from bench.run import SEED, UPLOAD_ROUNDS, Row, bench_conversions, bench_stack, fmt, row
from tests.support.client import ApiClient
from tests.support.seaweedfs import SeaweedFS, seaweedfs
from tests.support.services import Process, Stack, start_api

CONNECTIONS = 8


@contextmanager
def s3_bench_stack() -> Iterator[tuple[Stack, SeaweedFS, Process, str]]:
    """A bench stack whose images go to a private SeaweedFS, with its API running."""
    log_dir = Path(tempfile.mkdtemp(prefix="imgconv-bench-s3-"))
    with seaweedfs(log_dir) as server, bench_stack() as stack:
        stack.overrides.update(server.env())
        api_proc, api = start_api(stack)
        try:
            yield stack, server, api_proc, api
        finally:
            api_proc.stop()


def upload_body(image: bytes, boundary: str) -> bytes:
    """One multipart upload of `image` to convert to WebP."""
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="format"\r\n\r\nwebp\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )


def upload_load(api: str, client: ApiClient, image: bytes, seconds: int = 10) -> LoadResult:
    """wrk posting `image` uploads at 8 connections."""
    boundary = "imgconvbench"
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as tmp:
        tmp.write(upload_body(image, boundary))
    try:
        result = wrk(
            f"{api}/api/v1/jobs",
            connections=CONNECTIONS,
            seconds=seconds,
            headers={"Authorization": f"Bearer {client.token}"},
            lua=POST_BODY % (tmp.name, boundary),
        )
    finally:
        os.unlink(tmp.name)
    assert result.non_2xx_3xx == 0, result
    assert result.errors == 0, result
    return result


def seaweedfs_alone(server: SeaweedFS, data: bytes, seconds: float = 10) -> float:
    """PUTs/s of SeaweedFS storing `data` from 8 connections with the store's own client (no
    HTTP in front, no database): the ceiling of an upload whose bytes go to S3."""
    store = server.store("bench-alone/")
    stop = time.monotonic() + seconds
    counts = [0] * CONNECTIONS

    def put(slot: int) -> None:
        while time.monotonic() < stop:
            store.put(None, f"{uuid.uuid4()}/source", data, "image/jpeg")  # type: ignore[arg-type]
            counts[slot] += 1

    threads = [threading.Thread(target=put, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


# --- CPU accounting from /proc: who spends what per upload ------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    comm: str
    ppid: int
    ticks: int


def _processes() -> dict[int, ProcStat]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry)] = ProcStat(comm, int(fields[1]), int(fields[11]) + int(fields[12]))
    return found


def _machine_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(fields[3]) + int(fields[4])
    return sum(int(f) for f in fields[:8]) - idle


def _tree(procs: dict[int, ProcStat], root: int) -> set[int]:
    members, grew = {root}, True
    while grew:
        more = {pid for pid, p in procs.items() if p.ppid in members} - members
        grew = bool(more)
        members |= more
    return members


def cpu_per_request(
    run: Callable[[], LoadResult], seconds: int, roots: dict[str, int]
) -> tuple[LoadResult, dict[str, float]]:
    """Run `run` and split the machine's CPU over it into milliseconds per request: the
    process trees in `roots` (name -> pid), Postgres, RabbitMQ, Redis, wrk and the rest."""
    by_comm = {"postgres": "postgres", "beam.smp": "rabbitmq", "redis-server": "redis"}
    by_comm["wrk"] = "wrk"

    def snapshot() -> dict[str, int]:
        procs = _processes()
        owner: dict[int, str] = {}
        for name, root in roots.items():
            for pid in _tree(procs, root):
                owner[pid] = name
        totals: dict[str, int] = {}
        for pid, p in procs.items():
            group = owner.get(pid) or by_comm.get(p.comm, "other processes")
            totals[group] = totals.get(group, 0) + p.ticks
        totals["machine"] = _machine_ticks()
        return totals

    before = snapshot()
    result = run()
    after = snapshot()
    requests = result.requests_per_s * seconds
    spent = {
        name: (after.get(name, 0) - before.get(name, 0)) * 1000 / TICK / requests for name in after
    }
    return result, {name: ms for name, ms in spent.items() if ms > 0.005}


def _budget_cell(spent: dict[str, float]) -> str:
    parts = [f"{name} {ms:.2f}" for name, ms in sorted(spent.items(), key=lambda kv: -kv[1])]
    return "ms CPU/upload: " + ", ".join(parts)


def bench_uploads_s3() -> list[Row]:
    """Uploads with the S3 backend against SeaweedFS alone (interleaved rounds, best of each:
    noise only slows), and where the CPU of an upload goes."""
    image = photo_jpeg(1152, 864)
    with s3_bench_stack() as (stack, server, api_proc, api):
        del stack
        client = ApiClient(api)
        upload_load(api, client, image, seconds=3)  # warm-up
        ours, alone, budgets = [], [], []
        weed_pid = server.process.proc.pid if server.process else 0
        for _ in range(UPLOAD_ROUNDS):
            result, spent = cpu_per_request(
                lambda: upload_load(api, client, image),
                10,
                {"api": api_proc.proc.pid, "seaweedfs": weed_pid},
            )
            ours.append(result)
            budgets.append(spent)
            alone.append(seaweedfs_alone(server, image))
        client.close()
    best = max(range(UPLOAD_ROUNDS), key=lambda i: ours[i].requests_per_s)
    top_alone = max(alone)
    budget_at_target = 2 * 1000 / (2 * SEED["uploads_rps"])  # 2 cores, ms per upload
    return [
        row(
            f"uploads of a 1-MP JPEG ({len(image) // 1000} KB), 8 conns, S3 backend",
            f"{fmt(ours[best])} (rounds: "
            + ", ".join(f"{r.requests_per_s:.0f}" for r in ours)
            + ")",
            f"seed: {SEED['uploads_rps']:.0f}/s",
            ours[best].requests_per_s / SEED["uploads_rps"],
            ">= 2x seed, or >= 0.8 of SeaweedFS alone",
        ),
        row(
            "  the same bytes into SeaweedFS alone, 8 conns",
            f"{top_alone:,.0f} PUTs/s (rounds: " + ", ".join(f"{a:.0f}" for a in alone) + ")",
            "S3 uploads vs this ceiling",
            ours[best].requests_per_s / top_alone,
            ">= 0.8",
        ),
        row(
            "  CPU per S3 upload (best round)",
            _budget_cell(budgets[best]),
            f"budget at 342/s on 2 cores: {budget_at_target:.2f} ms",
            None,
            "(measured)",
        ),
    ]


def bench_uploads_postgres_budget() -> list[Row]:
    """Where the CPU of an upload goes with the Postgres backend (same accounting)."""
    image = photo_jpeg(1152, 864)
    with bench_stack() as stack:
        api_proc, api = start_api(stack)
        try:
            client = ApiClient(api)
            upload_load(api, client, image, seconds=3)
            result, spent = cpu_per_request(
                lambda: upload_load(api, client, image), 10, {"api": api_proc.proc.pid}
            )
            client.close()
        finally:
            api_proc.stop()
    return [
        row(
            "  CPU per Postgres-backend upload",
            _budget_cell(spent),
            fmt(result),
            None,
            "(measured)",
        )
    ]


def bench_conversions_s3() -> list[Row]:
    """Worker throughput with the images in S3, against raw Pillow (same rounds as the
    Postgres section)."""
    with s3_bench_stack() as (stack, _server, _proc, api):
        rows = bench_conversions(stack, api)
    for conversion in rows:
        conversion["measure"] = f"{conversion['measure']}, S3 backend"
    return rows
