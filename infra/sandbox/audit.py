"""After a chaos run: what the emulator holds, read back, and berth's promises checked on it.

``State.read`` takes everything the invariants look at out of the emulator (with the sandbox's
own key, so the auditor itself is never faulted) as plain data; ``History`` is what the
workload was told (which commands were accepted and what they print, which jobs, sessions and
instances it started, every answer); each invariant is a pure function of the two returning
what breaks it. A unit test breaks each one on purpose and sees it reported.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from instances.models import ID_TAG
from sessions.routing import ROUTING_TAG, SESSION_TAG
from sessions.tasks import STARTED_BY_PREFIX
from sessions.warm import WARM_STARTED_BY
from shared.config import env_name
from shared.records import plain
from workers.models import log_key, workspace_prefix

Aws = Callable[[str], Any]
"""A client of the emulator by service name (``Launched.aws``)."""

SESSION_LIVE = {"PENDING", "STARTING", "RUNNING"}
COMMAND_PENDING = {"QUEUED", "RUNNING"}
COMMAND_ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}
INSTANCE_ENDED = {"failed", "terminated"}
ORDER_LOG = "order.log"
"""Each workload command appends its number to this file of its project's workspace."""


@dataclass(frozen=True)
class Answer:
    """One answer the API gave the workload."""

    method: str
    route: str
    """The route's template, as the OpenAPI document names it (``/sessions/{session_id}``)."""
    status: int
    code: str = ""
    retry_after: bool = False


@dataclass(frozen=True)
class Accepted:
    """A command the API accepted (202): what it prints and the number it appends."""

    id: str
    project: str
    user: str
    number: int
    prints: str


@dataclass
class History:
    answers: list[Answer] = field(default_factory=list)
    documented: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    """Each operation's documented statuses, from the API's OpenAPI document."""
    commands: list[Accepted] = field(default_factory=list)
    """In the order they were accepted (a project's commands are submitted one at a time)."""
    sessions: list[str] = field(default_factory=list)
    """Sessions the workload started and then stopped."""
    jobs: list[str] = field(default_factory=list)
    """Jobs the workload started, every one meant to succeed."""
    instances: list[str] = field(default_factory=list)
    """Instances the workload created and then deleted."""


@dataclass
class State:
    """What the emulator holds, as plain data (DynamoDB numbers made ints/floats)."""

    sessions_table: list[dict[str, Any]] = field(default_factory=list)
    workers_table: list[dict[str, Any]] = field(default_factory=list)
    instances_table: list[dict[str, Any]] = field(default_factory=list)
    jobs_table: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    """ECS tasks: ``taskArn``, ``startedBy``, ``lastStatus``, ``desiredStatus``."""
    routes: list[dict[str, Any]] = field(default_factory=list)
    """berth's load-balancer rules and target groups: ``arn`` and ``session`` (its tag)."""
    machines: list[dict[str, Any]] = field(default_factory=list)
    """EC2 instances berth launched: ``id``, ``state``, ``instance`` (its berth id tag)."""
    results: set[str] = field(default_factory=set)
    failures: set[str] = field(default_factory=set)
    """Keys in the results and failures buckets."""
    files: dict[str, str] = field(default_factory=dict)
    """Workspace files and command logs the invariants read, by key."""

    @classmethod
    def read(cls, aws: Aws, history: History) -> State:
        names = _environment(aws)
        state = cls(
            sessions_table=_scan(aws, names[env_name("sessions_table")]),
            workers_table=_scan(aws, names[env_name("workers_table")]),
            instances_table=_scan(aws, names[env_name("instances_table")]),
            jobs_table=_scan(aws, names[env_name("jobs_table")]),
            tasks=_tasks(aws, names[env_name("cluster_arn")]),
            routes=_routes(aws),
            machines=_machines(aws),
            results=_keys(aws, names[env_name("results_bucket")], "results/"),
            failures=_keys(aws, names[env_name("failures_bucket")], "failures/"),
        )
        s3, bucket = aws("s3"), names[env_name("workspaces_bucket")]
        wanted = {workspace_prefix(p) + ORDER_LOG for p in {c.project for c in history.commands}}
        wanted |= {log_key(c.project, c.id) for c in history.commands}
        for key in sorted(wanted):
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue
            state.files[key] = body.decode(errors="replace")
        return state


