"""``make chaos``: a mixed workload through the berth client against ``make local`` with AWS
failing under it (``BERTH_LOCAL_FAULTS``), then an audit of what the emulator holds.

    python -m infra.sandbox.chaos --faults all=0.1,seed=1            # the full run
    python -m infra.sandbox.chaos --faults all=0.3,seed=1 --short    # what make test runs

The workload is what users do: sessions started and stopped, commands in many projects (each
appends its number to the project's ``order.log`` and prints a line of its own), jobs of both
runners (Lambda and Fargate), instances created and deleted. It calls the API as the client
does (retrying 429 and 503 as told) and waits like a patient user; every answer is kept. Then
``audit`` checks berth's promises on the emulator's state, and a table says what happened.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from berth_client import Answered, ApiError, BerthClient, Settings
from infra.sandbox.audit import Accepted, Answer, History, State, audit, report
from infra.sandbox.faults import STATS_PATH
from infra.sandbox.launch import Launched, launch

T = TypeVar("T")
LIMITS = frozenset({"command_limit", "session_limit", "instance_limit", "routing_full"})
"""Refusals a patient user waits out (documented 429s: something of theirs must end first)."""
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}
USERS = ("alice", "bob", "cli", "fuzzer", "smoke")
"""The sandbox's signing users; the workload spreads over all of them."""
JOBS = (
    ("checksum", lambda n: {"text": f"chaos {n}"}),
    ("render", lambda n: {"width": 16, "height": 12, "frames": 1, "iterations": 10 + n % 5}),
)
"""One job of each runner: Lambda (checksum) and Fargate (render)."""
BLOB = "walrus_Blob-1"
WAIT_SECONDS = 300.0
SANDBOX_ENV = {"BERTH_LOCAL_SCHEDULE_SECONDS": "2"}
"""Scheduled functions (reaper, reconciler, scaler) every 2 s instead of every minute."""


@dataclass(frozen=True)
class Size:
    sessions: int
    commands: int
    projects: int
    jobs: int
    instances: int

    def __str__(self) -> str:
        return (
            f"{self.sessions} sessions, {self.commands} commands in {self.projects} projects, "
            f"{self.jobs} jobs, {self.instances} instances"
        )


FULL = Size(sessions=30, commands=200, projects=20, jobs=30, instances=5)
SHORT = Size(sessions=5, commands=30, projects=5, jobs=4, instances=2)


