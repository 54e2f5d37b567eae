"""Replays command traces through the old orchestrator's scaling and berth's.

Usage: ``.venv/bin/python bench/scaling_sim.py [first_seed] [runs]`` (default 4 32). Two
kinds of seeded 10-minute trace: *bursty* (users' bursts — several commands at once into the
user's project — plus a trickle of single commands into other projects) and *people and
bursts* (the same bursts, plus people at terminals: a command, its output, a think time
log-normal 5-120 s, the next). A worker model runs them: Fargate start delay 60 s, one
command at a time per task, billed from launch to exit. Every fleet uses the policy code the
scaler and the workers use (``functions/workers/scaling.py``):

- the old orchestrator (depth-only): polls every 30 s, sizes to the queue depth and counts
  running tasks only; any worker takes any message, so commands of one project run side by
  side (the reason its users lost appends); a worker exits when a 20 s long poll is empty;
- berth: commands of a project run one at a time, in order (SQS FIFO, one group per
  project); the scaler runs when a command is queued and every 60 s and keeps one worker per
  project waiting for one (a project's worker counts as taken only while the project waits
  or its command has run 30 s: ``lasting_projects``) plus the warm reserve
  (``warm_reserve``: shares of the interactive projects — those that sent a follow-up,
  ``is_follow_up`` — and of the others active lately), and publishes the reserve and the
  workers held for follow-ups (``held_for_follow_ups``); a held idle worker (``is_held``)
  takes follow-ups only, the others any command; an idle worker leaves after
  ``idle_seconds`` only while the fleet's idle workers exceed the reserve (``may_leave``).
  Workers die now and then (``CRASH_RATE`` of commands): the command ends ``worker_lost``
  when its lease runs out and its project's next command waits until then — never run
  twice. "berth, 10 s idle" is the policy before the reserve: a worker per project with
  work, no more.

Prints, per fleet, the p95 wait for a worker on bursty traces (from when a command could
run: its arrival, or for berth the end of its project's previous command); on people and
bursts, a person's first-command wait and follow-up wait (from when it was typed); and
task-seconds against the depth-only fleet on the same traces; the people-and-bursts lines
add other settings (``SHARES``: what they trade) and an estimate of what zero waits cost a
scheduler that knows every arrival in advance, under berth's rules.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from infra.settings import WorkersSettings  # noqa: E402 - after the path
from workers.scaling import (  # noqa: E402
    Limits,
    Observed,
    Shares,
    berth_launch,
    depth_launch,
    held_for_follow_ups,
    held_within,
    interactive_and_others,
    is_follow_up,
    is_held,
    lasting_projects,
    may_leave,
    warm_reserve,
)

DEFAULTS = WorkersSettings()

START_DELAY = 60
LONG_POLL = 20
TRACE_SECONDS = 600
BERTH_IDLE_SECONDS = DEFAULTS.idle_seconds
KEEP_WARM_SECONDS = DEFAULTS.keep_warm_seconds
SHARES_DEFAULT = Shares(
    interactive=DEFAULTS.warm_reserve_share,
    other=DEFAULTS.other_reserve_share,
    held=DEFAULTS.held_for_follow_ups_share,
)
LEASE_SECONDS = DEFAULTS.lease_seconds
CRASH_RATE = 0.02  # a worker dies during this share of commands (berth's fleet only)
LIMITS = Limits(min_tasks=0, max_tasks=20, messages_per_task=2)
SHARES = (
    ("reserve 0.25", replace(SHARES_DEFAULT, interactive=0.25)),
    ("reserve 0.4", replace(SHARES_DEFAULT, interactive=0.4)),
    ("none held", replace(SHARES_DEFAULT, held=0.0)),
    ("held 0.25", replace(SHARES_DEFAULT, held=0.25)),
)
"""Other settings printed beside the defaults, for the trade-off: ``warm_reserve_share``
and ``held_for_follow_ups_share``."""


@dataclass
class Command:
    project: str
    arrival: float
    duration: float
    after: int | None = None
    """Interactive: typed ``think`` seconds after command ``after`` (an index) ended."""
    think: float = 0.0
    started: float | None = None
    ended: float = 0.0
    """When its project may go on: its end, or its worker's lease running out."""
    lost: bool = False
    follow_up: bool = False
    """Queued while its project had nothing queued or running, within ``keep_warm_seconds``
    of its last command's end: a person typing the next command (``is_follow_up``)."""


