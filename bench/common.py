"""Helpers for bench/ scripts: time whole processes, alternate A and B, report medians and ratio."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence


def time_process(argv: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(list(argv), env=dict(env) if env else None, check=True, capture_output=True)
    return time.perf_counter() - start


def paired(
    run_a: Callable[[], float], run_b: Callable[[], float], rounds: int, warmup: int | None = None
) -> tuple[list[float], list[float]]:
    """Runs A and B in turn (A B A B ...) so drift on a shared machine hits both alike, after
    ``warmup`` rounds not counted (``BERTH_BENCH_WARMUP``, default 1; the bench smoke test
    sets 0)."""
    if warmup is None:
        warmup = int(os.environ.get("BERTH_BENCH_WARMUP", "1"))
    for _ in range(warmup):
        run_a()
        run_b()
    a_times, b_times = [], []
    for _ in range(rounds):
        a_times.append(run_a())
        b_times.append(run_b())
    return a_times, b_times


def report(name_a: str, a: list[float], name_b: str, b: list[float]) -> str:
    ratios = [x / y for x, y in zip(a, b, strict=True)]

    def row(name: str, times: list[float]) -> str:
        median = statistics.median(times)
        return f"{name:<34} median {median:7.3f} s  (min {min(times):.3f}, max {max(times):.3f})"

    return "\n".join(
        [
            row(name_a, a),
            row(name_b, b),
            f"ratio {name_a} / {name_b}: median {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} pairs)",
        ]
    )
