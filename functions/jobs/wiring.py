"""Builds the job service from the environment, once per cold start."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from jobs.config import JobsConfig
from jobs.repository import JobRepository
from jobs.service import JobService
from shared.usage import UsageConfig, metering_of


def build_service(
    config: JobsConfig,
    *,
    session: Any = None,
    clock: Callable[[], float] = time.time,
    usage: UsageConfig | None = None,
) -> JobService:
    if session is None:
        import boto3  # on first use, not at import: a cold start that needs no AWS pays nothing

        session = boto3.session.Session()
    aws = session
    return JobService(
        config=config,
        repository=JobRepository(aws.resource("dynamodb").Table(config.jobs_table)),
        stepfunctions=aws.client("stepfunctions"),
        s3=aws.client("s3"),
        clock=clock,
        metering=metering_of(usage, aws, clock),
    )


@cache
def service_from_env() -> JobService:
    return build_service(JobsConfig.from_env(), usage=UsageConfig.from_env())
