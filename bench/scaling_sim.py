"""Replays a bursty command trace through seed 004's scaling and berth's, side by side.

Usage: ``.venv/bin/python bench/scaling_sim.py [seed] [runs]``. A seeded trace (10 minutes of
Poisson bursts plus a trickle, durations log-normal) runs through a worker model: Fargate
start delay 60 s, one command at a time per task, billed from launch to exit. Both fleets
use the same policy code the scaler uses (functions/workers/scaling.py):

- seed 004: the orchestrator polls every 30 s, counts running tasks only; a worker exits
  when a 20 s long poll finds the queue empty;
- berth: the scaler runs when a command is queued and every 60 s, counts starting tasks as
  capacity; a worker exits after ``idle_seconds`` without work.

Prints p50/p95 queue wait and task-seconds for each, and berth's task-seconds ratio.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions"))

from workers.scaling import Limits, Observed, berth_launch, seed_004_launch

EXPECTED_SECONDS = 15.0  # berth's setting workers.expected_command_seconds
BERTH_IDLE_SECONDS = 10  # berth's setting workers.idle_seconds

START_DELAY = 60
LONG_POLL = 20
TRACE_SECONDS = 600
LIMITS = Limits(messages_per_task=2, min_tasks=0, max_tasks=20)


@dataclass
class Command:
    arrival: float
    duration: float
    started: float | None = None


@dataclass
class Task:
    launched: float
    ready_at: float
    busy_until: float = 0.0
    idle_since: float | None = None
    ended: float | None = None
    current: Command | None = None


@dataclass
class Fleet:
    name: str
    decide: Callable[[Observed, Limits], int]
    tick_seconds: int
    on_arrival: bool
    idle_seconds: int
    count_starting: bool
    tasks: list[Task] = field(default_factory=list)


def trace(seed: int) -> list[Command]:
    rng = random.Random(seed)
    commands: list[Command] = []
    t = 0.0
    while t < TRACE_SECONDS:  # bursts: a user runs a build/test; several commands at once
        t += rng.expovariate(1 / 75)
        for _ in range(max(1, int(rng.expovariate(1 / 6)))):
            commands.append(
                Command(t + rng.uniform(0, 5), min(300.0, rng.lognormvariate(math.log(12), 0.9)))
            )
    t = 0.0
    while t < TRACE_SECONDS:  # the trickle in between
        t += rng.expovariate(1 / 40)
        commands.append(Command(t, min(300.0, rng.lognormvariate(math.log(8), 0.7))))
    return sorted((c for c in commands if c.arrival < TRACE_SECONDS), key=lambda c: c.arrival)


def simulate(fleet: Fleet, commands: list[Command]) -> tuple[list[float], float]:
    queue: deque[Command] = deque()
    pending = deque(Command(c.arrival, c.duration) for c in commands)
    done: list[Command] = []
    t = 0
    while pending or queue or any(task.ended is None for task in fleet.tasks) or t < TRACE_SECONDS:
        arrived = False
        while pending and pending[0].arrival <= t:
            queue.append(pending.popleft())
            arrived = True
        live = [task for task in fleet.tasks if task.ended is None]
        for task in live:  # finish work
            if task.current and task.busy_until <= t:
                done.append(task.current)
                task.current = None
                task.idle_since = t
        for task in live:  # take work (one at a time), or give up when idle long enough
            if task.ready_at > t or task.current:
                continue
            if queue:
                command = queue.popleft()
                command.started = t
                task.current, task.busy_until, task.idle_since = command, t + command.duration, None
            elif task.idle_since is not None and t - task.idle_since >= fleet.idle_seconds:
                task.ended = t
        if (fleet.on_arrival and arrived) or t % fleet.tick_seconds == 0:
            live = [task for task in fleet.tasks if task.ended is None]
            observed = Observed(
                visible=len(queue),
                in_flight=sum(1 for task in live if task.current),
                running=sum(1 for task in live if task.ready_at <= t),
                starting=sum(1 for task in live if task.ready_at > t)
                if fleet.count_starting
                else 0,
            )
            for _ in range(fleet.decide(observed, LIMITS)):
                fleet.tasks.append(
                    Task(launched=t, ready_at=t + START_DELAY, idle_since=t + START_DELAY)
                )
        t += 1
        if t > 10 * TRACE_SECONDS:
            raise RuntimeError("the simulation did not drain")
    waits = [c.started - c.arrival for c in done if c.started is not None]
    task_seconds = sum((task.ended or t) - task.launched for task in fleet.tasks)
    return waits, task_seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def fleets() -> list[Fleet]:
    return [
        Fleet(
            "seed 004",
            seed_004_launch,
            tick_seconds=30,
            on_arrival=False,
            idle_seconds=LONG_POLL,
            count_starting=False,
        ),
        Fleet(
            "berth",
            partial(berth_launch, start_delay=START_DELAY, expected_seconds=EXPECTED_SECONDS),
            tick_seconds=60,
            on_arrival=True,
            idle_seconds=BERTH_IDLE_SECONDS,
            count_starting=True,
        ),
    ]


def main() -> None:
    first_seed = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    totals: dict[str, list[float]] = {}
    p95s: dict[str, list[float]] = {}
    for seed in range(first_seed, first_seed + runs):
        commands = trace(seed)
        line = [f"trace {seed}: {len(commands)} commands"]
        for fleet in fleets():
            waits, task_seconds = simulate(fleet, commands)
            totals.setdefault(fleet.name, []).append(task_seconds)
            p95s.setdefault(fleet.name, []).append(percentile(waits, 0.95))
            p50, p95 = statistics.median(waits), percentile(waits, 0.95)
            line.append(
                f"{fleet.name}: p50 wait {p50:5.1f} s, p95 {p95:5.1f} s, "
                f"{task_seconds:6.0f} task-s, {len(fleet.tasks)} tasks"
            )
        print(" | ".join(line))
    ratios = [b / s for b, s in zip(totals["berth"], totals["seed 004"], strict=True)]
    print(
        f"berth / seed 004 task-seconds: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}); p95 wait median "
        f"{statistics.median(p95s['berth']):.1f} s vs {statistics.median(p95s['seed 004']):.1f} s"
    )


if __name__ == "__main__":
    main()
