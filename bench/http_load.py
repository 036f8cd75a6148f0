"""HTTP load with wrk (a C load generator, so the generator is not the bottleneck)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx_3xx: int
    errors: int


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    assert match, value
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int = 10,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    lua: str | None = None,
) -> LoadResult:
    """Run wrk against `url`; `lua` is an optional wrk script (request generation)."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is needed for `make bench`: apt-get install -y wrk")
    args = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    with tempfile.TemporaryDirectory() as tmp:
        if lua is not None:
            script = Path(tmp) / "load.lua"
            script.write_text(lua)
            args += ["-s", str(script)]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return LoadResult(
        requests_per_s=rps,
        p50_ms=p50,
        p99_ms=p99,
        non_2xx_3xx=int(bad.group(1)) if bad else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


RANDOM_UUID_PATH = """
math.randomseed(os.time())
local hex = "0123456789abcdef"
local function r(n)
  local t = {}
  for i = 1, n do local k = math.random(1, 16) t[i] = hex:sub(k, k) end
  return table.concat(t)
end
request = function()
  local id = r(8) .. "-" .. r(4) .. "-4" .. r(3) .. "-a" .. r(3) .. "-" .. r(12)
  return wrk.format("GET", "%s" .. id)
end
"""

PICK_PATH = """
local paths = {%s}
math.randomseed(os.time())
request = function() return wrk.format("GET", paths[math.random(1, #paths)]) end
"""

POST_BODY = """
wrk.method = "POST"
local f = io.open("%s", "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "multipart/form-data; boundary=%s"
"""
