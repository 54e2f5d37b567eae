"""An instance's compute is its owner's: its machine's running time at its type's hourly
price, from launch to the state change that stopped it, recorded once per launch."""

from __future__ import annotations

import boto3
import pytest

from instances.config import InstancesConfig
from instances.provisioning import Provisioner
from instances.service import InstanceService
from instances.wiring import build_service
from shared.usage import BudgetExceeded, Ledger, Pricing, UsageConfig
from tests.aws import FakeClock, usage_ledger
from tests.synth import Synth
from tests.unit.instances.conftest import ALICE, ec2_instances
from tests.unit.instances.test_instances import launched

PRICES = Pricing()


@pytest.fixture
def ledger(aws: boto3.session.Session, synth: Synth) -> Ledger:
    return usage_ledger(aws, synth)  # type: ignore[no-any-return]


@pytest.fixture
def metered(
    config: InstancesConfig, aws: boto3.session.Session, clock: FakeClock
) -> InstanceService:
    return build_service(config, session=aws, clock=clock, usage=UsageConfig(usage_table="usage"))


def test_a_stopped_machine_is_its_owners_time_once_per_launch(
    metered: InstanceService, provisioner: Provisioner, aws: boto3.session.Session, ledger: Ledger
) -> None:
    instance_id = launched(provisioner, metered)
    (machine,) = ec2_instances(aws)
    launched_at = machine["LaunchTime"].timestamp()
    ends = launched_at + 5400  # an hour and a half later EC2 says it is shutting down...
    use = metered.meter(machine["InstanceId"], ends)
    assert use is not None
    assert metered.meter(machine["InstanceId"], ends + 30) is not None  # ...then terminated
    (recorded,) = ledger.records(ALICE, 0, ends + 3600)
    assert (recorded.resource, recorded.kind, recorded.seconds) == (
        instance_id,
        "ec2:t4g.small",
        5400,
    )
    assert recorded.dollars == pytest.approx(1.5 * PRICES.ec2_hourly["t4g.small"])


def test_machines_that_are_not_berths_are_ignored(
    metered: InstanceService, aws: boto3.session.Session, config: InstancesConfig
) -> None:
    ec2 = aws.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    other = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    assert metered.meter(other["InstanceId"], 1e10) is None
    assert metered.meter("i-0123456789abcdef0", 1e10) is None  # gone, or never was


def test_over_budget_no_instance_starts(
    metered: InstanceService, ledger: Ledger, aws: boto3.session.Session
) -> None:
    ledger.set_budget(ALICE, 0.0)
    with pytest.raises(BudgetExceeded):
        metered.create(ALICE, "blob_1")
    assert (
        aws.client("stepfunctions").list_executions(
            stateMachineArn=metered.config.state_machine_arn
        )["executions"]
        == []
    )