@dataclass
class Task:
    launched: float
    ready_at: float
    busy_until: float = 0.0
    idle_since: float | None = None
    ended: float | None = None
    current: Command | None = None
    served: bool = False


@dataclass
class Fleet:
    name: str
    decide: Callable[[Observed, Limits], int]
    tick_seconds: int
    on_arrival: bool
    idle_seconds: int
    ordered: bool
    """One command of a project at a time, in arrival order (berth)."""
    crash_rate: float = 0.0
    keep_warm_seconds: int = 0
    """A project stays warm this long after its last command."""
    shares: Shares = field(default_factory=lambda: Shares(0.0, 0.0, 0.0))
    """The warm reserve's shares; none: the policy before the reserve."""
    top_up: bool = False
    """Every scaler run tops the reserve up (``lasting_projects``); otherwise it starts a
    worker per project with work, no more (the policy before the reserve)."""
    """Idle workers held for warm projects, as a share of them (``warm_reserve``)."""
    tasks: list[Task] = field(default_factory=list)
    ended_at: int = 0
    reserve: int = 0
    """The reserve the scaler last published."""
    held: int = 0
    """Idle workers that take follow-ups only (the scaler last published)."""


def trace(seed: int) -> list[Command]:
    rng = random.Random(seed)
    commands: list[Command] = []
    t, user = 0.0, 0
    while t < TRACE_SECONDS:  # bursts: a user runs a build/test; several commands at once
        t += rng.expovariate(1 / 75)
        user += 1
        for _ in range(max(1, int(rng.expovariate(1 / 6)))):
            commands.append(
                Command(
                    f"burst-{user}",
                    t + rng.uniform(0, 5),
                    min(300.0, rng.lognormvariate(math.log(12), 0.9)),
                )
            )
    t = 0.0
    while t < TRACE_SECONDS:  # the trickle in between, over a pool of projects
        t += rng.expovariate(1 / 40)
        project = f"trickle-{rng.randrange(12)}"
        commands.append(Command(project, t, min(300.0, rng.lognormvariate(math.log(8), 0.7))))
    return sorted((c for c in commands if c.arrival < TRACE_SECONDS), key=lambda c: c.arrival)


def interactive_trace(seed: int) -> list[Command]:
    """People at terminals: each types a command, reads its output, thinks (log-normal,
    5-120 s), types the next; a few sessions start over the 10 minutes."""
    rng = random.Random(seed)
    commands: list[Command] = []
    for user in range(rng.randint(6, 10)):
        start = rng.uniform(0, TRACE_SECONDS * 0.7)
        previous: int | None = None
        for _ in range(rng.randint(4, 12)):
            think = min(120.0, max(5.0, rng.lognormvariate(math.log(20), 0.9)))
            duration = min(120.0, rng.lognormvariate(math.log(3), 1.0))
            commands.append(Command(f"user-{user}", start, duration, previous, think))
            previous = len(commands) - 1
    return commands


def people_and_bursts(seed: int) -> list[Command]:
    """People at terminals while the bursts go on: the interactive trace and the bursty one
    of the same seed, in one 10 minutes."""
    bursts = trace(seed)
    people = interactive_trace(seed)
    for command in people:  # ``after`` indexes the joined list
        if command.after is not None:
            command.after += len(bursts)
    return bursts + people


