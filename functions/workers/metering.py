"""A worker's compute is its user's: from the moment it was bound to them (a worker started
for them is bound as it starts, so its boot counts; a reserve worker's wait before does not)
until its task stopped, keep-warm time included. An unbound reserve worker is the operator's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.records import epoch
from shared.usage import Capability, Metering, Span, Usage
from workers.reserve import FleetRegistry


def meter_worker(
    task: dict[str, Any],
    *,
    registry: FleetRegistry,
    metering: Metering,
    cpu: int,
    memory_mib: int,
    clock: Callable[[], float],
) -> Usage | None:
    """Records a stopped worker task (an ECS "Task State Change" detail) as its user's usage,
    once; None if it never served a user."""
    if task.get("lastStatus") != "STOPPED" or "taskArn" not in task:
        return None
    worker = str(task["taskArn"]).rsplit("/", 1)[-1]
    binding = registry.bound_since(worker)
    if binding is None:
        return None
    user, bound_at = binding
    began = epoch(task.get("pullStartedAt")) or epoch(task.get("createdAt")) or bound_at
    started = max(began, bound_at)
    ended = max(started, epoch(task.get("stoppedAt")) or clock())
    span = Span(f"worker/{worker}", user, Capability.WORKERS, worker, started, ended)
    usage = metering.meter.fargate(span, cpu=cpu, memory_mib=memory_mib)
    metering.record(usage)
    return usage
