"""Benchmarks that can't rot: each bench/ script runs to the end in a short mode, so a change
that breaks one fails make test (their figures are read by people, not asserted here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from infra.settings import ROOT

SHORT = {
    "synth_time.py": ["1"],
    "cold_import.py": ["1"],
    "job_cost.py": ["1"],
    "idle_cost.py": [],
    "scaling_sim.py": ["4", "1", "3"],
}
AGAINST_A_SANDBOX = {"sandbox_latency.py"}  # tests/e2e/test_bench_local.py runs it


def test_every_bench_script_is_covered() -> None:
    libraries = {"__init__.py", "common.py", "shared_fleet.py", "depth_fleet.py"}  # imported
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - libraries
    assert scripts == set(SHORT) | AGAINST_A_SANDBOX


@pytest.mark.parametrize("script", sorted(SHORT))
def test_a_bench_script_runs_to_the_end(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *SHORT[script]],
        cwd=ROOT,
        env={**os.environ, "BERTH_BENCH_WARMUP": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # each prints its figure against a baseline measured in the same run
    assert "ratio" in result.stdout or "task-seconds: median" in result.stdout, result.stdout
    if script == "idle_cost.py":  # the promise: an idle stack costs at most $0.50 a month
        idle = re.search(r"^idle month: \$([\d.]+)$", result.stdout, re.MULTILINE)
        assert idle is not None and float(idle.group(1)) <= 0.50, result.stdout
        # ... because an idle schedule publishes no metric and records no trace
        published = re.findall(r"custom metrics \((\d+)\)", result.stdout)
        assert published and set(published) == {"0"}, result.stdout
        assert "traces (every run)" not in result.stdout