def clairvoyant_task_seconds(commands: list[Command]) -> float:
    """What zero waits cost a scheduler that knows every arrival in advance, under berth's
    rules (a project's commands one at a time, in order): each command runs as soon as it
    can — its arrival, or its project's previous end — on a worker booted just in time; a
    worker is kept through a gap shorter than a boot and otherwise let go (greedy: an upper
    bound on that scheduler's cost, so a cost no online policy can be sure to reach)."""
    ends: dict[int, float] = {}
    project_free: dict[str, float] = defaultdict(float)
    spans = []
    waiting = set(range(len(commands)))
    while waiting:  # in arrival order; a typed command arrives once the one before ends
        arrivals = {
            i: c.arrival if c.after is None else ends[c.after] + c.think
            for i in waiting
            if (c := commands[i]).after is None or c.after in ends
        }
        index = min(arrivals, key=lambda i: (arrivals[i], i))
        command = commands[index]
        start = max(arrivals[index], project_free[command.project])
        ends[index] = project_free[command.project] = start + command.duration
        spans.append((start, ends[index]))
        waiting.remove(index)
    free_at: list[float] = []
    total = 0.0
    for start, end in sorted(spans):
        ready = [i for i, at in enumerate(free_at) if at <= start]
        if ready:
            latest = max(ready, key=lambda i: free_at[i])
            if start - free_at[latest] <= START_DELAY:  # cheaper to wait idle than to boot
                total += end - free_at[latest]
                free_at[latest] = end
                continue
        total += START_DELAY + end - start
        free_at.append(end)
    return total


def simulate(fleet: Fleet, commands: list[Command], seed: int) -> list[Command]:
    rng = random.Random(seed)
    queue: deque[Command] = deque()
    copies = [Command(c.project, c.arrival, c.duration, c.after, c.think) for c in commands]
    pending = [c for c in copies if c.after is None]
    pending.sort(key=lambda c: c.arrival)
    waiting = [c for c in copies if c.after is not None]  # typed once the one before ends
    done: list[Command] = []
    blocked_until: dict[str, float] = defaultdict(float)  # a project held by a lease
    last_end: dict[str, float] = {}
    t = 0
    while (
        pending or waiting or queue or any(task.ended is None for task in fleet.tasks)
        or t < TRACE_SECONDS
    ):  # fmt: skip
        arrived = False
        for typed in list(waiting):
            before = copies[typed.after] if typed.after is not None else None
            if before is not None and before.ended and before.ended + typed.think <= t:
                typed.arrival = before.ended + typed.think
                waiting.remove(typed)
                pending.append(typed)
        pending.sort(key=lambda c: c.arrival)
        while pending and pending[0].arrival <= t:
            arriving = pending.pop(0)
            idle_project = all(c.project != arriving.project for c in queue) and not any(
                task.current and task.current.project == arriving.project
                for task in fleet.tasks
                if task.ended is None
            )
            arriving.follow_up = is_follow_up(
                0 if idle_project else 1, last_end.get(arriving.project), t, fleet.keep_warm_seconds
            )
            queue.append(arriving)
            arrived = True
        live = [task for task in fleet.tasks if task.ended is None]
        for task in live:  # finish work (or die trying)
            current = task.current
            if current and task.busy_until <= t:
                done.append(current)
                task.current = None
                if current.lost:  # the task died; its lease holds the project a while
                    task.ended = t
                    current.ended = t + LEASE_SECONDS
                else:
                    task.idle_since = t
                    current.ended = t
                blocked_until[current.project] = last_end[current.project] = current.ended
        busy = {task.current.project for task in live if task.current}
        idle = {
            str(index): task.idle_since
            for index, task in enumerate(live)
            if task.ended is None
            and task.ready_at <= t
            and not task.current
            and task.idle_since is not None
        }
        for name in list(idle):  # take work (one at a time)
            task = live[int(name)]
            held = is_held(name, idle, fleet.held)
            command = next_command(fleet, queue, busy, blocked_until, t, follow_ups_only=held)
            if command is not None:
                del idle[name]
                queue.remove(command)
                busy.add(command.project)
                command.started = t
                if fleet.crash_rate and rng.random() < fleet.crash_rate:
                    command.lost = True
                    task.busy_until = t + rng.uniform(0, command.duration)
                else:
                    task.busy_until = t + command.duration
                task.current, task.idle_since, task.served = command, None, True
        leave_when_idle(fleet, live, t)
        if (fleet.on_arrival and arrived) or t % fleet.tick_seconds == 0:
            live = [task for task in fleet.tasks if task.ended is None]
            with_work = {c.project for c in queue} | busy
            recent = [c for c in done if c.ended and t - c.ended < fleet.keep_warm_seconds]
            recent += [*queue, *(task.current for task in live if task.current)]
            interactive, others = interactive_and_others((c.project, c.follow_up) for c in recent)
            fleet.reserve = warm_reserve(len(interactive), len(others), fleet.shares)
            observed = Observed(
                running=sum(1 for task in live if task.ready_at <= t),
                starting=sum(1 for task in live if task.ready_at > t) if fleet.ordered else 0,
                projects=len(with_work),
                visible=len(queue),
                reserve=fleet.reserve,
            )
            if fleet.top_up:  # the reserve, and the workers of projects that will keep them
                began = {k.current.project: k.current.started or t for k in live if k.current}
                lasting = lasting_projects((c.project for c in queue), began, t)
                observed = replace(observed, projects=lasting)
            fleet.held = held_within(
                held_for_follow_ups(len(interactive), fleet.shares), observed, LIMITS
            )
            for _ in range(fleet.decide(observed, LIMITS)):
                fleet.tasks.append(
                    Task(launched=t, ready_at=t + START_DELAY, idle_since=t + START_DELAY)
                )
        t += 1
        if t > 10 * TRACE_SECONDS:
            raise RuntimeError("the simulation did not drain")
    if fleet.ordered:
        check_order(done)
    fleet.ended_at = t
    return done


