"""A moto account with berth's usage table (keys from the template) and a metering."""

from __future__ import annotations

import boto3
import pytest

from shared.usage import Ledger, Metering, Pricing
from tests.aws import FakeClock, usage_ledger
from tests.synth import Synth

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/berth-client/bob"
OPERATOR = "arn:aws:sts::123456789012:assumed-role/berth-ops/dana"
DECEMBER = 1_796_083_200.0  # 2026-12-01T00:00:00Z


@pytest.fixture
def ledger(aws: boto3.session.Session, synth: Synth) -> Ledger:
    return usage_ledger(aws, synth)  # type: ignore[no-any-return]


@pytest.fixture
def usage_table(ledger: Ledger) -> str:
    return str(ledger.table.name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DECEMBER + 10 * 86400)


@pytest.fixture
def metering(ledger: Ledger, clock: FakeClock) -> Metering:
    return Metering(ledger, Pricing(), None, clock)
