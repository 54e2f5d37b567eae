"""Latency of the sessions API in the local sandbox, against GET /health in the same run.

Usage: ``.venv/bin/python bench/sandbox_latency.py [users]`` (default 30). Starts the sandbox
in-process (as ``make local`` does; ``BERTH_BENCH_URL`` measures a running one instead), then
for each user: POST /sessions, GET /sessions/{id},
DELETE /sessions/{id}, with a GET /health before each as the baseline (same gateway, same
runtime, no AWS calls). Prints p50/p95 per call and the p50 ratio to /health.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.sandbox.app import SandboxOptions, start  # noqa: E402


def call(
    url: str, method: str, path: str, user: str, body: object = None
) -> tuple[float, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data, method=method)  # noqa: S310
    request.add_header("X-Berth-User", user)
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        payload = json.loads(response.read())
    return (time.perf_counter() - began) * 1000, payload


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    running = os.environ.get("BERTH_BENCH_URL")
    sandbox = None if running else start(SandboxOptions(port=0, log_level="ERROR"))
    if sandbox is not None:
        sandbox.serve_in_background()
    url = running or (sandbox.url if sandbox else "")
    timings: dict[str, list[float]] = {"GET /health": [], "POST": [], "GET": [], "DELETE": []}
    try:
        for n in range(users + 3):
            user = f"bench-{n}"
            health, _ = call(url, "GET", "/health", user)
            post, created = call(url, "POST", "/sessions", user, {"profile": "default"})
            get, _ = call(url, "GET", f"/sessions/{created['id']}", user)
            delete, _ = call(url, "DELETE", f"/sessions/{created['id']}", user)
            if n >= 3:  # the first rounds warm every execution environment
                for key, value in zip(timings, (health, post, get, delete), strict=True):
                    timings[key].append(value)
    finally:
        if sandbox is not None:
            sandbox.close()
    base = statistics.median(timings["GET /health"])
    for key, values in timings.items():
        p50 = statistics.median(values)
        print(
            f"{key:<12} p50 {p50:7.1f} ms  p95 {percentile(values, 0.95):7.1f} ms  "
            f"ratio to GET /health p50: {p50 / base:.2f}x  ({len(values)} calls)"
        )


if __name__ == "__main__":
    main()
