"""Names of the environment variables the runner reads (set by infra/jobs.py)."""

from __future__ import annotations

import os

RESULTS_BUCKET = "BERTH_RESULTS_BUCKET"
FAILURES_BUCKET = "BERTH_FAILURES_BUCKET"
LOG_GROUP = "BERTH_JOB_LOG_GROUP"
# Fargate only: the job itself, as container overrides from the state machine.
JOB_ID = "JOB_ID"
JOB_NAME = "JOB_NAME"
JOB_INPUT = "JOB_INPUT"


def require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value