def leave_when_idle(fleet: Fleet, live: list[Task], t: float) -> None:
    """Idle workers past ``idle_seconds`` leave, but only the surplus over the reserve."""
    idle = {
        str(index): task.idle_since
        for index, task in enumerate(live)
        if task.ended is None and task.ready_at <= t and not task.current
        and task.idle_since is not None
    }  # fmt: skip
    for name, since in sorted(idle.items(), key=lambda item: item[1]):
        if t - since >= fleet.idle_seconds and may_leave(name, idle, fleet.reserve, fleet.held):
            live[int(name)].ended = t
            del idle[name]


def next_command(
    fleet: Fleet,
    queue: deque[Command],
    busy: set[str],
    blocked_until: dict[str, float],
    t: float,
    follow_ups_only: bool = False,
) -> Command | None:
    if not fleet.ordered:
        return queue[0] if queue else None
    heads: set[str] = set()
    for command in queue:  # the first command of each project, in arrival order
        if command.project in heads:
            continue
        heads.add(command.project)
        if command.project not in busy and blocked_until[command.project] <= t:
            if follow_ups_only and not command.follow_up:
                continue  # a held worker polls the follow-up lane only
            return command
    return None


def check_order(done: list[Command]) -> None:
    """berth's promise, checked on every run: a project's commands start in arrival order and
    never overlap."""
    by_project: dict[str, list[Command]] = defaultdict(list)
    for command in done:
        by_project[command.project].append(command)
    for commands in by_project.values():
        starts = sorted(commands, key=lambda c: c.started or 0)
        if starts != sorted(commands, key=lambda c: c.arrival):
            raise AssertionError("a project's commands started out of order")


def waits_for_a_worker(done: list[Command], ordered: bool) -> list[float]:
    """How long each command waited once it could run: from its arrival, or — when a
    project's commands run in order — from the end of the command before it."""
    previous_end: dict[str, float] = defaultdict(float)
    waits = []
    for command in sorted(done, key=lambda c: c.started or 0):
        assert command.started is not None
        ready = max(command.arrival, previous_end[command.project]) if ordered else command.arrival
        waits.append(command.started - ready)
        previous_end[command.project] = command.ended
    return waits


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def fleets() -> list[Fleet]:
    return [
        Fleet(
            "depth-only",
            depth_launch,
            tick_seconds=30,
            on_arrival=False,
            idle_seconds=LONG_POLL,
            ordered=False,
        ),
        Fleet(
            "berth, 10 s idle",
            berth_launch,
            tick_seconds=60,
            on_arrival=True,
            idle_seconds=BERTH_IDLE_SECONDS,
            ordered=True,
            crash_rate=CRASH_RATE,
        ),
        Fleet(
            "berth, warm reserve",
            berth_launch,
            tick_seconds=60,
            on_arrival=True,
            idle_seconds=BERTH_IDLE_SECONDS,
            ordered=True,
            crash_rate=CRASH_RATE,
            keep_warm_seconds=KEEP_WARM_SECONDS,
            shares=SHARES_DEFAULT,
            top_up=True,
        ),
    ]