class Patient:
    """The berth client for one user, as a patient caller: the client's own retries, then
    more after a pause while the API keeps saying ``unavailable`` or a limit is reached."""

    def __init__(self, up: Launched, user: str, heard: Callable[[Answered], None]) -> None:
        self.user = user
        self.api = BerthClient(
            Settings(
                api_url=up.url,
                profile=f"berth-local-{user}",
                config_file=up.aws_config,
                credentials_file=up.aws_credentials,
            ),
            retries=6,
            on_answer=heard,
        )

    def __call__(self, action: Callable[[], T], waiting_for: frozenset[str] = frozenset()) -> T:
        """``action`` until it answers; ``waiting_for`` error codes (a limit) wait too."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                return action()
            except ApiError as error:
                if error.code != "unavailable" and error.code not in waiting_for:
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.user}: still {error} after {WAIT_SECONDS} s"
                    ) from error
                time.sleep(1)

    def wait(self, read: Callable[[], Any], statuses: set[str]) -> Any:
        return self.api.wait_for(lambda: self(read), statuses, timeout=WAIT_SECONDS, interval=0.5)


@dataclass
class Workload:
    up: Launched
    size: Size
    history: History = field(default_factory=History)
    problems: list[str] = field(default_factory=list)
    """What went wrong for the workload itself (a wait that timed out, an error answer)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.callers = {user: Patient(self.up, user, self._heard) for user in USERS}
        self._templates: list[tuple[list[str], str]] = []

    def run(self) -> None:
        document = self.callers["alice"](
            lambda: self.callers["alice"].api.request("GET", "/openapi.json")
        )
        self._read_document(document)
        steps: list[Callable[[], None]] = []
        for p, count in enumerate(_spread(self.size.commands, self.size.projects)):
            steps.append(partial(self.commands, USERS[p % len(USERS)], f"chaos-{p}", count))
        for u, count in enumerate(_spread(self.size.sessions, len(USERS))):
            steps.append(partial(self.sessions, USERS[u], count))
        steps += [partial(self.job, USERS[n % len(USERS)], n) for n in range(self.size.jobs)]
        steps += [partial(self.instance, USERS[n % len(USERS)]) for n in range(self.size.instances)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            for done in [pool.submit(self._step, step) for step in steps]:
                done.result()

    # --- the users' parts --------------------------------------------------------------------

    def commands(self, user: str, project: str, count: int) -> None:
        """``count`` commands into ``project``, one after the other without waiting for them
        (each waits only while the user's queue is full), then each to its end."""
        call = self.callers[user]
        accepted = []
        for n in range(count):
            prints = f"{project} #{n} ✓\n"
            text = f"echo {n} >> order.log && printf '%s\\n' '{prints.strip()}'"
            queued = call(partial(call.api.run_command, project, text), LIMITS)
            command = Accepted(queued.id, project, user, n, prints)
            with self._lock:
                self.history.commands.append(command)
            accepted.append(command)
        for command in accepted:
            call.wait(partial(call.api.command, project, command.id), ENDED)

    def sessions(self, user: str, count: int) -> None:
        call = self.callers[user]
        for _ in range(count):
            session = call(partial(call.api.start_session, "default"), LIMITS)
            with self._lock:
                self.history.sessions.append(session.id)
            call.wait(partial(call.api.session, session.id), {"RUNNING", "FAILED", "STOPPED"})
            call(partial(call.api.stop_session, session.id))
            call.wait(partial(call.api.session, session.id), {"STOPPED", "FAILED"})

    def job(self, user: str, n: int) -> None:
        call = self.callers[user]
        name, payload = JOBS[n % len(JOBS)]
        key = str(uuid.uuid4())  # the same key on every retry: one job however often asked
        job = call(lambda: call.api.run_job(name, payload(n), idempotency_key=key))
        with self._lock:
            self.history.jobs.append(job.id)
        call.wait(lambda: call.api.job(job.id), {"SUCCEEDED", "FAILED"})

    def instance(self, user: str) -> None:
        call = self.callers[user]
        created = call(lambda: call.api.create_instance(BLOB), LIMITS)
        with self._lock:
            self.history.instances.append(created.id)
        call.wait(lambda: call.api.instance(created.id), {"ready", "failed"})
        call(lambda: call.api.delete_instance(created.id))
        call.wait(lambda: call.api.instance(created.id), {"terminated", "failed"})

    # --- bookkeeping -------------------------------------------------------------------------

    def _step(self, step: Callable[[], None]) -> None:
        try:
            step()
        except (ApiError, TimeoutError) as error:
            with self._lock:
                self.problems.append(str(error))

    def _heard(self, answered: Answered) -> None:
        answer = Answer(
            answered.method,
            self._template(answered.path),
            answered.status,
            answered.code,
            answered.retry_after is not None,
        )
        with self._lock:
            self.history.answers.append(answer)

    def _read_document(self, document: dict[str, Any]) -> None:
        for path, operations in document["paths"].items():
            self._templates.append((path.strip("/").split("/"), path))
            for method, operation in operations.items():
                self.history.documented[(method.upper(), path)] = {
                    int(status) for status in operation.get("responses", {}) if status.isdigit()
                }
        # literal segments before parameters: /jobs/catalogue before /jobs/{job_id}
        self._templates.sort(key=lambda t: [part.startswith("{") for part in t[0]])

    def _template(self, path: str) -> str:
        parts = path.split("?", 1)[0].strip("/").split("/")
        for template, name in self._templates:
            if len(template) == len(parts) and all(
                t.startswith("{") or t == p for t, p in zip(template, parts, strict=True)
            ):
                return name
        return path


def _spread(total: int, over: int) -> list[int]:
    return [total // over + (1 if i < total % over else 0) for i in range(over)]


@dataclass
class Outcome:
    faults: str
    size: Size
    seconds: float
    history: History
    problems: list[str]
    violations: dict[str, list[str]]
    injected: Counter[str]
    aws_requests: int
    aws_retries: int
    events: int = 0

    @property
    def held(self) -> bool:
        return not self.problems and not any(self.violations.values())

    def table(self) -> str:
        answers = Counter(_kind(a) for a in self.history.answers)
        broken = sum(len(v) for v in self.violations.values())
        rows = [
            ("faults", self.faults),
            ("workload", str(self.size)),
            ("took", f"{self.seconds:.0f} s"),
            ("API requests", str(len(self.history.answers))),
            ("  answered 2xx", str(answers["2xx"])),
            ("  answered 4xx (documented limits, waited on)", str(answers["4xx"])),
            ("  answered 503 unavailable + Retry-After", str(answers["503"])),
            ("  answered anything else", str(answers["other"])),
            ("AWS calls by functions and containers", str(self.aws_requests)),
            ("  of them retries (botocore standard mode)", str(self.aws_retries)),
            ("events handed to their targets (EventBridge)", str(self.events)),
            ("faults injected", str(sum(self.injected.values()))),
            *((f"  {code}", str(n)) for code, n in self.injected.most_common()),
            ("invariants checked", str(len(self.violations))),
            ("violations", str(broken)),
            ("workload problems (timeouts, errors)", str(len(self.problems))),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'':{width}} | |", f"|{'-' * (width + 2)}|---|"]
        lines += [f"| {name:{width}} | {value} |" for name, value in rows]
        return "\n".join(lines)


def _kind(answer: Answer) -> str:
    if 200 <= answer.status < 300:
        return "2xx"
    if answer.status == 503 and answer.retry_after:
        return "503"
    return "4xx" if 400 <= answer.status < 500 else "other"


def chaos(faults: str, size: Size, context: dict[str, Any] | None = None) -> Outcome:
    """Starts make local with ``faults``, runs the workload, audits, stops it."""
    began = time.monotonic()
    up = launch(context or {}, {**SANDBOX_ENV, "BERTH_LOCAL_FAULTS": faults})
    try:
        return run_against(up, faults, size, began)
    finally:
        up.stop()


def run_against(up: Launched, faults: str, size: Size, began: float | None = None) -> Outcome:
    """The workload and the audit against a sandbox already up (the tests share one)."""
    began = time.monotonic() if began is None else began
    workload = Workload(up, size)
    workload.run()
    state = State.read(up.aws, workload.history)
    violations = audit(state, workload.history)
    counted: dict[str, Any] = {"requests": 0, "retries": 0, "events": 0, "injected": {}}
    if up.fault_log:  # the fault layer is there: it counted
        with urllib.request.urlopen(f"{up.emulator}{STATS_PATH}", timeout=30) as answer:  # noqa: S310
            counted = json.loads(answer.read())
    return Outcome(
        faults, size, time.monotonic() - began, workload.history, workload.problems,
        violations, Counter(counted["injected"]), counted["requests"], counted["retries"],
        counted["events"],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.sandbox.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--faults", default="all=0.1,seed=1", help="BERTH_LOCAL_FAULTS")
    parser.add_argument("--short", action="store_true", help=f"the short workload ({SHORT})")
    args = parser.parse_args(argv)
    outcome = chaos(args.faults, SHORT if args.short else FULL)
    print(outcome.table())
    if outcome.problems:
        print("\nworkload problems:\n" + "\n".join(sorted(set(outcome.problems))))
    if any(outcome.violations.values()):
        print("\nviolations:\n" + report(outcome.violations))
    return 0 if outcome.held else 1


if __name__ == "__main__":
    sys.exit(main())
