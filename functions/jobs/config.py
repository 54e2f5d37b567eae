"""The jobs API's environment (infra/jobs.py renders it with ``environment()``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, Json

from shared.config import EnvModel


class JobSpec(BaseModel):
    runtime: Literal["lambda", "fargate"]
    memory: int = 512
    """MiB it is billed for (Lambda jobs: the shared function's size)."""
    cpu: int = 0
    """Fargate CPU units (Fargate jobs)."""


class JobsConfig(EnvModel):
    jobs_table: str
    state_machine_arn: str
    results_bucket: str
    failures_bucket: str
    catalogue: Json[dict[str, JobSpec]]
    result_url_seconds: int = Field(ge=1)
