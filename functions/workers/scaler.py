"""Scheduled (and woken by each queued command): give each user with commands waiting a
worker of their own per busy project — binding idle reserve workers to them first, starting
bound workers for the rest — and keep an unbound reserve for users' first commands. Thin:
reads the active commands and the fleet, asks the policy (``workers.scaling``), acts."""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented
from workers.scaling import bound_wanted, plan, warm_reserve

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
    """One run: bind or start a worker for each user short of one per busy project, then top
    the unbound reserve up."""
    active = repository.active()
    pending = [c for c in active if not c.status.finished]
    recent = {
        c.project
        for c in active
        if not c.status.finished or (c.finished_at or 0) > now - config.reserve_window_seconds
    }
    with_work: dict[str, set[str]] = {}
    for command in pending:
        with_work.setdefault(command.user, set()).add(command.project)
    wanted = bound_wanted(with_work, config.max_workers_per_user)
    reserve = warm_reserve(
        len(recent), config.warm_reserve_share, config.reserve_minimum, config.min_tasks
    )
    tasks = fleet.live()
    running = sum(tasks.values())
    starting, live = len(tasks) - running, len(tasks)
    # only live tasks count: a worker killed without a word is gone from ECS at once
    view = registry.view(now).among(set(tasks))
    # a live task neither idle nor bound in the fleet's item is a reserve worker starting
    starting_reserve = max(0, live - len(view.idle) - len(view.bound))
    idle_newest_first = sorted(view.idle, key=lambda name: -view.idle[name])
    decided = plan(
        wanted,
        view.bound_per_user(),
        idle_newest_first,
        starting_reserve,
        reserve,
        live,
        config.max_tasks,
    )
    if reserve or live:
        registry.publish_reserve(reserve, now)  # void unless republished
    bound = 0
    for user, workers in decided.bind.items():
        bound += sum(_bind(registry, fleet, worker, user, now) for worker in workers)
    started, failures = 0, []
    for user, count in decided.launch_bound.items():
        launched, failed = fleet.launch(count)
        failures += failed
        for task in launched:
            started += _bind(registry, fleet, task, user, now)
    if decided.launch_reserve:
        launched, failed = fleet.launch(decided.launch_reserve)
        started += len(launched)
        failures += failed
    return {
        "observed": {
            "running": running,
            "starting": starting,
            "commands": len(pending),
            "users": len(wanted),
            "projects": sum(len(p) for p in with_work.values()),
            "reserve": reserve,
            "idle": len(view.idle),
            "bound": len(view.bound),
        },
        "bound": bound,
        "launch": sum(decided.launch_bound.values()) + decided.launch_reserve,
        "started": started,
        "failures": failures,
    }


def _bind(registry: FleetRegistry, fleet: Fleet, worker: str, user: str, now: float) -> int:
    """1 if ``worker`` is now ``user``'s (and its task tagged so), else 0."""
    if not registry.bind(worker, user, now):
        return 0
    fleet.label(worker, user)
    return 1


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
            ("BoundWorkers", observed["bound"]),
            ("BoundFromReserve", result["bound"]),
            ("RunningWorkers", observed["running"]),
            ("StartingWorkers", observed["starting"]),
            ("LaunchedWorkers", result["started"]),
        ):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        logger.info("scaled", extra=result)
    return result
