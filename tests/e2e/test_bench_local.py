"""bench/sandbox_latency.py runs to the end (short mode) against a running sandbox, so a change
that breaks it fails make test without starting one more sandbox."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from infra.settings import ROOT
from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def test_sandbox_latency_runs_to_the_end(sandbox: Sandbox) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sandbox_latency.py"), "1"],
        cwd=ROOT,
        env={**os.environ, "BERTH_BENCH_URL": sandbox.url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio to GET /health p50" in result.stdout
