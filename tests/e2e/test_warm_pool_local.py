"""A profile's warm pool against make local: a POST answers RUNNING at once, parallel callers
never share a task, callers beyond the pool start cold, the pool refills."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e

# The "warm" profile keeps 2; schedules run every second; tasks take TASK_START seconds to
# start, so a claimed task's replacement is not ready while the callers after it ask (five
# parallel POSTs took up to 4.4 s on a busy 2-core machine: the margin is wide on purpose).
POOL = 2
TASK_START = 12
SANDBOX_CONTEXT = {
    "berth:sessions.profiles.warm": {"image": "echo", "port": 8080, "warm_pool": POOL},
}
SANDBOX_ENV = {
    "BERTH_LOCAL_SCHEDULE_SECONDS": "1",
    "BERTH_LOCAL_TASK_START_SECONDS": str(TASK_START),
}


def pool_items(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The warm profile's unclaimed tasks (starting or ready), as the sessions table holds them."""
    dynamodb = sandbox.aws("dynamodb")
    (table,) = [t for t in dynamodb.list_tables()["TableNames"] if "SessionsTable" in t]
    items = dynamodb.scan(
        TableName=table,
        FilterExpression="begins_with(pk, :w) AND pooled = :p",
        ExpressionAttributeValues={":w": {"S": "WARM#"}, ":p": {"S": "warm"}},
    )["Items"]
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]


def wait_for_pool(sandbox: Sandbox, timeout: float = 60) -> list[dict[str, Any]]:
    """The pool at rest: exactly POOL tasks, all ready, for a second (a claim's replacement
    and the reaper's refill can overshoot for a moment; the reaper trims the surplus)."""
    deadline = time.monotonic() + timeout
    steady = 0
    while time.monotonic() < deadline:
        pool = pool_items(sandbox)
        at_rest = len(pool) == POOL and all("private_ip" in item for item in pool)
        steady = steady + 1 if at_rest else 0
        if steady >= 5:
            return pool
        time.sleep(0.2)
    raise AssertionError(f"the pool is not at rest: {pool_items(sandbox)}")


def start(sandbox: Sandbox, user: str) -> tuple[int, dict[str, Any], float]:
    began = time.monotonic()
    code, body = sandbox.request("POST", "/sessions", {"profile": "warm"}, user=user)
    return code, dict(body), time.monotonic() - began


def stop(sandbox: Sandbox, user: str, session: dict[str, Any]) -> None:
    code, _ = sandbox.request("DELETE", f"/sessions/{session['id']}", user=user)
    assert code in (200, 202)


def test_a_post_answers_running_with_an_address_from_the_pool(sandbox: Sandbox) -> None:
    warm = {item["task_arn"]: item["private_ip"] for item in wait_for_pool(sandbox)}
    code, session, took = start(sandbox, "wanda")
    assert (code, session["status"]) == (201, "RUNNING")
    assert session["task_arn"] in warm and session["private_ip"] == warm[session["task_arn"]]
    assert took < 2, f"the POST took {took:.2f} s"
    _, shown = sandbox.request("GET", f"/sessions/{session['id']}", user="wanda")
    assert (shown["status"], shown["private_ip"]) == ("RUNNING", session["private_ip"])
    stop(sandbox, "wanda", session)


def test_five_callers_against_a_pool_of_two_two_warm_three_cold_and_it_refills(
    sandbox: Sandbox,
) -> None:
    before = {item["task_arn"] for item in wait_for_pool(sandbox)}
    users = [f"wuser{n}" for n in range(5)]
    with ThreadPoolExecutor(len(users)) as pool:  # the sandbox's function processes started,
        listed = pool.map(lambda user: sandbox.request("GET", "/sessions", user=user), users)
        assert {code for code, _ in listed} == {200}  # so the POSTs below time the pool alone
    began = time.monotonic()
    with ThreadPoolExecutor(len(users)) as pool:
        answers = list(pool.map(lambda user: start(sandbox, user), users))
    took = time.monotonic() - began
    # the split below holds while no replacement can be ready: all five asked within it
    assert took < TASK_START, f"the five POSTs took {took:.1f} s"
    sessions = [session for _, session, _ in answers]
    assert [code for code, _, _ in answers] == [201] * 5
    assert len({session["task_arn"] for session in sessions}) == 5  # no task given twice
    warm = [s for s in sessions if s["status"] == "RUNNING"]
    cold = [s for s in sessions if s["status"] != "RUNNING"]
    assert {s["task_arn"] for s in warm} == before, sessions  # 2 warm: the pool's two
    assert len(cold) == 3 and all(s["status"] in {"PENDING", "STARTING"} for s in cold)
    claimed = claimed_by(sandbox)
    assert all(claimed.get(s["task_arn"]) == s["id"] for s in warm)  # each by its caller
    assert not any(s["task_arn"] in claimed for s in cold)  # started for its caller
    refilled = {item["task_arn"] for item in wait_for_pool(sandbox)}  # ready behind them
    assert not refilled & {s["task_arn"] for s in sessions}
    for user, session in zip(users, sessions, strict=True):
        stop(sandbox, user, session)


def claimed_by(sandbox: Sandbox) -> dict[str, str]:
    """Warm tasks that were claimed: task ARN → the session that claimed it."""
    dynamodb = sandbox.aws("dynamodb")
    (table,) = [t for t in dynamodb.list_tables()["TableNames"] if "SessionsTable" in t]
    items = dynamodb.scan(
        TableName=table,
        FilterExpression="begins_with(pk, :w) AND attribute_exists(claimed_by)",
        ExpressionAttributeValues={":w": {"S": "WARM#"}},
    )["Items"]
    return {item["task_arn"]["S"]: item["claimed_by"]["S"] for item in items}
