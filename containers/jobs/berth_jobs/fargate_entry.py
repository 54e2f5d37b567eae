"""Fargate entry point: reads the job from the environment, exits 0 on success, 1 on failure."""

from __future__ import annotations

import json
import os
import sys

import boto3

from berth_jobs import environment as env
from berth_jobs.runner import Buckets, JobFailed, run_job


def main() -> int:
    buckets = Buckets(env.require(env.RESULTS_BUCKET), env.require(env.FAILURES_BUCKET))
    job_id = env.require(env.JOB_ID)
    try:
        payload = json.loads(os.environ.get(env.JOB_INPUT) or "{}")
    except ValueError:
        payload = {"unparsed": os.environ.get(env.JOB_INPUT)}
    try:
        key = run_job(
            s3=boto3.client("s3"),
            buckets=buckets,
            job_id=job_id,
            name=env.require(env.JOB_NAME),
            payload=payload,
            logs=f"{os.environ.get(env.LOG_GROUP, '')} (stream prefix job)".strip(),
        )
    except JobFailed as failure:
        print(f"job {job_id} failed: {failure}", file=sys.stderr)
        return 1
    print(f"job {job_id} succeeded: {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
