"""Runs one job and always leaves a result ZIP or a failure ZIP behind."""

from __future__ import annotations

import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from berth_jobs.archive import failure_key, result_key, zip_directory, zip_documents
from berth_jobs.catalog import JOBS, JobInputError


class JobFailed(Exception):
    """The job raised; its failure ZIP is already stored."""


class AwsUnavailable(Exception):
    """The job ran but its result could not be stored (S3 refused after botocore's retries):
    the state machine runs it again (the result has one key), rather than calling it failed.
    Step Functions names the error after this class (``infra.workflow.AWS_UNAVAILABLE``)."""


@dataclass(frozen=True)
class Buckets:
    results: str
    failures: str


def run_job(
    *,
    s3: Any,
    buckets: Buckets,
    job_id: str,
    name: str,
    payload: dict[str, Any],
    logs: str = "",
) -> str:
    """Runs ``name`` on ``payload``; returns the result key or raises ``JobFailed``."""
    job = JOBS.get(name)
    try:
        if job is None:
            raise JobInputError(f"this image has no job {name!r}")
        if not isinstance(payload, dict):
            raise JobInputError("a job's input must be a JSON object")
        with tempfile.TemporaryDirectory(prefix=f"{job_id}-") as workdir:
            job(payload, Path(workdir))
            body = zip_directory(Path(workdir))
    except Exception as exc:
        document = {
            "job_id": job_id,
            "name": name,
            "error": type(exc).__name__,
            "cause": str(exc),
            "logs": logs,
        }
        archive = zip_documents(
            {
                "error.json": document,
                "traceback.txt": traceback.format_exc(),
                "input.json": payload,
            }
        )
        s3.put_object(Bucket=buckets.failures, Key=failure_key(job_id), Body=archive)
        raise JobFailed(f"{type(exc).__name__}: {exc}") from exc
    key = result_key(job_id)
    try:
        s3.put_object(Bucket=buckets.results, Key=key, Body=body)
    except ClientError as exc:
        raise AwsUnavailable(f"the result could not be stored: {exc}") from exc
    return key
