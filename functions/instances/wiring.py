"""Builds the instances service and provisioner from the environment, once per cold start."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from instances.config import InstancesConfig
from instances.ec2 import Machines
from instances.provisioning import Provisioner
from instances.repository import InstanceRepository
from instances.service import InstanceService
from shared.usage import UsageConfig, metering_of


def _parts(config: InstancesConfig, session: Any) -> tuple[Any, InstanceRepository, Machines]:
    if session is None:
        import boto3  # on first use, not at import: a cold start that needs no AWS pays nothing

        session = boto3.session.Session()
    aws = session
    machines = Machines(
        aws.client("ec2"),
        aws.client("ssm"),
        launch_template_id=config.launch_template_id,
        subnets=config.subnets,
        app_tag=config.app_tag,
    )
    return aws, InstanceRepository(aws.resource("dynamodb").Table(config.instances_table)), machines


def build_service(
    config: InstancesConfig,
    *,
    session: Any = None,
    clock: Callable[[], float] = time.time,
    usage: UsageConfig | None = None,
) -> InstanceService:
    aws, repository, machines = _parts(config, session)
    return InstanceService(
        config=config,
        repository=repository,
        machines=machines,
        stepfunctions=aws.client("stepfunctions"),
        clock=clock,
        metering=metering_of(usage, aws, clock),
    )


def build_provisioner(
    config: InstancesConfig, *, session: Any = None, clock: Callable[[], float] = time.time
) -> Provisioner:
    _, repository, machines = _parts(config, session)
    return Provisioner(config=config, repository=repository, machines=machines, clock=clock)


@cache
def service_from_env() -> InstanceService:
    return build_service(InstancesConfig.from_env(), usage=UsageConfig.from_env())


@cache
def provisioner_from_env() -> Provisioner:
    return build_provisioner(InstancesConfig.from_env())
