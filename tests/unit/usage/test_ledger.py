"""The ledger: a unit counts once, whatever replays it; prices as the settings say; budgets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.usage import (
    BudgetExceeded,
    Capability,
    Ledger,
    Meter,
    Metering,
    Pricing,
    Span,
    Usage,
    month_of,
    next_month,
)
from tests.aws import FakeClock
from tests.unit.usage.conftest import ALICE, BOB, DECEMBER

METER = Meter(Pricing())


def session_use(unit: str, user: str, start: float, seconds: float, cpu: int = 256) -> Usage:
    span = Span(unit, user, Capability.SESSIONS, unit, start, start + seconds)
    return METER.fargate(span, cpu=cpu, memory_mib=cpu * 2)


def test_prices_follow_the_settings_and_each_service_minimum() -> None:
    pricing = Pricing(fargate_vcpu_hour=0.04, fargate_gb_hour=0.004, lambda_gb_second=0.00001)
    meter = Meter(pricing)

    def span(seconds: float, capability: Capability = Capability.SESSIONS) -> Span:
        return Span("u", ALICE, capability, "r", 0.0, seconds)

    hour = meter.fargate(span(3600), cpu=1024, memory_mib=2048)
    assert (hour.seconds, hour.units) == (3600.0, 3600.0)
    assert hour.dollars == pytest.approx(0.048)
    brief = meter.fargate(span(5), cpu=1024, memory_mib=2048)
    assert brief.seconds == 60.0  # Fargate bills at least a minute
    job = meter.lambda_(span(2.5, Capability.JOBS), memory_mib=512)
    assert (job.seconds, job.units) == (2.5, 1.25)
    assert job.dollars == pytest.approx(1.25 * 0.00001 + pricing.lambda_request)
    machine = meter.ec2(span(7200, Capability.INSTANCES), instance_type="t3.micro")
    assert machine.kind == "ec2:t3.micro"
    assert machine.dollars == pytest.approx(2 * 0.0104)
    unknown = meter.ec2(span(10, Capability.INSTANCES), instance_type="x9.huge")
    assert (unknown.seconds, unknown.dollars) == (60.0, 0.0)  # counted, priced at 0: docs/usage.md


def test_a_replayed_unit_counts_once_in_the_records_and_the_month(ledger: Ledger) -> None:
    use = session_use("session/s1", ALICE, DECEMBER + 100, 600)
    assert ledger.record(use) is True
    assert ledger.record(use) is False  # the same event again
    later = session_use("session/s1", ALICE, DECEMBER + 100, 900)  # even if it says more
    assert ledger.record(later) is False
    records = list(ledger.records(ALICE, DECEMBER, DECEMBER + 86400))
    assert records == [use]
    assert ledger.spent(ALICE, "2026-12") == pytest.approx(use.dollars)
    assert [s.units for s in ledger.month("2026-12")] == [1]


def test_records_are_read_by_the_time_they_ended_and_months_apart(ledger: Ledger) -> None:
    november = session_use("session/n", ALICE, DECEMBER - 4000, 3000)
    across = session_use("session/x", ALICE, DECEMBER - 100, 700)  # counted when it ended
    december = session_use("session/d", ALICE, DECEMBER + 5000, 60)
    theirs = session_use("session/b", BOB, DECEMBER + 5000, 6000, cpu=1024)
    for use in (november, across, december, theirs):
        assert ledger.record(use)
    assert [u.id for u in ledger.records(ALICE, DECEMBER, DECEMBER + 86400)] == [
        "session/x", "session/d",
    ]  # fmt: skip
    assert [u.id for u in ledger.records(ALICE, DECEMBER - 86400, DECEMBER)] == ["session/n"]
    assert ledger.spent(ALICE, "2026-11") == pytest.approx(november.dollars)
    assert ledger.spent(ALICE, "2026-12") == pytest.approx(across.dollars + december.dollars)
    spend = ledger.month("2026-12")
    assert [s.user for s in spend] == [BOB, ALICE]  # the most spent first
    assert spend[0].seconds == 6000


def test_months_turn_over_in_utc() -> None:
    assert month_of(DECEMBER) == "2026-12" and month_of(DECEMBER - 1) == "2026-11"
    assert datetime.fromtimestamp(next_month(DECEMBER + 5), UTC) == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_user_at_their_budget_is_refused_with_spend_budget_and_reset(
    ledger: Ledger, clock: FakeClock
) -> None:
    metering = Metering(ledger, Pricing(), 0.01, clock)
    metering.check(ALICE)  # nothing spent yet
    hour = session_use("session/a", ALICE, clock() - 7200, 3600, cpu=1024)
    ledger.record(hour)  # 1 vCPU and 2 GB for an hour: $0.04937
    with pytest.raises(BudgetExceeded) as refused:
        metering.check(ALICE)
    assert refused.value.code == "budget_exceeded"
    assert "$0.0494" in refused.value.message and "$0.0100" in refused.value.message
    assert "2027-01-01T00:00:00Z" in refused.value.message
    metering.check(BOB)  # another user's spend is theirs
    ledger.set_budget(ALICE, 1.0)  # the operator's own budget for alice wins over the default
    metering.check(ALICE)
    assert metering.standing(ALICE).budget == 1.0
    ledger.set_budget(ALICE, None)  # back to the default
    assert metering.standing(ALICE).over
    clock.advance(30 * 86400)  # a new month starts from nothing
    metering.check(ALICE)


def test_without_any_budget_nothing_is_refused(metering: Metering, ledger: Ledger) -> None:
    ledger.record(session_use("session/a", ALICE, DECEMBER, 86400, cpu=4096))
    metering.check(ALICE)
    assert metering.standing(ALICE).budget is None
    ledger.set_budget(ALICE, 0.0)  # a budget of 0: nothing at all
    with pytest.raises(BudgetExceeded):
        metering.check(ALICE)