Invariant = Callable[[State, History], list[str]]


def commands_end_once_in_order(state: State, history: History) -> list[str]:
    """Every accepted command SUCCEEDED, exactly once, in its project's order; nothing the
    workload was not told about ran (a retry that queued a command twice)."""
    found = []
    records = {i["pk"].removeprefix("CMD#"): i for i in state.workers_table if _is(i, "CMD#")}
    accepted = {c.id for c in history.commands}
    for command in history.commands:
        record = records.get(command.id)
        if record is None:
            found.append(f"{command.id} was accepted but has no record")
        elif (record.get("status"), record.get("exit_code")) != ("SUCCEEDED", 0):
            found.append(
                f"{command.id} ended {record.get('status')} (exit {record.get('exit_code')}, "
                f"{record.get('error_code')}: {record.get('error_message')})"
            )
    users = {c.user for c in history.commands}
    for command_id, record in records.items():
        never_accepted = command_id not in accepted and record.get("user") in users
        if never_accepted and (
            record.get("status") not in COMMAND_ENDED or record.get("started_at")
        ):
            found.append(
                f"{command_id} was never accepted (the API answered no 202 for it) but is "
                f"{record.get('status')}{', and it ran' if record.get('started_at') else ''}"
            )
    by_project: dict[str, list[int]] = defaultdict(list)
    for command in history.commands:
        by_project[command.project].append(command.number)
    for project, numbers in sorted(by_project.items()):
        text = state.files.get(workspace_prefix(project) + ORDER_LOG, "")
        ran = [int(n) for n in text.split()]
        if ran != numbers:
            twice = sorted(n for n, k in Counter(ran).items() if k > 1)
            lost = sorted(set(numbers) - set(ran))
            found.append(
                f"{project}: commands ran as {_short(ran)}, accepted as {_short(numbers)}"
                f" (twice: {twice}, lost: {lost})"
            )
    return found


def no_output_lost(state: State, history: History) -> list[str]:
    """Each accepted command's saved log is exactly what it printed."""
    found = []
    for command in history.commands:
        log = state.files.get(log_key(command.project, command.id))
        if log != command.prints:
            found.append(f"{command.id}: its log is {log!r}, it printed {command.prints!r}")
    return found


def sessions_stopped_with_their_tasks(state: State, history: History) -> list[str]:
    """Every session the workload stopped is STOPPED, and so is its task; no task of a
    session that is not live runs (an orphan), no warm task runs that the pool lost."""
    found = []
    records = {i["pk"]: i for i in state.sessions_table if _is(i, "ses_")}
    tasks = {t["taskArn"]: t for t in state.tasks}
    for session_id in history.sessions:
        record = records.get(session_id)
        if record is None or record.get("status") != "STOPPED":
            status, error = (record or {}).get("status"), (record or {}).get("error")
            found.append(f"{session_id} is {status}, not STOPPED ({error})")
    for session_id, record in records.items():
        task = tasks.get(record.get("task_arn") or "")
        if record.get("status") not in SESSION_LIVE and task and _runs(task):
            found.append(f"{session_id} is {record.get('status')} but its task still runs")
    warm = {i.get("task_arn") for i in state.sessions_table if _is(i, "WARM#")}
    for task in state.tasks:
        started_by = task.get("startedBy") or ""
        if not _runs(task):
            continue
        if started_by == WARM_STARTED_BY:
            if task["taskArn"] not in warm:
                found.append(f"warm task {task['taskArn']} runs but the pool does not know it")
        elif started_by.startswith(STARTED_BY_PREFIX):
            session_id = started_by.removeprefix(STARTED_BY_PREFIX)
            if records.get(session_id, {}).get("status") not in SESSION_LIVE:
                found.append(f"task {task['taskArn']} runs for {session_id}, which is not live")
    return found


