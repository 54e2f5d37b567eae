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

from bench.depth_fleet import Limits, depth_launch  # noqa: E402 - after the path
from bench.shared_fleet import (  # noqa: E402
    Observed,
    Shares,
    berth_launch,
    held_for_follow_ups,
    held_within,
    interactive_and_others,
    is_follow_up,
    is_held,
    lasting_projects,
    may_leave,
    warm_reserve,
)
from infra.settings import LimitSettings, WorkersSettings  # noqa: E402
from workers import scaling  # noqa: E402
from workers.reserve import RESERVE_SECONDS  # noqa: E402

DEFAULTS = WorkersSettings()

START_DELAY = 60
LONG_POLL = 20
TRACE_SECONDS = 600
BERTH_IDLE_SECONDS = DEFAULTS.idle_seconds
SHARED_KEEP_WARM_SECONDS = 120
SHARES_DEFAULT = Shares(interactive=0.3, other=0.2, held=0.15)
"""The shared fleet's defaults when it was replaced."""
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


def release_typed(
    copies: list[Command], waiting: list[Command], pending: list[Command], t: float
) -> None:
    """A person types their next command ``think`` seconds after the one before ended."""
    for typed in list(waiting):
        before = copies[typed.after] if typed.after is not None else None
        if before is not None and before.ended and before.ended + typed.think <= t:
            typed.arrival = before.ended + typed.think
            waiting.remove(typed)
            pending.append(typed)
    pending.sort(key=lambda c: c.arrival)


def simulate(fleet: Fleet, commands: list[Command], seed: int) -> list[Command]:
    """Second by second: commands arrive, tasks finish and take work, idle tasks leave, and
    on its ticks (or an arrival) the fleet's policy launches more."""
    run = Run(fleet, commands, random.Random(seed))
    t = 0
    while run.unfinished() or t < TRACE_SECONDS:
        arrived = run.arrive(t)
        live = [task for task in fleet.tasks if task.ended is None]
        run.finish(live, t)
        busy = {task.current.project for task in live if task.current}
        run.take_work(live, busy, t)
        leave_when_idle(fleet, live, t)
        if (fleet.on_arrival and arrived) or t % fleet.tick_seconds == 0:
            run.scale(busy, t)
        t += 1
        if t > 10 * TRACE_SECONDS:
            raise RuntimeError("the simulation did not drain")
    if fleet.ordered:
        check_order(run.done)
    fleet.ended_at = t
    return run.done


