"""The warm reserve's item: what idle workers read to decide whether they leave."""

from __future__ import annotations

from workers.repository import WorkersRepository
from workers.reserve import IDLE_SEEN_SECONDS, RESERVE_SECONDS, FleetRegistry

NOW = 1_800_000_000.0


def test_idle_workers_and_the_reserve_round_trip(repository: WorkersRepository) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(2, 1, NOW)
    registry.idle("w1", NOW - 30, NOW)
    registry.idle("w2", NOW - 5, NOW)
    registry.busy("w1")  # took a command
    registry.busy("never-idle")  # harmless
    view = registry.view(NOW + 1)
    assert (view.reserve, view.held, view.idle) == (2, 1, {"w2": NOW - 5})


def test_a_worker_silent_too_long_is_not_counted(repository: WorkersRepository) -> None:
    """A worker that vanished without saying so must not hold the others' places."""
    registry = FleetRegistry(repository.table)
    registry.idle("gone", NOW - 500, NOW - IDLE_SEEN_SECONDS - 1)
    registry.idle("here", NOW - 10, NOW)
    assert registry.view(NOW).idle == {"here": NOW - 10}


def test_a_reserve_not_republished_is_void(repository: WorkersRepository) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(4, 2, NOW - RESERVE_SECONDS - 1)
    assert (registry.view(NOW).reserve, registry.view(NOW).held) == (0, 0)
    assert FleetRegistry(repository.table).view(NOW).idle == {}
