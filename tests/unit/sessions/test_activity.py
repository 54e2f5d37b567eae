"""Idle means nobody uses it: past its heartbeat deadline, a session whose route carried
requests or whose container printed its activity line is kept (and says why); one with
neither is stopped; one whose activity cannot be read is left for the next run."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sessions.activity import NAMESPACE, REQUESTS, Activity, request_dimensions
from sessions.config import SessionsConfig
from sessions.logs import ContainerLogs
from sessions.models import Session, SessionOut, Status
from sessions.reaping import Decision, Reaper
from sessions.routing import Route
from sessions.service import SessionService
from sessions.wiring import build_activity
from tests.aws import FakeClock
from tests.unit.sessions.conftest import ALICE, BOB, tasks_in_cluster
from tests.unit.sessions.test_routing import listener, routed, run

__all__ = ["listener", "routed"]  # fixtures this module uses

IDLE = 900  # the default profile's idle_timeout_seconds in these tests


@pytest.fixture
def clock() -> FakeClock:
    """An hour ago: CloudWatch Logs takes no event from the future."""
    return FakeClock(time.time() - 3600)


def reap(service: SessionService, aws: boto3.session.Session) -> list[Decision]:
    return Reaper(service, build_activity(service, session=aws)).reap(dry_run=False)


def about(decisions: list[Decision], session: Session) -> list[tuple[str, str]]:
    return [(d.action, d.reason) for d in decisions if d.session_id == session.id]


def requests(
    aws: boto3.session.Session, service: SessionService, session: Session, at: float, count: int
) -> None:
    """The load balancer counting ``count`` requests to the session's target group."""
    route = Route.parse(service.repo.get(session.id).route)  # type: ignore[union-attr]
    assert route is not None and service.config.routing_listener_arn
    aws.client("cloudwatch").put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": REQUESTS,
                "Dimensions": request_dimensions(
                    service.config.routing_listener_arn, route.target_group
                ),
                "Timestamp": datetime.fromtimestamp(at, UTC),
                "Value": count,
                "Unit": "Count",
            }
        ],
    )


def printed(
    aws: boto3.session.Session, service: SessionService, session: Session, at: float, line: str
) -> None:
    """The container's awslogs driver writing one line."""
    stream = service.log_stream(session, session.task_arn)
    assert stream is not None
    logs = aws.client("logs")
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=stream[0], logStreamName=stream[1])
    logs.put_log_events(
        logGroupName=stream[0],
        logStreamName=stream[1],
        logEvents=[{"timestamp": int(at * 1000), "message": line}],
    )


def started(service: SessionService, user: str, aws: boto3.session.Session) -> Session:
    session, _ = service.create(user, "default", None)
    run(service, aws, service.config)
    stored = service.repo.get(session.id)
    assert stored is not None and stored.status == Status.RUNNING
    return stored


def test_requests_through_its_route_keep_a_session_without_heartbeats(
    routed: SessionService, aws: boto3.session.Session, clock: FakeClock
) -> None:
    used, unused = started(routed, ALICE, aws), started(routed, BOB, aws)
    requests(aws, routed, used, clock.now + 950, 12)  # after both heartbeat deadlines
    clock.advance(IDLE + 100)

    decisions = reap(routed, aws)
    assert about(decisions, used) == [("mark_active", "in use (routed traffic)")]
    (kept,) = [d for d in decisions if d.session_id == used.id]
    assert kept.signals["requests"] == 12  # the decision says what it saw
    assert about(decisions, unused) == [
        ("stop", "idle (no heartbeat, routed request or activity line)")
    ]  # another session's requests count for that session only
    stored = routed.repo.get(used.id)
    assert stored is not None and stored.status == Status.RUNNING
    assert stored.last_active_at is not None
    assert used.created_at + 950 < stored.last_active_at <= round(clock.now, 3)  # period end
    shown = SessionOut.of(stored)
    assert shown.idle_expires_at > SessionOut.of(used).idle_expires_at  # callers see it too
    assert about(reap(routed, aws), used) == []  # nothing more to decide until the new deadline

    clock.advance(IDLE + 1)  # no request since
    assert about(reap(routed, aws), used) == [
        ("stop", "idle (no heartbeat, routed request or activity line)")
    ]