class Run:
    """One simulation's state: the commands still to come, the queue, what is done, and
    which projects a lease holds."""

    def __init__(self, fleet: Fleet, commands: list[Command], rng: random.Random) -> None:
        self.fleet = fleet
        self.rng = rng
        self.queue: deque[Command] = deque()
        self.copies = [
            Command(c.project, c.arrival, c.duration, c.after, c.think) for c in commands
        ]
        self.pending = sorted((c for c in self.copies if c.after is None), key=lambda c: c.arrival)
        self.waiting = [c for c in self.copies if c.after is not None]  # typed after the last
        self.done: list[Command] = []
        self.blocked_until: dict[str, float] = defaultdict(float)  # a project held by a lease
        self.last_end: dict[str, float] = {}

    def unfinished(self) -> bool:
        return bool(
            self.pending
            or self.waiting
            or self.queue
            or any(task.ended is None for task in self.fleet.tasks)
        )

    def arrive(self, t: int) -> bool:
        """Commands due now join the queue (each marked a follow-up or not); any arrived?"""
        arrived = False
        release_typed(self.copies, self.waiting, self.pending, t)
        while self.pending and self.pending[0].arrival <= t:
            arriving = self.pending.pop(0)
            idle_project = all(c.project != arriving.project for c in self.queue) and not any(
                task.current and task.current.project == arriving.project
                for task in self.fleet.tasks
                if task.ended is None
            )
            arriving.follow_up = is_follow_up(
                0 if idle_project else 1,
                self.last_end.get(arriving.project),
                t,
                self.fleet.keep_warm_seconds,
            )
            self.queue.append(arriving)
            arrived = True
        return arrived

    def finish(self, live: list[Task], t: int) -> None:
        """Tasks whose command is due end it (or die trying: a lost one's lease holds its
        project a while)."""
        for task in live:
            current = task.current
            if current and task.busy_until <= t:
                self.done.append(current)
                task.current = None
                if current.lost:
                    task.ended = t
                    current.ended = t + LEASE_SECONDS
                else:
                    task.idle_since = t
                    current.ended = t
                self.blocked_until[current.project] = self.last_end[current.project] = current.ended

    def take_work(self, live: list[Task], busy: set[str], t: int) -> None:
        """Each ready idle task takes the next command it may (one at a time)."""
        idle = {
            str(index): task.idle_since
            for index, task in enumerate(live)
            if task.ended is None
            and task.ready_at <= t
            and not task.current
            and task.idle_since is not None
        }
        for name in list(idle):
            task = live[int(name)]
            held = is_held(name, idle, self.fleet.held)
            command = next_command(
                self.fleet, self.queue, busy, self.blocked_until, t, follow_ups_only=held
            )
            if command is None:
                continue
            del idle[name]
            self.queue.remove(command)
            busy.add(command.project)
            command.started = t
            if self.fleet.crash_rate and self.rng.random() < self.fleet.crash_rate:
                command.lost = True
                task.busy_until = t + self.rng.uniform(0, command.duration)
            else:
                task.busy_until = t + command.duration
            task.current, task.idle_since, task.served = command, None, True

    def scale(self, busy: set[str], t: int) -> None:
        """What the fleet's scaler sees now, and the tasks its policy launches."""
        fleet = self.fleet
        live = [task for task in fleet.tasks if task.ended is None]
        with_work = {c.project for c in self.queue} | busy
        recent = [c for c in self.done if c.ended and t - c.ended < fleet.keep_warm_seconds]
        recent += [*self.queue, *(task.current for task in live if task.current)]
        interactive, others = interactive_and_others((c.project, c.follow_up) for c in recent)
        fleet.reserve = warm_reserve(len(interactive), len(others), fleet.shares)
        observed = Observed(
            running=sum(1 for task in live if task.ready_at <= t),
            starting=sum(1 for task in live if task.ready_at > t) if fleet.ordered else 0,
            projects=len(with_work),
            visible=len(self.queue),
            reserve=fleet.reserve,
        )
        if fleet.top_up:  # the reserve, and the workers of projects that will keep them
            began = {k.current.project: k.current.started or t for k in live if k.current}
            lasting = lasting_projects((c.project for c in self.queue), began, t)
            observed = replace(observed, projects=lasting)
        fleet.held = held_within(
            held_for_follow_ups(len(interactive), fleet.shares), observed, LIMITS
        )
        for _ in range(fleet.decide(observed, LIMITS)):
            fleet.tasks.append(
                Task(launched=t, ready_at=t + START_DELAY, idle_since=t + START_DELAY)
            )


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
    """The fleets compared against the bound one: the old orchestrator and the shared fleet
    berth ran before a worker served one tenant."""
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
            "shared (before)",
            berth_launch,
            tick_seconds=60,
            on_arrival=True,
            idle_seconds=BERTH_IDLE_SECONDS,
            ordered=True,
            crash_rate=CRASH_RATE,
            keep_warm_seconds=SHARED_KEEP_WARM_SECONDS,
            shares=SHARES_DEFAULT,
            top_up=True,
        ),
    ]


def task_seconds(fleet: Fleet) -> float:
    return sum((task.ended or fleet.ended_at) - task.launched for task in fleet.tasks)


# --- the bound fleet: one tenant per worker task ----------------------------------------------


@dataclass(frozen=True)
class BoundPolicy:
    name: str
    share: float = DEFAULTS.warm_reserve_share
    minimum: int = DEFAULTS.reserve_minimum
    keep_warm: int = DEFAULTS.keep_warm_seconds
    idle_seconds: int = DEFAULTS.idle_seconds
    window: int = DEFAULTS.reserve_window_seconds
    max_per_user: int = LimitSettings().max_workers_per_user
    max_tasks: int = LIMITS.max_tasks
    learns: bool = True
    """A worker whose user queued a command while another ran leaves ``idle_seconds`` after
    its last command, not ``keep_warm`` (the worker's ``scripted``)."""