def no_orphan_route(state: State, history: History) -> list[str]:
    """Every load-balancer rule and target group berth made belongs to a live session's route."""
    live_routes = {
        part
        for i in state.sessions_table
        if _is(i, "ses_") and i.get("status") in SESSION_LIVE
        for part in str(i.get("route") or "").split()
    }
    return [
        f"{route['arn']} (session {route['session']}) belongs to no live session"
        for route in state.routes
        if route["arn"] not in live_routes
    ]


def jobs_leave_one_zip(state: State, history: History) -> list[str]:
    """Every job leaves exactly one ZIP (result or failure); the workload's all succeed."""
    found = []
    for job in state.jobs_table:
        job_id = job["pk"]
        zips = [
            key
            for key in (f"results/{job_id}.zip", f"failures/{job_id}.zip")
            if key in state.results | state.failures
        ]
        if len(zips) != 1:
            found.append(f"{job_id} left {len(zips)} ZIPs: {zips}")
    known = {job["pk"] for job in state.jobs_table}
    for job_id in history.jobs:
        if job_id not in known:
            found.append(f"{job_id} was accepted but has no record")
        elif f"results/{job_id}.zip" not in state.results:
            found.append(f"{job_id} did not succeed (no result ZIP)")
    return found


def instances_terminated(state: State, history: History) -> list[str]:
    """Every instance the workload deleted is terminated, and so is its machine; no machine
    berth launched runs without a live instance record."""
    found = []
    records = {i["pk"]: i for i in state.instances_table if _is(i, "ins_")}
    for instance_id in history.instances:
        status = records.get(instance_id, {}).get("status")
        if status != "terminated":
            found.append(f"{instance_id} is {status}, not terminated")
    for machine in state.machines:
        status = records.get(machine["instance"], {}).get("status")
        if machine["state"] not in {"terminated", "shutting-down"} and (
            status is None or status in INSTANCE_ENDED
        ):
            found.append(f"machine {machine['id']} is {machine['state']} for {status} instance")
    return found


def counters_count(state: State, history: History) -> list[str]:
    """Every counter equals what it counts: live sessions per user and the route slots, each
    user's one live session per profile, queued or running commands per user, live
    instances per user."""
    found: list[str] = []
    sessions = [i for i in state.sessions_table if _is(i, "ses_")]
    live = [s for s in sessions if s.get("status") in SESSION_LIVE]
    found += _compare(
        "sessions", state.sessions_table, Counter(s["user"] for s in live), live_routes=len(live)
    )
    locks = {i["pk"]: i.get("session_id") for i in state.sessions_table if _is(i, "LIVE#")}
    expected_locks = {f"LIVE#{s['user']}#{s['profile']}": s["pk"] for s in live}
    if locks != expected_locks:
        found.append(f"sessions: profile locks {locks} but live sessions {expected_locks}")
    commands = [i for i in state.workers_table if _is(i, "CMD#")]
    pending = Counter(c["user"] for c in commands if c.get("status") in COMMAND_PENDING)
    found += _compare("commands", state.workers_table, pending)
    instances = [i for i in state.instances_table if _is(i, "ins_")]
    live_instances = Counter(i["user"] for i in instances if i["status"] not in INSTANCE_ENDED)
    found += _compare("instances", state.instances_table, live_instances)
    return found


def answers_documented(state: State, history: History) -> list[str]:
    """Every answer was 2xx, a 4xx the API documents for that operation, or 503 with
    Retry-After; never a 500."""
    found = []
    for answer in history.answers:
        if 200 <= answer.status < 300:
            continue
        if answer.status == 503 and answer.retry_after:
            continue
        if 400 <= answer.status < 500 and answer.status in history.documented.get(
            (answer.method, answer.route), set()
        ):
            continue
        found.append(f"{answer.method} {answer.route} answered {answer.status} {answer.code}")
    return sorted(set(found))


INVARIANTS: dict[str, Invariant] = {
    "every command ended once, in order": commands_end_once_in_order,
    "no output lost": no_output_lost,
    "sessions stopped with their tasks": sessions_stopped_with_their_tasks,
    "no orphan route": no_orphan_route,
    "every job left one ZIP": jobs_leave_one_zip,
    "instances terminated with their machines": instances_terminated,
    "counters equal what they count": counters_count,
    "every answer documented": answers_documented,
}


