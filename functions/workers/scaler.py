"""Scheduled (and woken by each queued command): size the worker fleet to the projects with
work (queued or running commands) plus the warm reserve — idle workers for a share of the
projects active within ``keep_warm_seconds``, more for the interactive ones (their people
are likely typing the next command) — and publish that reserve, and how many idle workers
take follow-ups only, for the idle workers. Thin: reads the active commands and the fleet,
asks the policy (``workers.scaling``), launches."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented
from workers.scaling import (
    Lane,
    Limits,
    Observed,
    Shares,
    berth_launch,
    held_for_follow_ups,
    held_within,
    interactive_and_others,
    lasting_projects,
    warm_reserve,
)

if TYPE_CHECKING:
    from workers.config import ScalerConfig
    from workers.fleet import Fleet
    from workers.repository import WorkersRepository
    from workers.reserve import FleetRegistry

logger = Logger()
metrics = Metrics()


def scale(
    config: ScalerConfig,
    repository: WorkersRepository,
    fleet: Fleet,
    registry: FleetRegistry,
    now: float,
) -> dict[str, Any]:
    """One run: a worker for each project waiting for one (or whose command has run a while:
    ``lasting_projects``) plus the reserve, less the live workers."""
    active = repository.active()
    pending = [c for c in active if not c.status.finished]
    warm = [
        c
        for c in active
        if c.status.finished and (c.finished_at or 0) > now - config.keep_warm_seconds
    ]
    with_work = {c.project for c in pending}
    interactive, others = interactive_and_others(
        (c.project, c.lane == Lane.FOLLOW_UPS) for c in [*pending, *warm]
    )
    shares = Shares(
        interactive=config.warm_reserve_share,
        other=config.other_reserve_share,
        held=config.held_for_follow_ups_share,
    )
    running, starting = fleet.counts()
    observed = Observed(
        running=running,
        starting=starting,
        projects=len(with_work),
        reserve=warm_reserve(len(interactive), len(others), shares),
    )
    began = {c.project: c.started_at for c in pending if c.started_at is not None}
    queued = (c.project for c in pending if c.started_at is None)  # not taken yet
    sizing = replace(observed, projects=lasting_projects(queued, began, now))
    limits = Limits(config.min_tasks, config.max_tasks)
    held = held_within(held_for_follow_ups(len(interactive), shares), sizing, limits)
    hold = max(observed.reserve, config.min_tasks)  # min_tasks: idle workers that stay
    if hold or running or starting:
        # what idle workers read to know whether they may leave or take any command (void
        # unless republished)
        registry.publish_reserve(hold, held, now)
    wanted = berth_launch(sizing, limits)
    started, failures = fleet.launch(wanted) if wanted else (0, [])
    return {
        "observed": {
            **observed.__dict__,
            "commands": len(pending),
            "warm": len(warm),
            "interactive": len(interactive),
            "held": held,
        },
        "launch": wanted,
        "started": started,
        "failures": failures,
    }


@cache
def _parts() -> tuple[ScalerConfig, WorkersRepository, Fleet, FleetRegistry]:
    # on the first event, not at import: settings, AWS clients, boto3 are most of a cold start
    import boto3

    from workers.config import ScalerConfig
    from workers.fleet import Fleet
    from workers.repository import WorkersRepository
    from workers.reserve import FleetRegistry

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
    return config, WorkersRepository(table), fleet, FleetRegistry(table)


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
