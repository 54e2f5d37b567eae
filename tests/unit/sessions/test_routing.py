"""Session routes on the load balancer (routing on), against moto's ELBv2: opened when a
session runs, guarded by host and token, rotated, closed, bounded, strays reaped."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from sessions.config import SessionsConfig
from sessions.models import Status
from sessions.reaping import Reaper
from sessions.routing import COOKIE, HEADER, ROUTING_TAG, SESSION_TAG, Route
from sessions.service import SessionService
from sessions.wiring import SessionPush
from shared.api import status_of
from shared.errors import DomainError
from tests.aws import FakeClock
from tests.unit.sessions.conftest import (
    ALICE,
    BOB,
    RecordingNotifier,
    recorded,
    tasks_in_cluster,
)

CAROL = "arn:aws:sts::123456789012:assumed-role/berth-client/carol"
DOMAIN = "sessions.example.com"


@pytest.fixture
def listener(aws: boto3.session.Session, config: SessionsConfig) -> tuple[str, str]:
    """berth's routing load balancer and its listener (what infra/routing.py makes)."""
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    (subnet,) = config.task_subnets
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    other = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.8.0/22", AvailabilityZone="us-east-1b")
    balancer = elbv2.create_load_balancer(
        Name="berth-routing",
        Subnets=[subnet, other["Subnet"]["SubnetId"]],
        Scheme="internet-facing",
    )["LoadBalancers"][0]["LoadBalancerArn"]
    created = elbv2.create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "ContentType": "application/json"},
            }
        ],
    )
    return created["Listeners"][0]["ListenerArn"], vpc


@pytest.fixture
def routed(
    config: SessionsConfig,
    listener: tuple[str, str],
    aws: boto3.session.Session,
    clock: FakeClock,
    notifier: RecordingNotifier,
) -> SessionService:
    listener_arn, vpc = listener
    profiles = dict(config.profiles)
    profiles["default"] = profiles["default"].model_copy(update={"health_check_path": "/healthz"})
    return recorded(
        config.model_copy(
            update={
                "profiles": profiles,
                "routing_listener_arn": listener_arn,
                "routing_vpc_id": vpc,
                "routing_domain": DOMAIN,
                "routing_tag": "berth",
                "max_routes": 2,
                "max_sessions_per_user": 3,
            }
        ),
        aws,
        clock,
        notifier,
    )


def run(service: SessionService, aws: boto3.session.Session, config: SessionsConfig) -> None:
    """ECS reports every task running (the task-state events)."""
    for task in tasks_in_cluster(aws, config):
        if task["lastStatus"] != "STOPPED":
            service.on_task_event({**task, "lastStatus": "RUNNING"})


def rules(aws: boto3.session.Session, listener_arn: str) -> list[dict[str, Any]]:
    described = aws.client("elbv2").describe_rules(ListenerArn=listener_arn)["Rules"]
    return [r for r in described if not r.get("IsDefault")]


def conditions(rule: dict[str, Any]) -> dict[str, list[str]]:
    found = {}
    for condition in rule["Conditions"]:
        if condition["Field"] == "host-header":
            found["host"] = condition["HostHeaderConfig"]["Values"]
        else:
            config = condition["HttpHeaderConfig"]
            found[config["HttpHeaderName"]] = config["Values"]
    return found


def test_a_running_session_gets_a_route_that_needs_its_host_and_token(
    routed: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    listener: tuple[str, str],
) -> None:
    session, _ = routed.create(ALICE, "default", None)
    assert session.token and len(session.token) == 32
    run(routed, aws, config)
    running = routed.get(ALICE, session.id)
    assert running.status == Status.RUNNING and running.route
    assert routed.url_of(running) == f"https://{session.id}.{DOMAIN}/"

    found = rules(aws, listener[0])
    assert len(found) == 2
    by_header = {next(k for k in conditions(r) if k != "host"): conditions(r) for r in found}
    host = [f"{session.id}.{DOMAIN}"]
    assert by_header["Cookie"] == {"host": host, "Cookie": [f"*{COOKIE}={session.token}*"]}
    assert by_header[HEADER] == {"host": host, HEADER: [session.token]}
    route = Route.parse(running.route)
    assert route is not None
    elbv2 = aws.client("elbv2")
    health = elbv2.describe_target_health(TargetGroupArn=route.target_group)
    targets = [(t["Target"]["Id"], t["Target"]["Port"]) for t in health["TargetHealthDescriptions"]]
    assert targets == [(running.private_ip, 8080)]
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[route.target_group])["TargetGroups"]
    assert (group["TargetType"], group["HealthCheckPath"]) == ("ip", "/healthz")
    for rule in found:
        assert rule["Actions"][0]["TargetGroupArn"] == route.target_group
    tags = elbv2.describe_tags(ResourceArns=[route.target_group, *route.rules])
    for entry in tags["TagDescriptions"]:
        assert {"Key": ROUTING_TAG, "Value": "berth"} in entry["Tags"]
        assert {"Key": SESSION_TAG, "Value": session.id} in entry["Tags"]


