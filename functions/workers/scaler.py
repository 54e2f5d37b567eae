"""Scheduled (and woken by each queued command): size the worker fleet to the projects with
work — queued or running commands, or a command ended within ``keep_warm_seconds`` (its
person is likely typing the next one). Thin: reads the active commands and the fleet, asks
the policy, launches."""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented
from workers.scaling import Limits, Observed, berth_launch

if TYPE_CHECKING:
    from workers.config import ScalerConfig
    from workers.fleet import Fleet
    from workers.repository import WorkersRepository

logger = Logger()
metrics = Metrics()


def scale(
    config: ScalerConfig, repository: WorkersRepository, fleet: Fleet, now: float
) -> dict[str, Any]:
    active = repository.active()
    pending = [c for c in active if not c.status.finished]
    warm = [
        c
        for c in active
        if c.status.finished and (c.finished_at or 0) > now - config.keep_warm_seconds
    ]
    running, starting = fleet.counts()
    observed = Observed(
        running=running,
        starting=starting,
        projects=len({c.project for c in pending} | {c.project for c in warm}),
    )
    wanted = berth_launch(observed, Limits(config.min_tasks, config.max_tasks))
    started, failures = fleet.launch(wanted) if wanted else (0, [])
    return {
        "observed": {**observed.__dict__, "commands": len(pending), "warm": len(warm)},
        "launch": wanted,
        "started": started,
        "failures": failures,
    }


@cache
def _parts() -> tuple[ScalerConfig, WorkersRepository, Fleet]:
    # on the first event, not at import: settings, AWS clients, boto3 are most of a cold start
    import boto3

    from workers.config import ScalerConfig
    from workers.fleet import Fleet
    from workers.repository import WorkersRepository

    config = ScalerConfig.from_env()
    fleet = Fleet(
        boto3.client("ecs"),
        cluster_arn=config.cluster_arn,
        task_definition=config.worker_task_definition,
        family=config.worker_family,
        subnets=config.task_subnets,
        security_groups=config.task_security_groups,
        assign_public_ip=config.assign_public_ip,
    )
    table = boto3.resource("dynamodb").Table(config.workers_table)
    return config, WorkersRepository(table), fleet


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = scale(*_parts(), time.time())
    observed = result["observed"]
    if observed["commands"] or observed["running"] or observed["starting"]:
        # Metrics only when there is something to count: an idle stack publishes none.
        for name, value in (
            ("PendingCommands", observed["commands"]),
            ("ActiveProjects", observed["projects"]),
            ("RunningWorkers", observed["running"]),
            ("StartingWorkers", observed["starting"]),
            ("LaunchedWorkers", result["started"]),
        ):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        logger.info("scaled", extra=result)
    return result
