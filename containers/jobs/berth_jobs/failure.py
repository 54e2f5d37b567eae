"""The state machine's Catch path: always leave ``failures/<job_id>.zip`` with what is known —
unless the job's result is stored after all (its runner did its work, then its answer was lost,
as when a Lambda times out after its side effect): then the job succeeded, and no failure ZIP
is written beside its result.

Merges into the runner's own failure ZIP (traceback) when there is one, adding Step
Functions' error and cause, the input and a pointer to the logs; and writes
``failures/<job_id>.json``, the job's own error in two fields — the runner's error when the
job itself raised, else Step Functions' (a timeout, an exit code, an unknown name) — which
``GET /jobs/{id}`` answers as ``error``.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from berth_jobs import environment as env
from berth_jobs.archive import (
    failure_key,
    read_document,
    result_key,
    summary_key,
    zip_documents,
)

MAX_MESSAGE_CHARS = 2000


def write_failure(s3: Any, bucket: str, event: dict[str, Any]) -> str:
    job_id = str(event.get("job_id") or "unknown")
    key = failure_key(job_id)
    try:
        existing = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"NoSuchKey", "404"}:
            raise
        existing = None
    error = event.get("error") or {}
    document = {
        "job_id": job_id,
        "name": event.get("name"),
        "error": error.get("Error", "States.Unknown"),
        "cause": error.get("Cause", ""),
        "logs": event.get("logs", ""),
    }
    archive = zip_documents(
        {"state-machine-error.json": document, "input.json": event.get("input")}, base=existing
    )
    s3.put_object(Bucket=bucket, Key=key, Body=archive)
    own = read_document(existing, "error.json") if existing else None
    source = own if isinstance(own, dict) else document
    summary = {
        "code": str(source.get("error") or "JobFailed"),
        "message": str(source.get("cause") or "")[:MAX_MESSAGE_CHARS],
    }
    s3.put_object(
        Bucket=bucket,
        Key=summary_key(job_id),
        Body=json.dumps(summary).encode(),
        ContentType="application/json",
    )
    return key


def stored_result(s3: Any, bucket: str, job_id: str) -> str | None:
    """The job's result key if its result is in ``bucket``."""
    key = result_key(job_id)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"NoSuchKey", "404", "NotFound"}:
            raise
        return None
    return key


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s3 = boto3.client("s3")
    job_id = str(event.get("job_id") or "unknown")
    if stored := stored_result(s3, env.require(env.RESULTS_BUCKET), job_id):
        return {"result_key": stored}  # it succeeded: its answer was lost, not its work
    return {"failure_key": write_failure(s3, env.require(env.FAILURES_BUCKET), event)}
