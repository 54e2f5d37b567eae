"""A moto account with berth's session resources, and the service built on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from sessions.config import SessionsConfig
from sessions.models import Session
from sessions.service import SessionService
from sessions.wiring import build_service
from tests.aws import FakeClock, create_table_like, fargate_task_definition
from tests.synth import Synth

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/berth-client/bob"


class RecordingNotifier:
    def __init__(self) -> None:
        self.changes: list[Session] = []

    def session_changed(self, session: Session) -> None:
        self.changes.append(session)


@pytest.fixture
def aws() -> Iterator[boto3.session.Session]:
    with mock_aws():
        # moto advances a task's state each time it is read; berth's tests drive it instead.
        state_manager.set_transition(
            model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
        )
        yield boto3.session.Session(region_name="us-east-1")
        state_manager.unset_transition("ecs::task")


def _network(aws: boto3.session.Session) -> tuple[str, str]:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.0.0/22")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)
    return subnet, group["GroupId"]


def log_group(aws: boto3.session.Session, profile: str) -> str:
    """The profile's log group (what its containers' awslogs driver writes to)."""
    name = f"berth-session-{profile}-logs"
    aws.client("logs").create_log_group(logGroupName=name)
    return name


@pytest.fixture
def environment(aws: boto3.session.Session, synth: Synth) -> dict[str, str]:
    """The sessions functions' environment, as infra renders it, pointing at moto resources."""
    create_table_like(aws.client("dynamodb"), synth, "SessionsTable", "sessions")
    create_table_like(aws.client("dynamodb"), synth, "LiveConnections", "connections")
    ecs = aws.client("ecs")
    cluster = ecs.create_cluster(clusterName="berth")["cluster"]["clusterArn"]
    subnet, group = _network(aws)
    profiles = {
        name: {
            "task_definition": fargate_task_definition(
                ecs, f"berth-session-{name}", "session", port
            ),
            "container": "session",
            "port": port,
            "default_ttl_seconds": 3600,
            "max_ttl_seconds": 7200,
            "idle_timeout_seconds": 900,
            "log_group": log_group(aws, name),
        }
        for name, port in (("default", 8080), ("chroma", 8000))
    }
    return SessionsConfig.environment(
        sessions_table="sessions",
        cluster_arn=cluster,
        task_subnets=[subnet],
        task_security_groups=[group],
        assign_public_ip=True,
        profiles=json.dumps(profiles),
        max_sessions_per_user=2,
        reaper_dry_run=False,
        connections_table="connections",
    )


@pytest.fixture
def config(environment: dict[str, str]) -> SessionsConfig:
    return SessionsConfig.from_env(environment)


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


def recorded(
    config: SessionsConfig,
    aws: boto3.session.Session,
    clock: FakeClock,
    notifier: RecordingNotifier,
) -> SessionService:
    """The service as the functions build it, on moto, its pushes recorded."""
    built = build_service(config, session=aws, clock=clock)
    built.notifier = notifier
    return built


@pytest.fixture
def service(
    config: SessionsConfig,
    aws: boto3.session.Session,
    clock: FakeClock,
    notifier: RecordingNotifier,
) -> SessionService:
    return recorded(config, aws, clock, notifier)


def tasks_in_cluster(aws: boto3.session.Session, config: SessionsConfig) -> list[dict[str, Any]]:
    ecs = aws.client("ecs")
    arns = ecs.list_tasks(cluster=config.cluster_arn)["taskArns"]
    if not arns:
        return []
    return list(
        ecs.describe_tasks(cluster=config.cluster_arn, tasks=arns, include=["TAGS"])["tasks"]
    )


def running_tasks(aws: boto3.session.Session, config: SessionsConfig) -> list[dict[str, Any]]:
    return [t for t in tasks_in_cluster(aws, config) if t["lastStatus"] != "STOPPED"]


@pytest.fixture
def storage_environment(environment: dict[str, str], aws: boto3.session.Session) -> dict[str, str]:
    """The default profile keeps storage at /data on an EFS file system (moto's)."""
    file_system = aws.client("efs").create_file_system(
        CreationToken="berth-sessions", Encrypted=True
    )["FileSystemId"]
    profiles = json.loads(environment["BERTH_PROFILES"])
    profiles["default"]["storage_path"] = "/data"
    return {
        **environment,
        "BERTH_PROFILES": json.dumps(profiles),
        "BERTH_STORAGE_FILE_SYSTEM": file_system,
    }


@pytest.fixture
def storage_config(storage_environment: dict[str, str]) -> SessionsConfig:
    return SessionsConfig.from_env(storage_environment)


@pytest.fixture
def storage_service(
    storage_config: SessionsConfig,
    aws: boto3.session.Session,
    clock: FakeClock,
    notifier: RecordingNotifier,
) -> SessionService:
    return recorded(storage_config, aws, clock, notifier)
