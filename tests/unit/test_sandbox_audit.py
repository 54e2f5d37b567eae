"""The chaos run's auditor: a consistent end state passes every invariant, and each way of
breaking a promise (a drifted counter, a command run twice, an orphan task, ...) is reported
by the invariant that guards it, and only by it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from infra.sandbox.audit import (
    INVARIANTS,
    ORDER_LOG,
    Accepted,
    Answer,
    History,
    State,
    audit,
)
from workers.models import log_key, workspace_prefix

SESSION, OTHER_SESSION = "ses_0001", "ses_0002"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/c/1"
JOB, INSTANCE = "job_01", "ins_01"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/s/1"


def consistent() -> tuple[State, History]:
    """Everything the workload did ended the way berth promises: one user, one project of two
    commands, a session stopped, a job with its result, an instance terminated, one live
    session still routed (its counters at 1)."""
    commands = [
        Accepted("cmd_1", "p", "alice", 0, "p #0\n"),
        Accepted("cmd_2", "p", "alice", 1, "p #1\n"),
    ]
    history = History(
        answers=[
            Answer("POST", "/workspaces/{project}/commands", 202),
            Answer("POST", "/sessions", 429, "session_limit"),
            Answer("GET", "/sessions/{session_id}", 503, "unavailable", retry_after=True),
        ],
        documented={("POST", "/sessions"): {201, 200, 429}},
        commands=commands,
        sessions=[SESSION],
        jobs=[JOB],
        instances=[INSTANCE],
    )
    state = State(
        sessions_table=[
            {
                "pk": SESSION,
                "user": "alice",
                "profile": "default",
                "status": "STOPPED",
                "task_arn": TASK,
            },
            {
                "pk": OTHER_SESSION,
                "user": "bob",
                "profile": "default",
                "status": "RUNNING",
                "task_arn": TASK + "2",
                "route": f"{TG} rule/1 rule/2",
            },
            {"pk": "LIVE#bob#default", "session_id": OTHER_SESSION},
            {"pk": "COUNT#alice", "live_count": 0},
            {"pk": "COUNT#bob", "live_count": 1},
            {"pk": "ROUTES", "live_count": 1},
        ],
        workers_table=[
            {"pk": "PROJECT#p", "user": "alice"},
            *(
                {
                    "pk": f"CMD#{c.id}",
                    "user": "alice",
                    "status": "SUCCEEDED",
                    "exit_code": 0,
                    "started_at": 1.0,
                }
                for c in commands
            ),
            {"pk": "COUNT#alice", "live_count": 0},
        ],
        instances_table=[
            {"pk": INSTANCE, "user": "alice", "status": "terminated"},
            {"pk": "COUNT#alice", "live_count": 0},
        ],
        jobs_table=[{"pk": JOB}],
        tasks=[
            {
                "taskArn": TASK,
                "startedBy": f"berth:{SESSION}",
                "lastStatus": "STOPPED",
                "desiredStatus": "STOPPED",
            },
            {
                "taskArn": TASK + "2",
                "startedBy": f"berth:{OTHER_SESSION}",
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
            },
        ],
        routes=[
            {"arn": TG, "session": OTHER_SESSION},
            {"arn": "rule/1", "session": OTHER_SESSION},
        ],
        machines=[{"id": "i-1", "state": "terminated", "instance": INSTANCE}],
        results={f"results/{JOB}.zip"},
        files={
            workspace_prefix("p") + ORDER_LOG: "0\n1\n",
            log_key("p", "cmd_1"): "p #0\n",
            log_key("p", "cmd_2"): "p #1\n",
        },
    )
    return state, history


def item(items: list[dict[str, Any]], pk: str) -> dict[str, Any]:
    (found,) = [i for i in items if i["pk"] == pk]
    return found


def test_a_consistent_end_state_keeps_every_promise() -> None:
    state, history = consistent()
    assert audit(state, history) == {key: [] for key in INVARIANTS}


Break = Callable[[State, History], object]
BREAKS: list[tuple[str, str, Break]] = [
    # commands
    ("every command ended once, in order", "run twice",
     lambda s, h: s.files.update({workspace_prefix("p") + ORDER_LOG: "0\n1\n1\n"})),
    ("every command ended once, in order", "an append lost",
     lambda s, h: s.files.update({workspace_prefix("p") + ORDER_LOG: "0\n"})),
    ("every command ended once, in order", "out of order",
     lambda s, h: s.files.update({workspace_prefix("p") + ORDER_LOG: "1\n0\n"})),
    ("every command ended once, in order", "stuck QUEUED (and counted, as it should be)",
     lambda s, h: (item(s.workers_table, "CMD#cmd_2").update(status="QUEUED", exit_code=None),
                   item(s.workers_table, "COUNT#alice").update(live_count=1))),
    ("every command ended once, in order", "a retry queued it twice",
     lambda s, h: s.workers_table.append(
         {"pk": "CMD#cmd_3", "user": "alice", "status": "SUCCEEDED", "started_at": 2.0})),
    ("no output lost", "output lost",
     lambda s, h: s.files.update({log_key("p", "cmd_2"): "p #"})),
    # sessions, tasks, routes
    ("sessions stopped with their tasks", "a session left RUNNING",
     lambda s, h: h.sessions.append(OTHER_SESSION)),
    ("sessions stopped with their tasks", "a stopped session's task runs",
     lambda s, h: s.tasks[0].update(lastStatus="RUNNING", desiredStatus="RUNNING")),
    ("sessions stopped with their tasks", "an orphan task of no session",
     lambda s, h: s.tasks.append({"taskArn": TASK + "9", "startedBy": "berth:ses_gone",
                                  "lastStatus": "RUNNING", "desiredStatus": "RUNNING"})),
    ("sessions stopped with their tasks", "a warm task the pool lost",
     lambda s, h: s.tasks.append({"taskArn": TASK + "8", "startedBy": "berth-warm",
                                  "lastStatus": "RUNNING", "desiredStatus": "RUNNING"})),
    ("no orphan route", "a stopped session's rule",
     lambda s, h: s.routes.append({"arn": "rule/9", "session": SESSION})),
    # jobs
    ("every job left one ZIP", "both ZIPs",
     lambda s, h: s.failures.add(f"failures/{JOB}.zip")),
    ("every job left one ZIP", "no ZIP",
     lambda s, h: s.results.clear()),
    ("every job left one ZIP", "accepted, never recorded",
     lambda s, h: h.jobs.append("job_02")),
    # instances
    ("instances terminated with their machines", "an instance left ready (and counted)",
     lambda s, h: (item(s.instances_table, INSTANCE).update(status="ready"),
                   item(s.instances_table, "COUNT#alice").update(live_count=1))),
    ("instances terminated with their machines", "a terminated instance's machine runs",
     lambda s, h: s.machines[0].update(state="running")),
    # counters
    ("counters equal what they count", "a drifted session counter",
     lambda s, h: item(s.sessions_table, "COUNT#alice").update(live_count=1)),
    ("counters equal what they count", "a drifted route counter",
     lambda s, h: item(s.sessions_table, "ROUTES").update(live_count=2)),
    ("counters equal what they count", "a profile lock left behind",
     lambda s, h: s.sessions_table.append({"pk": "LIVE#alice#default", "session_id": SESSION})),
    ("counters equal what they count", "a drifted command counter",
     lambda s, h: item(s.workers_table, "COUNT#alice").update(live_count=-1)),
    ("counters equal what they count", "a drifted instance counter",
     lambda s, h: item(s.instances_table, "COUNT#alice").update(live_count=1)),
    # answers
    ("every answer documented", "a 500",
     lambda s, h: h.answers.append(Answer("GET", "/jobs/{job_id}", 500, "internal_error"))),
    ("every answer documented", "a 503 without Retry-After",
     lambda s, h: h.answers.append(Answer("GET", "/jobs/{job_id}", 503, "unavailable"))),
    ("every answer documented", "an undocumented 4xx",
     lambda s, h: h.answers.append(Answer("POST", "/sessions", 409, "conflict"))),
]  # fmt: skip


@pytest.mark.parametrize(("invariant", "how", "broken"), BREAKS, ids=[b[1] for b in BREAKS])
def test_each_broken_promise_is_reported_by_its_invariant_alone(
    invariant: str, how: str, broken: Break
) -> None:
    state, history = consistent()
    state, history = copy.deepcopy(state), copy.deepcopy(history)
    broken(state, history)
    found = {name: violations for name, violations in audit(state, history).items() if violations}
    assert list(found) == [invariant], found


def test_every_invariant_can_be_broken() -> None:
    assert {invariant for invariant, _, _ in BREAKS} == set(INVARIANTS)
