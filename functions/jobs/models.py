"""Jobs: the record, its API models and the input limits of the two runtimes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import IdempotencyKey, idempotent_id
from shared.records import Record, iso

# Step Functions caps an execution's input at 256 KB; ECS caps RunTask overrides at 8 KB,
# and a Fargate job's input travels as one environment variable in them.
MAX_INPUT_BYTES = {"lambda": 200 * 1024, "fargate": 6 * 1024}
JOB_ID_PATTERN = r"^job_[0-9a-f]{32}$"


class JobStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


def new_job_id(now: float) -> str:
    return f"job_{int(now * 1000):012x}{secrets.token_hex(10)}"


def idempotent_job_id(user: str, key: str) -> str:
    """The same caller and key always name the same job (and Step Functions execution)."""
    return idempotent_id("job", 32, user, key)


def input_digest(name: str, payload: Any, canonical: str) -> str:
    return hashlib.sha256(f"{name}\0{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class Job(Record):
    id: str
    user: str
    name: str
    runtime: str
    created_at: float
    request_digest: str


class CreateJob(BaseModel):
    # strict: a number must be a JSON integer, never "60", true or 1e2
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"name": "checksum", "input": {"text": "hello"}, "idempotency_key": "order-17"}
            ]
        },
    )

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")
    input: dict[str, Any] = Field(default_factory=dict, description="The job's input object")
    idempotency_key: IdempotencyKey = None


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    failure_url: str | None = None


@dataclass(frozen=True)
class JobState:
    """A job as it stands: its record and what its execution says."""

    job: Job
    status: JobStatus = JobStatus.RUNNING
    finished_at: float | None = None
    result_url: str | None = None
    error: Failure | None = None

    @property
    def id(self) -> str:
        return self.job.id


class JobError(BaseModel):
    code: str
    message: str
    failure_url: str | None = None


class JobOut(BaseModel):
    id: str
    name: str
    runtime: str
    status: JobStatus
    created_at: str
    finished_at: str | None = None
    result_url: str | None = None
    error: JobError | None = None

    @classmethod
    def of(cls, state: JobState) -> JobOut:
        job, error = state.job, state.error
        return cls(
            id=job.id,
            name=job.name,
            runtime=job.runtime,
            status=state.status,
            created_at=iso(job.created_at) or "",
            finished_at=iso(state.finished_at),
            result_url=state.result_url,
            error=JobError(**error.__dict__) if error else None,
        )


class JobList(BaseModel):
    items: list[JobOut]
    next_token: str | None = None


class JobRunnerOut(BaseModel):
    """A job callers may run by name, and where it runs."""

    name: str
    runtime: str = Field(description="lambda or fargate")


class JobCatalogue(BaseModel):
    items: list[JobRunnerOut]