def test_requests_older_than_the_idle_timeout_do_not_keep_it(
    routed: SessionService, aws: boto3.session.Session, clock: FakeClock
) -> None:
    session = started(routed, ALICE, aws)
    requests(aws, routed, session, clock.now + 300, 5)  # heard, then silence for too long
    clock.advance(300 + IDLE + 200)
    decisions = reap(routed, aws)
    assert about(decisions, session) == [
        ("stop", "idle (no heartbeat, routed request or activity line)")
    ]
    (stop,) = decisions
    assert stop.signals["signal"] == "routed traffic"  # the stop says what it last saw


def test_a_container_printing_its_activity_line_is_in_use(
    service: SessionService,
    aws: boto3.session.Session,
    clock: FakeClock,
    config: SessionsConfig,
) -> None:
    profiles = dict(config.profiles)
    profiles["default"] = profiles["default"].model_copy(update={"activity_marker": "berth:active"})
    service.config = config.model_copy(update={"profiles": profiles})
    busy, quiet = started(service, ALICE, aws), started(service, BOB, aws)
    printed(aws, service, busy, clock.now + 950, "training epoch 7 berth:active")
    printed(aws, service, quiet, clock.now + 950, "GET / 200")  # output, but not the line
    clock.advance(IDLE + 100)

    decisions = reap(service, aws)
    assert about(decisions, busy) == [("mark_active", "in use (container activity)")]
    assert about(decisions, quiet) == [
        ("stop", "idle (no heartbeat, routed request or activity line)")
    ]


def test_without_a_marker_the_output_is_never_asked(
    service: SessionService, aws: boto3.session.Session, clock: FakeClock
) -> None:
    assert service.config.profiles["default"].activity_marker is None
    session = started(service, ALICE, aws)
    printed(aws, service, session, clock.now + 950, "berth:active")
    clock.advance(IDLE + 100)
    assert about(reap(service, aws), session) == [
        ("stop", "idle (no heartbeat, routed request or activity line)")
    ]


class Refusing:
    """CloudWatch refusing every call (throttled past botocore's retries)."""

    def get_metric_statistics(self, **_: Any) -> Any:
        raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Get")


def test_activity_that_cannot_be_read_is_not_idleness(
    routed: SessionService, aws: boto3.session.Session, clock: FakeClock
) -> None:
    session = started(routed, ALICE, aws)
    clock.advance(IDLE + 100)
    refusing = Activity(
        Refusing(),
        ContainerLogs(aws.client("logs")),
        listener_arn=routed.config.routing_listener_arn,
    )
    decisions = Reaper(routed, refusing).reap(dry_run=False)
    assert about(decisions, session) == [("wait", "its activity cannot be read (Throttling)")]
    assert routed.get(ALICE, session.id).status == Status.RUNNING
    assert about(reap(routed, aws), session)[0][0] == "stop"  # readable again: decided


def test_a_recorded_use_never_moves_back_nor_overwrites_a_heartbeat(
    service: SessionService, clock: FakeClock, aws: boto3.session.Session
) -> None:
    session = started(service, ALICE, aws)
    assert service.repo.mark_used(session, clock.now + 50)
    assert not service.repo.mark_used(session, clock.now + 20)  # an older (replayed) finding
    clock.advance(60)
    service.heartbeat(ALICE, session.id)  # written after the reaper read the session
    assert service.repo.mark_used(session, clock.now)  # the reaper's stale copy
    stored = service.repo.get(session.id)
    assert stored is not None
    assert stored.last_heartbeat_at == pytest.approx(clock.now, abs=0.001)  # kept
    assert stored.last_active_at == pytest.approx(clock.now, abs=0.001)
    service.stop(ALICE, session.id)
    for task in tasks_in_cluster(aws, service.config):
        service.on_task_event({**task, "lastStatus": "STOPPED"})
    assert not service.repo.mark_used(session, clock.now + 1)  # an ended one is left alone