def test_the_token_is_for_its_owner_only(
    routed: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = routed.create(ALICE, "default", None)
    run(routed, aws, config)
    with pytest.raises(DomainError) as raised:
        routed.get(BOB, session.id)
    assert status_of(raised.value) == 404
    pushed: list[dict[str, Any]] = []

    class Recorder:
        def publish(self, topic: str, message: dict[str, Any]) -> None:
            pushed.append(message)

    SessionPush(Recorder()).session_changed(routed.get(ALICE, session.id))  # type: ignore[arg-type]
    assert pushed and pushed[0]["session"]["token"] is None


def test_rotating_the_token_rewrites_both_rules(
    routed: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    listener: tuple[str, str],
) -> None:
    session, _ = routed.create(ALICE, "default", None)
    run(routed, aws, config)
    rotated = routed.rotate_token(ALICE, session.id)
    assert rotated.token and rotated.token != session.token
    values = [v for r in rules(aws, listener[0]) for k, v in conditions(r).items() if k != "host"]
    assert sorted(values) == sorted([[f"*{COOKIE}={rotated.token}*"], [rotated.token]])
    with pytest.raises(DomainError) as raised:
        routed.rotate_token(BOB, session.id)
    assert status_of(raised.value) == 404


def test_stopping_removes_the_route(
    routed: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    listener: tuple[str, str],
) -> None:
    session, _ = routed.create(ALICE, "default", None)
    run(routed, aws, config)
    route = Route.parse(routed.get(ALICE, session.id).route)
    assert route is not None
    routed.stop(ALICE, session.id)
    assert rules(aws, listener[0]) == []
    groups = aws.client("elbv2").describe_target_groups()["TargetGroups"]
    assert route.target_group not in {g["TargetGroupArn"] for g in groups}


def test_routes_are_bounded_429_routing_full_and_a_stop_frees_one(
    routed: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    first, _ = routed.create(ALICE, "default", None)
    routed.create(BOB, "default", None)
    with pytest.raises(DomainError) as raised:
        routed.create(CAROL, "default", None)
    assert (status_of(raised.value), raised.value.code) == (429, "routing_full")
    routed.stop(ALICE, first.id)
    third, created = routed.create(CAROL, "default", None)
    assert created and third.token


def test_the_reaper_removes_routes_without_a_live_session(
    routed: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    listener: tuple[str, str],
) -> None:
    kept, _ = routed.create(ALICE, "default", None)
    run(routed, aws, config)
    assert routed.routes is not None
    # a route left behind by a session that ended (say, its function died mid-way)
    stray = routed.routes.open("ses_" + "0" * 28, "10.40.0.9", 8080, "t" * 32)
    decisions = [d for d in Reaper(routed).reap(dry_run=False) if d.action == "remove_route"]
    assert sorted(d.signals["arn"] for d in decisions) == sorted([stray.target_group, *stray.rules])
    left = rules(aws, listener[0])
    assert len(left) == 2 and all(kept.id in conditions(r)["host"][0] for r in left)


def test_two_opens_of_one_session_make_one_route_and_others_go_elsewhere(
    routed: SessionService, aws: boto3.session.Session, listener: tuple[str, str]
) -> None:
    """The task event and a GET can both see a session run: the same rules, not two pairs;
    a session whose priorities are taken by another gets the next free pair."""
    assert routed.routes is not None
    first = routed.routes.open("ses_" + "1" * 28, "10.40.0.7", 8080, "a" * 32)
    again = routed.routes.open("ses_" + "1" * 28, "10.40.0.7", 8080, "a" * 32)
    assert again == first and len(rules(aws, listener[0])) == 2
    routed.routes.host = lambda session_id: "taken.example"  # type: ignore[method-assign]
    other = routed.routes.open("ses_" + "1" * 28, "10.40.0.8", 8080, "b" * 32)
    assert set(other.rules).isdisjoint(first.rules) and len(rules(aws, listener[0])) == 4


def test_a_route_that_failed_to_open_is_opened_by_the_reaper(
    routed: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    listener: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert routed.routes is not None
    session, _ = routed.create(ALICE, "default", None)
    with monkeypatch.context() as patched:
        patched.setattr(routed.routes, "open", lambda *_: (_ for _ in ()).throw(OSError("elb")))
        run(routed, aws, config)  # the session runs, its route could not be made
    running = routed.get(ALICE, session.id)
    assert running.status == Status.RUNNING and running.route is None
    decisions = [d.action for d in Reaper(routed).reap(dry_run=False)]
    assert decisions == ["open_route"]
    assert routed.get(ALICE, session.id).route and len(rules(aws, listener[0])) == 2