BOUND_DEFAULT = BoundPolicy("bound (defaults)")
FRONTIER = (
    BoundPolicy("  the same, K for every user", learns=False),
    BoundPolicy("  no reserve, K 90 s", share=0.0, minimum=0, keep_warm=90),
    BoundPolicy("  reserve 0.3 / min 1", minimum=1),
    BoundPolicy("  reserve 0.4 / min 4, K 50 s", share=0.4, minimum=4, keep_warm=50),
    BoundPolicy("  the same, K for every user ", share=0.4, minimum=4, keep_warm=50, learns=False),
    BoundPolicy("  reserve 0.3 / min 2, K 40 s", keep_warm=40),
)
"""Other settings beside the defaults: what ``warm_reserve_share``, ``reserve_minimum`` and
``keep_warm_seconds`` trade."""


@dataclass
class BoundTask:
    name: str
    launched: float
    ready_at: float
    user: str | None
    free_at: float
    """When it may take a command (booted, or bound from the reserve a moment ago)."""
    idle_since: float
    ended: float | None = None
    current: Command | None = None
    busy_until: float = 0.0
    scripted: bool = False
    """Its user queued a command while another ran: scripted work, not a person reading."""


@dataclass
class Calls:
    """AWS calls a run implies, counted as the scaler, the API and the workers make them."""

    run_task: int = 0
    boots: int = 0
    sqs: float = 0.0
    dynamodb: float = 0.0
    peak_tasks_per_run: int = 0
    fleet_writes: float = 0.0
    """Writes of the one FLEET item (each worker says it is idle or alive every 20 s)."""


def owner(project: str) -> str:
    """Who owns a trace's project: a burst's user, one of four users for the trickle's
    projects, a person at a terminal."""
    kind, _, number = project.rpartition("-")
    if kind.endswith("trickle"):
        return f"{kind}-owner-{int(number) % 4}"
    return project


@dataclass
class BoundRun:
    policy: BoundPolicy
    tasks: list[BoundTask] = field(default_factory=list)
    calls: Calls = field(default_factory=Calls)
    ended_at: int = 0
    reserve: int = 0
    """The reserve the scaler last published, and when."""
    reserve_at: float = -math.inf

    def task_seconds(self) -> float:
        return sum((task.ended or self.ended_at) - task.launched for task in self.tasks)


def simulate_bound(run: BoundRun, commands: list[Command], seed: int) -> list[Command]:
    """The bound fleet, with the scaler's and the workers' own policy code
    (``functions/workers/scaling.py``): each user's commands go to workers bound to them
    (one per busy project, up to ``max_per_user``), bound from the idle reserve or started
    bound; a bound worker leaves after ``keep_warm`` without a command, an unbound one after
    ``idle_seconds`` beyond the reserve."""
    rng = random.Random(seed)
    queue: deque[Command] = deque()
    copies = [Command(c.project, c.arrival, c.duration, c.after, c.think) for c in commands]
    pending = sorted((c for c in copies if c.after is None), key=lambda c: c.arrival)
    waiting = [c for c in copies if c.after is not None]
    done: list[Command] = []
    blocked_until: dict[str, float] = defaultdict(float)
    t = 0
    while (
        pending or waiting or queue or any(k.ended is None for k in run.tasks)
        or t < TRACE_SECONDS
    ):  # fmt: skip
        arrived = _arrive(copies, pending, waiting, queue, t, run.calls)
        live = [task for task in run.tasks if task.ended is None]
        for task in live:
            _finish(task, t, done, blocked_until)
        busy = {task.current.project for task in live if task.current}
        for task in live:
            if task.user is not None and task.current is None and task.free_at <= t:
                command = _next_of(task.user, queue, busy, blocked_until, t)
                if command is not None:
                    task.scripted |= any(
                        owner(c.project) == task.user for c in queue if c is not command
                    )
                    _start(task, command, t, rng, queue, busy, run.calls)
        _leave(run, live, t)
        if arrived or t % 60 == 0:
            _scale(run, queue, done, t)
        _count_idle_calls(run, t)
        t += 1
        if t > 10 * TRACE_SECONDS:
            raise RuntimeError("the simulation did not drain")
    check_order(done)
    run.ended_at = t
    return done


