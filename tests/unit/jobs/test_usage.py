"""A job's compute is its caller's: the execution's time, priced as its runtime bills (a
Lambda job's GB-seconds, a Fargate job's vCPU and GB), recorded once per execution."""

from __future__ import annotations

import boto3
import pytest

from jobs.config import JobsConfig
from jobs.service import JobService
from jobs.wiring import build_service
from shared.usage import BudgetExceeded, Ledger, Pricing, UsageConfig
from tests.aws import FakeClock, usage_ledger
from tests.synth import Synth
from tests.unit.jobs.conftest import ALICE

PRICES = Pricing()


@pytest.fixture
def ledger(aws: boto3.session.Session, synth: Synth) -> Ledger:
    return usage_ledger(aws, synth)  # type: ignore[no-any-return]


@pytest.fixture
def metered(config: JobsConfig, aws: boto3.session.Session, clock: FakeClock) -> JobService:
    return build_service(config, session=aws, clock=clock, usage=UsageConfig(usage_table="usage"))


def ended(
    job_id: str, start: float, seconds: float, status: str = "SUCCEEDED"
) -> dict[str, object]:
    """A "Step Functions Execution Status Change" detail (times in epoch milliseconds)."""
    return {
        "name": job_id,
        "status": status,
        "startDate": int(start * 1000),
        "stopDate": int((start + seconds) * 1000),
    }


@pytest.mark.parametrize(
    ("name", "units", "dollars"),
    [
        ("checksum", 12.5 * 0.5, 12.5 * 0.5 * PRICES.lambda_gb_second + PRICES.lambda_request),
        ("render", 60.0, 60 / 3600 * (PRICES.fargate_vcpu_hour + 2 * PRICES.fargate_gb_hour)),
    ],
)
def test_an_ended_execution_is_its_jobs_time_once(
    metered: JobService, ledger: Ledger, clock: FakeClock, name: str, units: float, dollars: float
) -> None:
    state, _ = metered.start(ALICE, name, {}, None)
    detail = ended(state.job.id, clock(), 12.5, "FAILED")  # a failed job's time counts too
    use = metered.meter(detail)
    assert use is not None and metered.meter(detail) is not None  # the replay finds it...
    (recorded,) = ledger.records(ALICE, 0, clock() + 60)  # ...and records nothing more
    assert (recorded.capability, recorded.resource, recorded.units) == ("jobs", state.job.id, units)
    assert recorded.seconds == (12.5 if name == "checksum" else 60.0)  # Fargate: a minute
    assert recorded.dollars == pytest.approx(dollars, abs=1e-8)  # kept to 1e-8 dollars


def test_executions_that_are_no_job_of_berths_are_ignored(metered: JobService) -> None:
    assert metered.meter(ended("job_" + "0" * 32, 0.0, 1.0)) is None
    assert metered.meter({"name": "x"}) is None  # no times


def test_over_budget_no_job_starts_but_a_retry_of_a_started_one_answers(
    metered: JobService, ledger: Ledger
) -> None:
    state, started = metered.start(ALICE, "checksum", {"n": 1}, "key-1")
    assert started
    ledger.set_budget(ALICE, 0.0)
    with pytest.raises(BudgetExceeded):
        metered.start(ALICE, "checksum", {"n": 2}, None)
    again, started = metered.start(ALICE, "checksum", {"n": 1}, "key-1")
    assert (again.job.id, started) == (state.job.id, False)
