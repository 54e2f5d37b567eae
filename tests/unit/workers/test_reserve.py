"""The fleet's records: the reserve, idle and bound workers, and each worker's one binding."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from workers.repository import WorkersRepository
from workers.reserve import LEFT, RESERVE_SECONDS, SEEN_SECONDS, FleetRegistry

NOW = 1_800_000_000.0


def test_idle_and_bound_workers_and_the_reserve_round_trip(
    repository: WorkersRepository,
) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(2, NOW)
    registry.idle("w1", NOW - 30, NOW)
    registry.idle("w2", NOW - 5, NOW)
    registry.alive("w3", "alice", NOW)
    registry.gone("w2")  # left
    registry.gone("never-seen")  # harmless
    assert registry.bind("w1", "bob", NOW)  # idle no more: bound
    view = registry.view(NOW + 1)
    assert (view.reserve, view.idle) == (2, {})
    assert view.bound == {"w1": "bob", "w3": "alice"}
    assert view.bound_per_user() == {"alice": 1, "bob": 1}


def test_a_worker_silent_too_long_is_not_counted(repository: WorkersRepository) -> None:
    """A worker that vanished without saying so must not hold the others' places."""
    registry = FleetRegistry(repository.table)
    registry.idle("gone", NOW - 500, NOW - SEEN_SECONDS - 1)
    registry.alive("gone-too", "alice", NOW - SEEN_SECONDS - 1)
    registry.idle("here", NOW - 10, NOW)
    view = registry.view(NOW)
    assert (view.idle, view.bound) == ({"here": NOW - 10}, {})


def test_a_reserve_not_republished_is_void(repository: WorkersRepository) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(4, NOW - RESERVE_SECONDS - 1)
    assert registry.view(NOW).reserve == 0


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request atomically (a condition is checked and the write made
    as one); in-process moto checks, then writes, so two threads can both pass a condition.
    One request at a time, as the sandbox's emulator does (``Emulator``'s DynamoDB lock)."""
    from moto.dynamodb.responses import DynamoHandler

    lock, call = threading.Lock(), DynamoHandler.call_action

    def one_at_a_time(self: DynamoHandler) -> Any:
        with lock:
            return call(self)

    monkeypatch.setattr(DynamoHandler, "call_action", one_at_a_time)


@pytest.mark.usefixtures("atomic_dynamodb")
def test_a_worker_is_bound_once_whoever_races(repository: WorkersRepository) -> None:
    """Ten binds for ten users and a leave, all at once: exactly one wins, and it stays."""
    registry = FleetRegistry(repository.table)
    outcomes: dict[str, bool] = {}
    lock = threading.Lock()

    def bind(user: str) -> None:
        won = FleetRegistry(repository.table).bind("w", user, NOW)
        with lock:
            outcomes[user] = won

    def leave() -> None:
        won = FleetRegistry(repository.table).leave_unbound("w", NOW)
        with lock:
            outcomes[LEFT] = won

    threads = [threading.Thread(target=bind, args=(f"u{n}",)) for n in range(10)]
    threads.append(threading.Thread(target=leave))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [user for user, won in outcomes.items() if won]
    assert registry.binding_of("w") == winner
    assert not registry.bind("w", "late", NOW)
    assert registry.binding_of("w") == winner


def test_an_unbound_worker_has_no_binding(repository: WorkersRepository) -> None:
    assert FleetRegistry(repository.table).binding_of("fresh") is None