def _arrive(
    copies: list[Command],
    pending: list[Command],
    waiting: list[Command],
    queue: deque[Command],
    t: int,
    calls: Calls,
) -> bool:
    release_typed(copies, waiting, pending, t)
    arrived = False
    while pending and pending[0].arrival <= t:
        queue.append(pending.pop(0))
        calls.sqs += 1  # SendMessage
        calls.dynamodb += 4  # the project's owner, the record and the count, its sequence
        arrived = True
    return arrived


def _finish(task: BoundTask, t: int, done: list[Command], blocked_until: dict[str, float]) -> None:
    current = task.current
    if current is None or task.busy_until > t:
        return
    done.append(current)
    task.current = None
    if current.lost:  # the task died; its lease holds the project a while
        task.ended = t
        current.ended = t + LEASE_SECONDS
    else:
        task.idle_since = task.free_at = current.ended = t
    blocked_until[current.project] = current.ended


def _next_of(
    user: str, queue: deque[Command], busy: set[str], blocked_until: dict[str, float], t: int
) -> Command | None:
    heads: set[str] = set()
    for command in queue:  # the first command of each of the user's projects, in order
        if owner(command.project) != user or command.project in heads:
            continue
        heads.add(command.project)
        if command.project not in busy and blocked_until[command.project] <= t:
            return command
    return None


def _start(
    task: BoundTask,
    command: Command,
    t: int,
    rng: random.Random,
    queue: deque[Command],
    busy: set[str],
    calls: Calls,
) -> None:
    queue.remove(command)
    busy.add(command.project)
    command.started = t
    if rng.random() < CRASH_RATE:
        command.lost = True
        task.busy_until = t + rng.uniform(0, command.duration)
    else:
        task.busy_until = t + command.duration
    task.current = command
    heartbeats = command.duration / (LEASE_SECONDS / 3)
    calls.sqs += 2 + heartbeats  # receive, delete; visibility renewed each heartbeat
    calls.dynamodb += 4 + heartbeats  # read, claim, the final transaction (2); lease renewals


def _leave(run: BoundRun, live: list[BoundTask], t: int) -> None:
    policy = run.policy
    reserve = _reserve(run, t)
    idle = {
        task.name: task.idle_since
        for task in live
        if task.user is None and task.ready_at <= t and task.ended is None
    }
    for task in live:
        if task.ended is not None or task.current is not None or task.free_at > t:
            continue
        if task.user is not None:
            tail = policy.idle_seconds if policy.learns and task.scripted else policy.keep_warm
            if t - task.idle_since >= tail:
                task.ended = t
        elif t - task.idle_since >= policy.idle_seconds and scaling.may_leave(
            task.name, idle, reserve
        ):
            task.ended = t
            del idle[task.name]


def _reserve(run: BoundRun, t: int) -> int:
    """The reserve an idle worker reads: void once the scaler has not republished it for
    three minutes (``workers.reserve.RESERVE_SECONDS``)."""
    return run.reserve if t - run.reserve_at < RESERVE_SECONDS else 0