def audit(state: State, history: History) -> dict[str, list[str]]:
    """Each invariant's violations (an empty list: it holds)."""
    return {name: check(state, history) for name, check in INVARIANTS.items()}


# --- helpers --------------------------------------------------------------------------------


def _is(item: dict[str, Any], prefix: str) -> bool:
    return str(item["pk"]).startswith(prefix)


def _runs(task: dict[str, Any]) -> bool:
    return task.get("desiredStatus") != "STOPPED" and task.get("lastStatus") != "STOPPED"


def _short(numbers: list[int]) -> str:
    return str(numbers) if len(numbers) <= 12 else f"[{len(numbers)} numbers]"


def _compare(
    what: str, items: Iterable[dict[str, Any]], expected: Counter[str], live_routes: int = -1
) -> list[str]:
    counters = {str(i["pk"]): int(i.get("live_count", 0)) for i in items}
    found = []
    users = {k.removeprefix("COUNT#") for k in counters if k.startswith("COUNT#")} | set(expected)
    for user in sorted(users):
        stored = counters.get(f"COUNT#{user}", 0)
        if stored != expected[user]:
            found.append(f"{what}: {user}'s counter is {stored}, they hold {expected[user]}")
    if live_routes >= 0 and "ROUTES" in counters and counters["ROUTES"] != live_routes:
        found.append(f"{what}: the route counter is {counters['ROUTES']}, {live_routes} are live")
    return found


def _environment(aws: Aws) -> dict[str, str]:
    """The deployment's names, as its functions are told them."""
    names: dict[str, str] = {}
    for page in aws("lambda").get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            names |= (function.get("Environment") or {}).get("Variables") or {}
    return names


def _scan(aws: Aws, table: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    read, items = TypeDeserializer(), []
    for page in aws("dynamodb").get_paginator("scan").paginate(TableName=table):
        items += [
            {key: plain(read.deserialize(value)) for key, value in item.items()}
            for item in page["Items"]
        ]
    return items


def _tasks(aws: Aws, cluster: str) -> list[dict[str, Any]]:
    ecs, arns = aws("ecs"), []
    for desired in ("RUNNING", "STOPPED"):
        for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, desiredStatus=desired
        ):
            arns += page["taskArns"]
    tasks = []
    for start in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"]
    return [
        {k: t.get(k) for k in ("taskArn", "startedBy", "lastStatus", "desiredStatus")}
        for t in tasks
    ]


def _routes(aws: Aws) -> list[dict[str, Any]]:
    elbv2 = aws("elbv2")
    arns = []
    for balancer in elbv2.describe_load_balancers()["LoadBalancers"]:
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])[
            "Listeners"
        ]:
            rules = elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
            arns += [r["RuleArn"] for r in rules if not r.get("IsDefault")]
    arns += [g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]]
    routes = []
    for start in range(0, len(arns), 20):
        for entry in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            tags = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
            if ROUTING_TAG in tags:
                routes.append({"arn": entry["ResourceArn"], "session": tags.get(SESSION_TAG)})
    return routes


def _machines(aws: Aws) -> list[dict[str, Any]]:
    machines = []
    pages = (
        aws("ec2")
        .get_paginator("describe_instances")
        .paginate(Filters=[{"Name": "tag-key", "Values": [ID_TAG]}])
    )
    for page in pages:
        for reservation in page["Reservations"]:
            for machine in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in machine.get("Tags", [])}
                machines.append(
                    {
                        "id": machine["InstanceId"],
                        "state": machine["State"]["Name"],
                        "instance": tags[ID_TAG],
                    }
                )
    return machines


def _keys(aws: Aws, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    for page in aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    return keys


def report(results: dict[str, list[str]]) -> str:
    """The violations, readable (empty when every invariant holds)."""
    return "\n".join(
        f"{name}: {violation}" for name, found in results.items() for violation in found
    )


__all__ = ["INVARIANTS", "Accepted", "Answer", "History", "State", "audit", "report"]
