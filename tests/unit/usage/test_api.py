"""The usage HTTP contract through the real Lambda handler: a caller's own usage, and the
operator's routes, which only the principals in ``usage.admins`` may call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.usage import Capability, Ledger, Meter, Pricing, Span, UsageConfig
from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.usage.conftest import ALICE, BOB, DECEMBER, OPERATOR
from usage.config import UsageApiConfig
from usage.models import user_id

METER = Meter(Pricing())
DAY = 86400.0


@pytest.fixture
def call(
    usage_table: str, monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Call]:
    environment = {
        **UsageConfig.environment(usage_table=usage_table, monthly_budget_usd=5),
        # the operator's role (any session of it), as usage.admins names it
        **UsageApiConfig.environment(admins=["arn:aws:iam::123456789012:role/berth-ops"]),
    }
    with api_caller("usage", environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


@pytest.fixture
def recorded(ledger: Ledger) -> None:
    """Alice: a session on Dec 2 and Dec 3, a job on Dec 3; Bob: an instance on Dec 3."""
    for n, day in enumerate((1, 2)):
        start = DECEMBER + day * DAY
        session = Span(f"session/s{n}", ALICE, Capability.SESSIONS, f"s{n}", start, start + 600)
        ledger.record(METER.fargate(session, cpu=256, memory_mib=512))
    start = DECEMBER + 2 * DAY
    job = Span("job/j1", ALICE, Capability.JOBS, "j1", start, start + 3)
    ledger.record(METER.lambda_(job, memory_mib=1024))
    machine = Span("instance/i1/1", BOB, Capability.INSTANCES, "i1", start, start + 7200)
    ledger.record(METER.ec2(machine, instance_type="t3.micro"))


@pytest.mark.usefixtures("recorded")
def test_a_caller_sees_their_own_usage_grouped_three_ways(call: Any) -> None:
    status, by_capability = call("GET", "/usage", query={"from": "2026-12-01"})
    assert status == 200, by_capability
    groups = {g["key"]: g for g in by_capability["groups"]}
    assert set(groups) == {"sessions", "jobs"}  # not bob's instance
    assert (groups["sessions"]["count"], groups["sessions"]["seconds"]) == (2, 1200.0)
    assert groups["jobs"]["units"] == 3.0  # GB-seconds
    total = by_capability["total"]
    assert total["dollars"] == pytest.approx(sum(g["dollars"] for g in groups.values()))
    assert by_capability["start"] == "2026-12-01T00:00:00Z"
    assert by_capability["budget"] == {
        "monthly_budget_usd": 5.0,
        "spent_this_month_usd": pytest.approx(total["dollars"]),
        "resets_at": "2027-01-01T00:00:00Z",
        "over_budget": False,
    }
    status, by_day = call("GET", "/usage", query={"from": "2026-12-01", "group_by": "day"})
    assert [(g["key"], g["count"]) for g in by_day["groups"]] == [
        ("2026-12-02", 1), ("2026-12-03", 2),
    ]  # fmt: skip
    status, by_resource = call(
        "GET", "/usage",
        query={"from": "2026-12-03", "to": "2026-12-04T00:00:00Z", "group_by": "resource"},
    )  # fmt: skip
    assert [(g["key"], g["capability"]) for g in by_resource["groups"]] == [
        ("j1", "jobs"), ("s1", "sessions"),
    ]  # fmt: skip
    status, theirs = call("GET", "/usage", user=BOB, query={"from": "2026-12-01"})
    assert [g["key"] for g in theirs["groups"]] == ["instances"]


@pytest.mark.parametrize(
    "query",
    [
        {"from": "yesterday"},
        {"from": "2026-12-05T10:00:00"},  # no zone
        {"from": "2026-02-30"},
        {"to": "2026-12-01T25:00:00Z"},
        {"to": "0.5"},  # not seconds since 1970
        {"group_by": "week"},
    ],
)
def test_a_bad_range_or_grouping_is_400(call: Any, query: dict[str, str]) -> None:
    status, error = call("GET", "/usage", query=query)
    assert (status, error["error"]["code"]) == (400, "invalid_request"), error


@pytest.mark.usefixtures("recorded")
def test_an_empty_or_backwards_range_has_nothing_in_it(call: Any) -> None:
    for query in (
        {"from": "2026-12-05", "to": "2026-12-01"},
        {"from": "2026-12-03", "to": "2026-12-03"},
    ):
        status, usage = call("GET", "/usage", query=query)
        assert (status, usage["groups"], usage["total"]["count"]) == (200, [], 0)
    status, years = call("GET", "/usage", query={"from": "2001-01-01", "to": "2099-01-01"})
    assert (status, years["total"]["count"]) == (200, 3)
    status, offset = call(
        "GET", "/usage", query={"from": "2026-12-03T01:00:00+01:00", "group_by": "resource"}
    )  # midnight UTC: Dec 3's units
    assert [g["key"] for g in offset["groups"]] == ["j1", "s1"]


@pytest.mark.usefixtures("recorded")
def test_only_named_admins_call_the_admin_routes(call: Any) -> None:
    alice = user_id(ALICE)
    for method, path, body in [
        ("GET", "/admin/usage", None),
        ("GET", f"/admin/users/{alice}/usage", None),
        ("PUT", f"/admin/users/{alice}/budget", {"monthly_budget_usd": 1000}),
    ]:
        status, error = call(method, path, body)  # alice herself
        assert (status, error["error"]["code"]) == (403, "forbidden"), (path, error)
    # the role's other sessions are not refused by the function (the API's resource policy
    # names the role: infra tests); a user of the same name in another role is
    status, error = call(
        "GET", "/admin/usage", user="arn:aws:sts::123456789012:assumed-role/x/dana"
    )
    assert status == 403, error

    status, listing = call("GET", "/admin/usage", user=OPERATOR, query={"month": "2026-12"})
    assert status == 200, listing
    # bob's two hours of t3.micro ($0.0208) before alice's 20 minutes of a quarter vCPU
    assert [row["user"] for row in listing["users"]] == [BOB, ALICE]
    dollars = [row["dollars"] for row in listing["users"]]
    assert dollars == sorted(dollars, reverse=True)
    assert all(row["monthly_budget_usd"] == 5.0 for row in listing["users"])
    status, nothing = call("GET", "/admin/usage", user=OPERATOR, query={"month": "2026-10"})
    assert (status, nothing["users"], nothing["total_dollars"]) == (200, [], 0)
    status, error = call("GET", "/admin/usage", user=OPERATOR, query={"month": "2026-13"})
    assert status == 400, error

    status, hers = call(
        "GET", f"/admin/users/{alice}/usage", user=OPERATOR, query={"from": "2026-12-01"}
    )
    assert (status, hers["user"], hers["total"]["count"]) == (200, ALICE, 3)
    for bad in ("%%%", "YWxpY2U=", "YWxpY2", "\u0084"):  # not a user_id as /admin/usage spells it
        status, error = call("GET", f"/admin/users/{bad}/usage", user=OPERATOR)
        assert status in (400, 404), (bad, error)


def test_the_operator_sets_and_clears_a_users_own_budget(call: Any, ledger: Ledger) -> None:
    path = f"/admin/users/{user_id(BOB)}/budget"
    status, whole = call("PUT", path, {"monthly_budget_usd": 3}, user=OPERATOR)
    assert (status, whole["monthly_budget_usd"]) == (200, 3.0)
    status, set_ = call("PUT", path, {"monthly_budget_usd": 0.5}, user=OPERATOR)
    assert (status, set_["monthly_budget_usd"]) == (200, 0.5)
    assert ledger.own_budget(BOB) == 0.5
    status, cleared = call("PUT", path, {"monthly_budget_usd": None}, user=OPERATOR)
    assert (status, cleared["monthly_budget_usd"]) == (200, 5.0)  # the default again
    assert ledger.own_budget(BOB) is None
    for bad in (
        {"monthly_budget_usd": -1},
        {"monthly_budget_usd": "lots"},
        {"monthly_budget_usd": "5"},
        {"monthly_budget_usd": False},
        {},
    ):
        status, error = call("PUT", path, bad, user=OPERATOR)
        assert (status, error["error"]["code"]) == (400, "invalid_request"), bad