def _scale(run: BoundRun, queue: deque[Command], done: list[Command], t: int) -> None:
    policy = run.policy
    live = [task for task in run.tasks if task.ended is None]
    with_work: dict[str, set[str]] = defaultdict(set)
    for command in [*queue, *(task.current for task in live if task.current)]:
        with_work[owner(command.project)].add(command.project)
    recent = {c.project for c in done if c.ended and t - c.ended < policy.window}
    recent |= {project for projects in with_work.values() for project in projects}
    reserve = scaling.warm_reserve(len(recent), policy.share, policy.minimum)
    run.reserve, run.reserve_at = reserve, t
    bound: dict[str, int] = defaultdict(int)
    for task in live:
        if task.user is not None:
            bound[task.user] += 1
    idle = sorted(
        (k for k in live if k.user is None and k.ready_at <= t), key=lambda k: -k.idle_since
    )
    decided = scaling.plan(
        scaling.bound_wanted(with_work, policy.max_per_user),
        bound,
        [k.name for k in idle],
        sum(1 for k in live if k.user is None and k.ready_at > t),
        reserve,
        len(live),
        policy.max_tasks,
    )
    by_name = {task.name: task for task in idle}
    for user, names in decided.bind.items():
        for name in names:  # it sees its binding within a poll
            by_name[name].user, by_name[name].free_at = user, t + 1
    launched = 0
    starts: list[tuple[str | None, int]] = [*decided.launch_bound.items()]
    for bound_to, count in [*starts, (None, decided.launch_reserve)]:
        for _ in range(count):
            ready = t + START_DELAY
            run.tasks.append(BoundTask(f"w{len(run.tasks)}", t, ready, bound_to, ready, ready))
        run.calls.run_task += math.ceil(count / 10)
        launched += count
    run.calls.boots += launched
    run.calls.peak_tasks_per_run = max(run.calls.peak_tasks_per_run, launched)
    run.calls.dynamodb += 3 + 2 * sum(len(n) for n in decided.bind.values())


def _count_idle_calls(run: BoundRun, t: int) -> None:
    for task in run.tasks:
        if task.ended is not None or task.ready_at > t or task.current is not None:
            continue
        if task.user is None:
            run.calls.dynamodb += 1 / 0.5 + 1 / 20  # its binding every 0.5 s; idle every 20 s
        else:
            run.calls.sqs += 1 / 20  # a long poll of its user's queue
            run.calls.dynamodb += 1 / 20  # alive
        run.calls.fleet_writes += 1 / 20


# --- figures ----------------------------------------------------------------------------------

FARGATE_HOUR = 0.5 * 0.03238 + 1 * 0.00356
"""The default worker (0.5 vCPU, 1 GB, arm64) on Fargate, us-east-1 on-demand, per hour."""