def task_seconds(fleet: Fleet) -> float:
    return sum((task.ended or fleet.ended_at) - task.launched for task in fleet.tasks)


def with_shares() -> list[Fleet]:
    """Every fleet, then the warm reserve with the other ``SHARES``."""
    every = fleets()
    reserve = every[-1]
    return [
        *every,
        *(replace(reserve, name=f"  {name}", shares=shares, tasks=[]) for name, shares in SHARES),
    ]


def people_and_bursts_run(
    seeds: range,
) -> tuple[dict[str, tuple[list[float], list[float], list[float]]], list[float]]:
    """Per fleet (``with_shares``): a person's first-command waits, follow-up waits (from when
    it was typed) and task-seconds against the depth-only fleet; and per trace, the
    clairvoyant estimate against the same depth-only fleet."""
    results: dict[str, tuple[list[float], list[float], list[float]]] = {}
    bound: list[float] = []
    for seed in seeds:
        commands = people_and_bursts(seed)
        baseline = 0.0
        for fleet in with_shares():  # the depth-only fleet first: the baseline
            first, follow, ratios = results.setdefault(fleet.name, ([], [], []))
            done = simulate(fleet, commands, seed)
            for command in done:
                if command.project.startswith("user-"):
                    wait = (command.started or 0) - command.arrival
                    (follow if command.after is not None else first).append(wait)
            baseline = baseline or task_seconds(fleet)
            ratios.append(task_seconds(fleet) / baseline)
        bound.append(clairvoyant_task_seconds(commands) / baseline)
    return results, bound


def main() -> None:
    first_seed = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    seeds = range(first_seed, first_seed + runs)
    names = [fleet.name for fleet in fleets()]

    # bursts: builds and tests, several commands at once into a project
    cost: dict[str, list[float]] = {n: [] for n in names}
    p95: dict[str, list[float]] = {n: [] for n in names}
    for seed in seeds:
        for fleet in fleets():
            done = simulate(fleet, trace(seed), seed)
            cost[fleet.name].append(task_seconds(fleet))
            p95[fleet.name].append(percentile(waits_for_a_worker(done, fleet.ordered), 0.95))
    print(f"bursty traces ({runs}): worker wait p95 (median of traces), task-seconds")
    for name in names:
        ratios = [c / d for c, d in zip(cost[name], cost["depth-only"], strict=True)]
        print(
            f"  {name:<20} wait p95 {statistics.median(p95[name]):6.1f} s   "
            f"task-seconds: median {statistics.median(ratios):.2f}x depth-only"
        )

    # people at terminals (type, read, think, type again) while the bursts go on
    print(
        f"people and bursts ({runs}): a person's first-command wait p50, follow-up wait "
        "p50 / p95, task-seconds"
    )
    results, bound = people_and_bursts_run(seeds)  # SHARES: what the setting trades
    for name, (first, follow, ratios) in results.items():
        print(
            f"  {name:<20} first {statistics.median(first):5.1f} s   follow-up "
            f"{statistics.median(follow):5.1f} s / {percentile(follow, 0.95):5.1f} s"
            f"   task-seconds: median {statistics.median(ratios):.2f}x depth-only"
        )
    print(
        f"  {'clairvoyant':<20} zero waits, estimated"
        f"{'':>27}task-seconds: median {statistics.median(bound):.2f}x depth-only"
    )


if __name__ == "__main__":
    main()
