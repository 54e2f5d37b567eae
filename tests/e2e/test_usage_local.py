"""Usage and budgets against ``make local``: what a user ran, timed by the test's own clock,
is what ``GET /usage`` says — in seconds and in dollars from the settings' prices — with
every event EventBridge hands over delivered twice; a user over budget starts no new
compute while what runs goes on; only the operator's admins see everyone.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra.sandbox.app import LOCAL_ADMIN
from infra.sandbox.events import local_user_arn
from infra.sandbox.faults import DELIVERY_DELAY_SECONDS
from infra.settings import Settings
from shared.usage import Pricing
from tests.e2e.conftest import FAST_CONTEXT, FAST_ENV, Sandbox
from tests.e2e.test_storage_local import until
from tests.e2e.test_workers_local import run, wait_for
from usage.models import user_id

pytestmark = pytest.mark.e2e

OPERATOR = LOCAL_ADMIN  # make local's admin
KEEP_WARM = 3
SANDBOX_CONTEXT = {
    **FAST_CONTEXT,
    "berth:workers.keep_warm_seconds": KEEP_WARM,
    # the minimums bill a short test as a minute; the test checks the seconds themselves
    "berth:pricing.fargate_minimum_seconds": 0,
    "berth:pricing.ec2_minimum_seconds": 0,
}
SANDBOX_ENV = {**FAST_ENV, "BERTH_LOCAL_FAULTS": "replay=1,seed=11"}
"""Every event (task state changes, executions ended, machines stopped) comes twice."""
PROFILE = "brief"
SESSION_SECONDS = 20.0
PRICES = Pricing()
SETTINGS = Settings.from_context(
    {f"berth:{k.removeprefix('berth:')}": v for k, v in SANDBOX_CONTEXT.items()}
)


def billed_seconds(sandbox: Sandbox, task_arn: str) -> float:
    """What ECS says the task was billed for: from its image pull to its stop."""
    ecs = sandbox.aws("ecs")
    cluster = task_arn.split(":task/")[1].split("/")[0]
    (task,) = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"]
    return float((task["stoppedAt"] - task["pullStartedAt"]).total_seconds())


@dataclass
class Window:
    """What the test saw of one unit: it began in [outer_start, inner_start] and ended in
    [inner_end, outer_end] (the test's clock, epoch seconds)."""

    outer_start: float
    inner_start: float = 0.0
    inner_end: float = 0.0
    outer_end: float = 0.0

    @property
    def longest(self) -> float:
        return self.outer_end - self.outer_start

    @property
    def shortest(self) -> float:
        return max(0.0, self.inner_end - self.inner_start)


@dataclass
class WorkerWatch:
    """Watches the emulated ECS for the user's worker tasks with the test's own clock: when
    each first carries the user's tag (bound to them) and when it is seen stopped."""

    sandbox: Sandbox
    user_arn: str
    bound: dict[str, float] = field(default_factory=dict)
    stopped: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        ecs = self.sandbox.aws("ecs")
        while not self.stop.wait(0.05):
            clusters = ecs.list_clusters()["clusterArns"]
            for cluster in clusters:
                arns = [
                    *ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"],
                    *ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"],
                ]
                if not arns:
                    continue
                now = time.time()
                tasks = ecs.describe_tasks(cluster=cluster, tasks=arns, include=["TAGS"])
                for task in tasks["tasks"]:
                    tags = {t["key"]: t["value"] for t in task.get("tags") or []}
                    if tags.get("berth:capability") != "workers":
                        continue
                    if tags.get("berth:user") != self.user_arn:
                        continue
                    worker = task["taskArn"].rsplit("/", 1)[-1]
                    self.bound.setdefault(worker, now)
                    if task["lastStatus"] == "STOPPED":
                        self.stopped.setdefault(worker, now)


def usage_of(sandbox: Sandbox, user: str, group_by: str = "resource") -> dict[str, Any]:
    code, usage = sandbox.request("GET", f"/usage?group_by={group_by}", user=user)
    assert code == 200, usage
    return dict(usage)


def resources(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {group["key"]: group for group in usage["groups"]}


def wait_for_units(
    sandbox: Sandbox, user: str, keys: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        usage = usage_of(sandbox, user)
        if keys <= set(resources(usage)):
            return usage
        time.sleep(0.25)
    raise AssertionError(f"usage of {sorted(keys)} never recorded: {usage}")


def delivered_twice(sandbox: Sandbox) -> Counter[str]:
    """How many events of each kind the sandbox delivered twice (its fault log)."""
    lines = Path(sandbox.fault_log).read_text().splitlines()
    faults = [json.loads(line) for line in lines if line.strip()]
    return Counter(f["operation"] for f in faults if f["code"] == "EventDeliveredTwice")


def fargate_dollars(seconds: float, cpu: int, memory: int) -> float:
    per_hour = cpu / 1024 * PRICES.fargate_vcpu_hour + memory / 1024 * PRICES.fargate_gb_hour
    return seconds / 3600 * per_hour


def test_usage_matches_what_the_user_ran_and_replays_count_once(sandbox: Sandbox) -> None:
    user = "uma"
    watch = WorkerWatch(sandbox, local_user_arn(user))
    watcher = threading.Thread(target=watch.watch, daemon=True)
    watcher.start()

    # a session for a known time, its owner using it (a heartbeat a second) all along
    session_window = Window(time.time())
    code, session = sandbox.request("POST", "/sessions", {"profile": PROFILE}, user=user)
    session_window.inner_start = time.time()
    assert code in (200, 201), session
    using = threading.Event()
    beats: list[tuple[int, str]] = []

    def use() -> None:
        while not using.wait(1):
            beat, shown = sandbox.request("POST", f"/sessions/{session['id']}/heartbeat", user=user)
            beats.append((beat, shown.get("status", "")))

    owner = threading.Thread(target=use, daemon=True)
    owner.start()

    # meanwhile: a job, three commands, an instance
    job_window = Window(time.time())
    code, job = sandbox.request("POST", "/jobs", {"name": "checksum", "input": {"x": 1}}, user=user)
    assert code == 202, job
    commands = [run(sandbox, user, "ledger", f"echo {n}") for n in range(3)]
    instance_window = Window(time.time())
    code, instance = sandbox.request("POST", "/instances", {"blob_id": "walrus_Blob-1"}, user=user)
    assert code == 202, instance

    deadline = time.monotonic() + 60
    while True:
        code, shown = sandbox.request("GET", f"/jobs/{job['id']}", user=user)
        if shown["status"] != "RUNNING":
            job_window.outer_end = time.time()
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert shown["status"] == "SUCCEEDED", shown
    for command in commands:
        assert wait_for(sandbox, user, "ledger", command["id"])["status"] == "SUCCEEDED"
    commands_done = time.time()
    while True:
        code, machine = sandbox.request("GET", f"/instances/{instance['id']}", user=user)
        if machine["status"] in {"ready", "failed"}:
            instance_window.inner_start = time.time()
            break
        assert time.monotonic() < deadline, machine
        time.sleep(0.1)
    assert machine["status"] == "ready", machine
    instance_window.inner_end = time.time()
    code, _ = sandbox.request("DELETE", f"/instances/{instance['id']}", user=user)
    assert code == 202
    instance_window.outer_end = time.time() + 0.0

    until(sandbox, user, session["id"], "RUNNING")
    held_until = session_window.outer_start + SESSION_SECONDS
    while time.time() < held_until:  # the known time: not a wait for a result
        time.sleep(max(0.0, min(1.0, held_until - time.time())))
    using.set()
    owner.join(timeout=10)
    assert beats and all(code == 200 for code, _ in beats), beats
    assert beats[-1][1] == "RUNNING", beats  # never reaped as idle while in use
    session_window.inner_end = time.time()
    code, _ = sandbox.request("DELETE", f"/sessions/{session['id']}", user=user)
    assert code in (200, 202)
    stopped = until(sandbox, user, session["id"], "STOPPED")
    session_window.outer_end = time.time()
    session_arn = str(stopped["task_arn"])

    usage = wait_for_units(sandbox, user, {session["id"], job["id"], instance["id"]})
    # the worker leaves KEEP_WARM seconds after its last command; then its time is counted
    deadline = time.monotonic() + 60
    while not (watch.bound and set(watch.bound) <= set(watch.stopped)):
        assert time.monotonic() < deadline, (watch.bound, watch.stopped)
        time.sleep(0.1)
    watch.stop.set()
    usage = wait_for_units(sandbox, user, {session["id"], *watch.bound})
    units = resources(usage)

    # the session: inside the time the test held it, and exactly its task's billed time (ECS's
    # own clock: from the image pull to the stop — not the test's, which a loaded machine skews)
    profile = SETTINGS.sessions.profiles[PROFILE]
    held = units[session["id"]]
    assert held["capability"] == "sessions" and held["count"] == 1
    assert session_window.shortest <= held["seconds"] <= session_window.longest
    assert held["seconds"] == pytest.approx(billed_seconds(sandbox, session_arn), abs=0.01)
    assert held["dollars"] == pytest.approx(
        fargate_dollars(held["seconds"], profile.cpu, profile.memory), rel=1e-3, abs=2e-8
    )

    # the job: a Lambda job's GB-seconds at the price of the shared runner's memory
    ran = units[job["id"]]
    assert ran["capability"] == "jobs" and ran["count"] == 1
    assert 0 < ran["seconds"] <= job_window.longest
    memory_gb = max(j.memory for j in SETTINGS.jobs.catalogue.values() if j.runtime == "lambda")
    assert ran["units"] == pytest.approx(ran["seconds"] * memory_gb / 1024, abs=0.002)
    assert ran["dollars"] == pytest.approx(
        ran["seconds"] * memory_gb / 1024 * PRICES.lambda_gb_second + PRICES.lambda_request,
        rel=1e-3,
        abs=2e-8,
    )

    # the commands: the time of the worker(s) bound to the user, keep-warm included
    for worker, bound_at in watch.bound.items():
        served = units[worker]
        assert served["capability"] == "workers" and served["count"] == 1
        window = Window(bound_at - 0.1, bound_at, commands_done, watch.stopped[worker])
        assert window.shortest <= served["seconds"] <= window.longest + 0.2, (served, window)
        assert served["dollars"] == pytest.approx(
            fargate_dollars(served["seconds"], SETTINGS.workers.cpu, SETTINGS.workers.memory),
            rel=1e-3,
            abs=2e-8,
        )

    # the instance: its machine's seconds by its type's hourly price
    machine_use = units[instance["id"]]
    assert machine_use["capability"] == "instances"
    assert instance_window.shortest <= machine_use["seconds"]
    assert machine_use["seconds"] <= instance_window.outer_end + 1.0 - instance_window.outer_start
    hourly = PRICES.ec2_hourly[SETTINGS.instances.instance_type]
    assert machine_use["dollars"] == pytest.approx(
        machine_use["seconds"] / 3600 * hourly, rel=1e-3, abs=2e-8
    )

    # each unit counted once although every event came twice (and the sum is the sum)
    assert all(group["count"] == 1 for group in usage["groups"])
    assert usage["total"]["dollars"] == pytest.approx(
        sum(g["dollars"] for g in usage["groups"]), abs=1e-6
    )
    twice = delivered_twice(sandbox)
    assert twice["ECS Task State Change"] and twice["Step Functions Execution Status Change"]
    assert twice["EC2 Instance State-change Notification"], twice
    # a second copy comes at most DELIVERY_DELAY_SECONDS after the first: none changes a thing
    settled = time.monotonic() + DELIVERY_DELAY_SECONDS + 0.5
    while time.monotonic() < settled:
        assert usage_of(sandbox, user)["total"] == usage["total"]
        time.sleep(0.25)

    by_capability = {g["key"]: g for g in usage_of(sandbox, user, "capability")["groups"]}
    assert set(by_capability) == {"sessions", "jobs", "workers", "instances"}


def spent(sandbox: Sandbox, user: str) -> float:
    return float(usage_of(sandbox, user)["budget"]["spent_this_month_usd"])


def test_over_budget_a_user_starts_nothing_new_while_running_work_goes_on(
    sandbox: Sandbox,
) -> None:
    user = "bud"
    path = f"/admin/users/{user_id(local_user_arn(user))}/budget"
    tiny = PRICES.lambda_request / 2  # less than any job costs (one request alone)
    code, budget = sandbox.request("PUT", path, {"monthly_budget_usd": tiny}, user=OPERATOR)
    assert (code, budget["monthly_budget_usd"], budget["over_budget"]) == (200, tiny, False)

    # under budget: a session starts and keeps running
    code, session = sandbox.request("POST", "/sessions", {"profile": PROFILE}, user=user)
    assert code in (200, 201), session
    until(sandbox, user, session["id"], "RUNNING")
    # a job spends past the budget once its time is recorded
    code, job = sandbox.request("POST", "/jobs", {"name": "checksum", "input": {}}, user=user)
    assert code == 202, job
    wait_for_units(sandbox, user, {job["id"]})
    assert spent(sandbox, user) > tiny

    # anything that starts compute is refused, saying why and until when
    refused = [
        sandbox.request("POST", "/jobs", {"name": "checksum", "input": {}}, user=user),
        sandbox.request("POST", "/sessions", {"profile": "default"}, user=user),
        sandbox.request("POST", "/workspaces/spend/commands", {"command": "echo"}, user=user),
        sandbox.request("POST", "/instances", {"blob_id": "walrus_Blob-1"}, user=user),
    ]
    for code, error in refused:
        assert (code, error["error"]["code"]) == (429, "budget_exceeded"), error
        assert "$0.0000" in error["error"]["message"] and "until 20" in error["error"]["message"]
    code, shown = sandbox.request("GET", "/usage", user=user)
    assert shown["budget"]["over_budget"] is True and shown["budget"]["resets_at"].endswith(
        "-01T00:00:00Z"
    )
    # ...while what runs goes on: the session is still up and its owner can keep using it
    beat, alive = sandbox.request("POST", f"/sessions/{session['id']}/heartbeat", user=user)
    assert (beat, alive["status"]) == (200, "RUNNING")
    # another user is not touched
    code, other = sandbox.request("POST", "/jobs", {"name": "checksum", "input": {}}, user="dot")
    assert code == 202, other

    # the operator raises the budget (null: back to the default, none): the user is in again
    code, budget = sandbox.request("PUT", path, {"monthly_budget_usd": None}, user=OPERATOR)
    assert (code, budget["monthly_budget_usd"], budget["over_budget"]) == (200, None, False)
    code, again = sandbox.request("POST", "/jobs", {"name": "checksum", "input": {}}, user=user)
    assert code == 202, again
    code, _ = sandbox.request("DELETE", f"/sessions/{session['id']}", user=user)
    assert code in (200, 202)


def test_only_the_operators_admins_see_every_user(sandbox: Sandbox) -> None:
    user = "ada"
    code, job = sandbox.request("POST", "/jobs", {"name": "checksum", "input": {}}, user=user)
    assert code == 202, job
    wait_for_units(sandbox, user, {job["id"]})

    for path in ("/admin/usage", f"/admin/users/{user_id(local_user_arn(user))}/usage"):
        code, error = sandbox.request("GET", path, user=user)  # an ordinary caller
        assert (code, error["error"]["code"]) == (403, "forbidden"), error
    code, error = sandbox.request(
        "PUT", f"/admin/users/{user_id(local_user_arn(user))}/budget",
        {"monthly_budget_usd": 1000}, user=user,
    )  # fmt: skip
    assert code == 403, error
    code, error = sandbox.signed("GET", "/admin/usage")  # SigV4-signed as alice: refused too
    assert code == 403, error

    code, listing = sandbox.request("GET", "/admin/usage", user=OPERATOR)
    assert code == 200, listing
    users = {row["user"]: row for row in listing["users"]}
    assert local_user_arn(user) in users
    dollars = [row["dollars"] for row in listing["users"]]
    assert dollars == sorted(dollars, reverse=True)  # the most spent first
    assert listing["total_dollars"] == pytest.approx(sum(dollars), abs=1e-7)
    row = users[local_user_arn(user)]
    code, theirs = sandbox.request("GET", f"/admin/users/{row['user_id']}/usage", user=OPERATOR)
    assert code == 200, theirs
    assert theirs["user"] == local_user_arn(user)
    assert theirs["total"]["dollars"] == pytest.approx(row["dollars"], abs=1e-7)
    assert theirs["total"] == usage_of(sandbox, user, "capability")["total"]
    code, error = sandbox.request("GET", "/admin/users/not-a-user!/usage", user=OPERATOR)
    assert code in (400, 404), error
