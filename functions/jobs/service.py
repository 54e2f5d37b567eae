"""Jobs logic: validate against the catalogue, start the execution, report its outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from jobs.config import JobsConfig
from jobs.models import (
    MAX_INPUT_BYTES,
    Failure,
    Job,
    JobState,
    JobStatus,
    idempotent_job_id,
    input_digest,
    new_job_id,
)
from jobs.repository import JobRepository
from shared.errors import Conflict, Invalid, NotFound
from shared.records import epoch, execution_arn
from shared.usage import Capability, Metering, Span, Usage

FAILED_STATES = {"FAILED", "TIMED_OUT", "ABORTED"}
MAX_ERROR_CHARS = 2000


class JobService:
    def __init__(
        self,
        *,
        config: JobsConfig,
        repository: JobRepository,
        stepfunctions: Any,
        s3: Any,
        clock: Callable[[], float],
        metering: Metering | None = None,
    ) -> None:
        self.config = config
        self.repo = repository
        self.sfn = stepfunctions
        self.s3 = s3
        self.clock = clock
        self.metering = metering
        """Set when usage is on: budgets checked at start, each execution's time recorded."""

    def start(
        self, user: str, name: str, payload: dict[str, Any], idempotency_key: str | None
    ) -> tuple[JobState, bool]:
        """``(job, True)`` when this call started it; a retry with the same key gets it back."""
        spec = self.config.catalogue.get(name)
        if spec is None:
            known = ", ".join(sorted(self.config.catalogue))
            raise Invalid(f"unknown job {name!r}; known: {known}", code="unknown_job")
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        limit = MAX_INPUT_BYTES[spec.runtime]
        if len(canonical.encode()) > limit:
            raise Invalid(
                f"input is {len(canonical.encode())} bytes; {spec.runtime} jobs take at most "
                f"{limit} bytes",
                code="input_too_large",
            )
        now = self.clock()
        job = Job(
            id=idempotent_job_id(user, idempotency_key) if idempotency_key else new_job_id(now),
            user=user,
            name=name,
            runtime=spec.runtime,
            created_at=now,
            request_digest=input_digest(name, payload, canonical),
        )
        if self.metering and not (idempotency_key and self.repo.get(job.id)):
            self.metering.check(user)  # a retry of a started job is not new compute
        existing = self.repo.create(job)
        if existing is not None:
            if existing.user != user or existing.request_digest != job.request_digest:
                raise Conflict(
                    "this idempotency_key was used for a different job request",
                    code="idempotency_key_reused",
                )
            job = existing
        self._start_execution(job, payload)
        return self.describe(job), existing is None

    def get(self, user: str, job_id: str) -> JobState:
        job = self.repo.get(job_id)
        if job is None or job.user != user:
            raise NotFound("job")
        return self.describe(job)

    def list_jobs(
        self, user: str, limit: int, token: str | None
    ) -> tuple[list[JobState], str | None]:
        jobs, next_token = self.repo.list_for_user(user, limit, token)
        return [self.describe(job) for job in jobs], next_token

    def describe(self, job: Job) -> JobState:
        execution = self._execution(job)
        if execution is None:
            return JobState(job)
        status = execution["status"]
        finished = epoch(execution.get("stopDate"))
        if status == "SUCCEEDED":
            url = self._presign(self.config.results_bucket, f"results/{job.id}.zip")
            return JobState(job, JobStatus.SUCCEEDED, finished_at=finished, result_url=url)
        if status in FAILED_STATES:
            code, message = self._own_error(job) or (
                str(execution.get("error") or status),
                str(execution.get("cause") or f"the execution ended {status}"),
            )
            error = Failure(
                code=code,
                message=message[:MAX_ERROR_CHARS],
                failure_url=self._presign(self.config.failures_bucket, f"failures/{job.id}.zip"),
            )
            return JobState(job, JobStatus.FAILED, finished_at=finished, error=error)
        return JobState(job)

    def meter(self, detail: dict[str, Any]) -> Usage | None:
        """Records an ended execution (a "Step Functions Execution Status Change" event's
        detail) as its job's usage, once; None when usage is off or it is no job of berth's."""
        job = self.repo.get(str(detail.get("name") or ""))
        start, stop = _epoch_ms(detail.get("startDate")), _epoch_ms(detail.get("stopDate"))
        if self.metering is None or job is None or start is None or stop is None:
            return None
        spec = self.config.catalogue.get(job.name)
        if spec is None:
            return None
        meter = self.metering.meter
        span = Span(f"job/{job.id}", job.user, Capability.JOBS, job.id, start, max(start, stop))
        usage = (
            meter.lambda_(span, memory_mib=spec.memory)
            if spec.runtime == "lambda"
            else meter.fargate(span, cpu=spec.cpu, memory_mib=spec.memory)
        )
        self.metering.record(usage)
        return usage

    def _own_error(self, job: Job) -> tuple[str, str] | None:
        """The job's own error from its failure summary (the failure writer leaves one next
        to the ZIP); None until it is there."""
        try:
            body = self.s3.get_object(
                Bucket=self.config.failures_bucket, Key=f"failures/{job.id}.json"
            )["Body"].read()
            summary = json.loads(body)
            return str(summary["code"]), str(summary["message"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "AccessDenied"}:
                return None
            raise
        except (ValueError, KeyError, TypeError):
            return None

    def _execution(self, job: Job) -> dict[str, Any] | None:
        try:
            return dict(
                self.sfn.describe_execution(
                    executionArn=execution_arn(self.config.state_machine_arn, job.id)
                )
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise

    def _start_execution(self, job: Job, payload: dict[str, Any]) -> None:
        """Execution name = job id: Step Functions itself refuses a second execution."""
        try:
            self.sfn.start_execution(
                stateMachineArn=self.config.state_machine_arn,
                name=job.id,
                input=json.dumps({"name": job.name, "input": payload}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise

    def _presign(self, bucket: str, key: str) -> str:
        return str(
            self.s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key},
                ExpiresIn=self.config.result_url_seconds,
            )
        )


def _epoch_ms(value: Any) -> float | None:
    """An event's epoch milliseconds as seconds."""
    return float(value) / 1000 if isinstance(value, int | float) else None