def active_user_hours(done: list[Command], window: float = 120) -> float:
    """Hours during which a user had a command queued or running, or ended ``window`` s ago."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for command in done:
        spans[owner(command.project)].append((command.arrival, command.ended + window))
    total = 0.0
    for intervals in spans.values():
        end = -math.inf
        for start, stop in sorted(intervals):
            total += max(0.0, stop - max(start, end))
            end = max(end, stop)
    return total / 3600


def waits_of_people(done: list[Command]) -> tuple[list[float], list[float]]:
    first: list[float] = []
    follow: list[float] = []
    for command in done:
        if command.project.startswith("user-"):
            (follow if command.after is not None else first).append(
                (command.started or 0) - command.arrival
            )
    return first, follow


@dataclass
class Row:
    first: list[float] = field(default_factory=list)
    follow: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    dollars: list[float] = field(default_factory=list)
    bursts_p95: list[float] = field(default_factory=list)
    bursts_ratio: list[float] = field(default_factory=list)


def run_traces(seeds: range) -> tuple[dict[str, Row], list[float]]:
    rows: dict[str, Row] = defaultdict(Row)
    clairvoyant: list[float] = []
    policies = (BOUND_DEFAULT, *FRONTIER)
    for seed in seeds:
        baseline = 0.0
        for fleet in fleets():  # the depth-only fleet first: the baseline
            done = simulate(fleet, people_and_bursts(seed), seed)
            baseline = baseline or task_seconds(fleet)
            _record(rows[fleet.name], done, task_seconds(fleet), baseline)
        for policy in policies:
            run = BoundRun(policy)
            done = simulate_bound(run, people_and_bursts(seed), seed)
            _record(rows[policy.name], done, run.task_seconds(), baseline)
        clairvoyant.append(clairvoyant_task_seconds(people_and_bursts(seed)) / baseline)
        bursts_baseline = 0.0
        for fleet in fleets():
            done = simulate(fleet, trace(seed), seed)
            bursts_baseline = bursts_baseline or task_seconds(fleet)
            rows[fleet.name].bursts_p95.append(
                percentile(waits_for_a_worker(done, fleet.ordered), 0.95)
            )
            rows[fleet.name].bursts_ratio.append(task_seconds(fleet) / bursts_baseline)
        for policy in policies:
            run = BoundRun(policy)
            done = simulate_bound(run, trace(seed), seed)
            rows[policy.name].bursts_p95.append(percentile(waits_for_a_worker(done, True), 0.95))
            rows[policy.name].bursts_ratio.append(run.task_seconds() / bursts_baseline)
    return rows, clairvoyant


def _record(row: Row, done: list[Command], seconds: float, baseline: float) -> None:
    first, follow = waits_of_people(done)
    row.first += first
    row.follow += follow
    row.ratio.append(seconds / baseline)
    row.dollars.append(seconds / 3600 * FARGATE_HOUR / active_user_hours(done))


def at_scale(seeds: range, factor: int) -> tuple[BoundRun, list[Command]]:
    """``factor`` traces at once (``factor`` times the users, in the same 10 minutes) through
    the bound fleet with no ceiling: the AWS calls it implies."""
    commands: list[Command] = []
    for seed in seeds[:1]:
        for copy in range(factor):
            joined = people_and_bursts(seed * 1000 + copy)
            offset = len(commands)
            for command in joined:
                command.project = f"{copy}:{command.project}"
                if command.after is not None:
                    command.after += offset
            commands += joined
    run = BoundRun(replace(BOUND_DEFAULT, max_tasks=100_000))
    done = simulate_bound(run, commands, seeds[0])
    return run, done


def main() -> None:
    first_seed = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    factor = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    seeds = range(first_seed, first_seed + runs)
    rows, clairvoyant = run_traces(seeds)
    print(
        f"{runs} traces (median): people and bursts - a person's first command p50, follow-up "
        "p50 / p95, task-seconds, $ per active user-hour; bursts alone - worker wait p95, "
        "task-seconds"
    )
    for name, row in rows.items():
        print(
            f"  {name:<32} first {statistics.median(row.first):5.1f} s   follow-up "
            f"{statistics.median(row.follow):4.1f} / {percentile(row.follow, 0.95):5.1f} s   "
            f"task-seconds: median {statistics.median(row.ratio):.2f}x depth-only   "
            f"${statistics.median(row.dollars):.4f}/user-h   bursts p95 "
            f"{statistics.median(row.bursts_p95):5.1f} s at "
            f"{statistics.median(row.bursts_ratio):.2f}x"
        )
    print(
        f"  {'clairvoyant (shared rules)':<32} zero waits, estimated{'':>25}"
        f"task-seconds: median {statistics.median(clairvoyant):.2f}x depth-only"
    )
    run, done = at_scale(seeds, factor)
    seconds = TRACE_SECONDS
    users = len({owner(c.project) for c in done})
    print(
        f"at {factor}x the users ({users} users, {len(done)} commands in {seconds // 60} min), "
        "the bound fleet's AWS calls per second (mean over the trace; RunTask's rate quota "
        "is 20/s):"
    )
    calls = run.calls
    print(
        f"  RunTask {calls.run_task / seconds:.2f}/s (peak {calls.peak_tasks_per_run} tasks "
        f"in one scaler run), worker boots {calls.boots / seconds:.2f}/s, SQS "
        f"{calls.sqs / seconds:.0f}/s, DynamoDB {calls.dynamodb / seconds:.0f}/s, "
        f"peak fleet {max_live(run)} tasks"
    )
    entry_bytes = 80  # "bound:<task id>": {"user", "seen"}
    item_kb = math.ceil(max_live(run) * entry_bytes / 1024)
    print(
        f"  the FLEET item at the peak: ~{item_kb} KB (400 KB at most), written "
        f"{calls.fleet_writes / seconds:.0f}/s = ~{calls.fleet_writes / seconds * item_kb:.0f} "
        "WCU/s on one key (a partition serves 1,000)"
    )


def max_live(run: BoundRun) -> int:
    events = sorted(
        [(task.launched, 1) for task in run.tasks]
        + [(task.ended if task.ended is not None else run.ended_at, -1) for task in run.tasks]
    )
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


if __name__ == "__main__":
    main()
