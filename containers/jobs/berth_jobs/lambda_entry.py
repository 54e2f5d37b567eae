"""Lambda entry point: the state machine invokes it with ``{job_id, name, input}``."""

from __future__ import annotations

import os
from typing import Any

import boto3

from berth_jobs import environment as env
from berth_jobs.runner import Buckets, run_job


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    buckets = Buckets(env.require(env.RESULTS_BUCKET), env.require(env.FAILURES_BUCKET))
    log_group = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    logs = f"{log_group} request {getattr(context, 'aws_request_id', '')}"
    key = run_job(
        s3=boto3.client("s3"),
        buckets=buckets,
        job_id=str(event["job_id"]),
        name=str(event["name"]),
        payload=event.get("input") or {},
        logs=logs.strip(),
    )
    return {"result_key": key}
