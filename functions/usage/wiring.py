"""Builds the usage service from the environment, once per cold start."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from shared.config import ConfigurationError
from shared.usage import UsageConfig, metering_of
from usage.config import UsageApiConfig
from usage.service import UsageService


def build_service(
    config: UsageApiConfig,
    usage: UsageConfig,
    *,
    session: Any = None,
    clock: Callable[[], float] = time.time,
) -> UsageService:
    if session is None:
        import boto3  # on first use, not at import: a cold start that needs no AWS pays nothing

        session = boto3.session.Session()
    metering = metering_of(usage, session, clock)
    if metering is None:
        raise ConfigurationError("the usage API needs BERTH_USAGE_TABLE")
    return UsageService(metering=metering, admins=config.admins, clock=clock)


@cache
def service_from_env() -> UsageService:
    return build_service(UsageApiConfig.from_env(), UsageConfig.from_env())
