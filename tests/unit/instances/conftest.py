"""A moto account with berth's instance resources: table and SSM document from the template."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from instances.config import InstancesConfig
from instances.provisioning import Provisioner
from instances.service import InstanceService
from instances.wiring import build_provisioner, build_service
from tests.aws import FakeClock, create_table_like
from tests.synth import Synth

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/berth-client/bob"


def document_content(synth: Synth) -> dict[str, Any]:
    (document,) = synth.resources("AWS::SSM::Document").values()
    return dict(document["Properties"]["Content"])


@pytest.fixture
def environment(aws: boto3.session.Session, synth: Synth) -> dict[str, str]:
    create_table_like(aws.client("dynamodb"), synth, "InstancesTable", "instances")
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.0.0/22")["Subnet"]["SubnetId"]
    # the AMI the launch template resolves through the same public SSM parameter
    image = aws.client("ssm").get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64"
    )["Parameter"]["Value"]
    template = ec2.create_launch_template(
        LaunchTemplateName="berth",
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "t4g.small",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("ssm").create_document(
        Name="berth-fetch-and-run",
        Content=json.dumps(document_content(synth)),
        DocumentType="Command",
        DocumentFormat="JSON",
    )
    role = aws.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")
    machine = aws.client("stepfunctions").create_state_machine(
        name="berth-instances",
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Succeed"}}}),
        roleArn=role["Role"]["Arn"],
    )["stateMachineArn"]
    return InstancesConfig.environment(
        instances_table="instances",
        state_machine_arn=machine,
        launch_template_id=template,
        subnets=[subnet],
        document_name="berth-fetch-and-run",
        aggregator_url="https://aggregator.example",
        app_tag="berth",
        max_instances_per_user=2,
        running_timeout_seconds=300,
        ssm_timeout_seconds=300,
        command_timeout_seconds=900,
        terminate_on_failure=True,
    )


@pytest.fixture
def config(environment: dict[str, str]) -> InstancesConfig:
    return InstancesConfig.from_env(environment)


class Agent:
    """The SSM agent's reported state. moto does not implement DescribeInstanceInformation, so
    the one method that calls it is replaced by this switch in unit tests (and in the sandbox
    by a bridge)."""

    def __init__(self) -> None:
        self.online = False

    def __call__(self, ec2_id: str) -> bool:
        return self.online


@pytest.fixture
def agent() -> Agent:
    return Agent()


@pytest.fixture
def service(
    config: InstancesConfig, aws: boto3.session.Session, clock: FakeClock
) -> InstanceService:
    return build_service(config, session=aws, clock=clock)


@pytest.fixture
def provisioner(
    config: InstancesConfig,
    aws: boto3.session.Session,
    clock: FakeClock,
    agent: Agent,
    monkeypatch: pytest.MonkeyPatch,
) -> Provisioner:
    built = build_provisioner(config, session=aws, clock=clock)
    monkeypatch.setattr(built.machines, "agent_online", agent)
    return built


def ec2_instances(aws: boto3.session.Session) -> list[dict[str, Any]]:
    reservations = aws.client("ec2").describe_instances()["Reservations"]
    return [i for r in reservations for i in r["Instances"]]
