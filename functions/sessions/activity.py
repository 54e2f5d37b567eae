"""Is anybody using a session? Its owner's heartbeats are one answer; this module finds the
two others the reaper asks before it calls a session idle:

- **routed traffic**: with routing on, each session has a target group of its own; the
  load balancer counts its requests (``AWS/ApplicationELB`` ``RequestCount``, per minute,
  arriving a minute or two late);
- **container activity**: a line of the container's output holding its profile's
  ``activity_marker`` (``berth:active`` by default), read from its log stream.

Neither needs anything inside the container: no credentials, no agent, no open port.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sessions.logs import ContainerLogs
from sessions.routing import Route

NAMESPACE = "AWS/ApplicationELB"
REQUESTS = "RequestCount"
MAX_DATAPOINTS = 1440
"""CloudWatch answers at most this many datapoints a call: a longer window starts later."""


@dataclass(frozen=True)
class Use:
    """The latest moment a signal shows the session in use, and what showed it."""

    at: float
    signal: str
    detail: dict[str, Any]


def load_balancer_dimension(listener_arn: str) -> str:
    """``app/<name>/<id>`` from ``arn:...:listener/app/<name>/<id>/<listener id>``."""
    return listener_arn.split(":listener/", 1)[-1].rsplit("/", 1)[0]


def target_group_dimension(target_group_arn: str) -> str:
    """``targetgroup/<name>/<id>`` from the target group's ARN."""
    return target_group_arn.rsplit(":", 1)[-1]


def request_dimensions(listener_arn: str, target_group_arn: str) -> list[dict[str, str]]:
    """The dimensions the load balancer counts a target group's requests under."""
    return [
        {"Name": "LoadBalancer", "Value": load_balancer_dimension(listener_arn)},
        {"Name": "TargetGroup", "Value": target_group_dimension(target_group_arn)},
    ]


class Activity:
    def __init__(
        self,
        cloudwatch: Any,
        container_logs: ContainerLogs | None,
        *,
        listener_arn: str | None,
        period_seconds: int = 60,
    ) -> None:
        self.cloudwatch = cloudwatch
        self.container_logs = container_logs
        self.listener_arn = listener_arn
        self.period = period_seconds

    def last_use(
        self,
        route: Route | None,
        log_stream: tuple[str, str] | None,
        marker: str | None,
        since: float,
        now: float,
    ) -> Use | None:
        """The latest use after ``since`` that either signal shows (None: nothing seen)."""
        found = [
            use
            for use in (
                self.last_request(route, since, now),
                self.last_report(log_stream, marker, since),
            )
            if use is not None and use.at > since
        ]
        return max(found, key=lambda use: use.at, default=None)

    def last_request(self, route: Route | None, since: float, now: float) -> Use | None:
        """The end of the latest period with requests through the route (capped at now)."""
        if route is None or not self.listener_arn:
            return None
        start = max(since, now - MAX_DATAPOINTS * self.period)
        answer = self.cloudwatch.get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=REQUESTS,
            Dimensions=request_dimensions(self.listener_arn, route.target_group),
            StartTime=datetime.fromtimestamp(start, UTC),
            EndTime=datetime.fromtimestamp(now, UTC),
            Period=self.period,
            Statistics=["Sum"],
        )
        busy = [p for p in answer.get("Datapoints", []) if p.get("Sum", 0) > 0]
        if not busy:
            return None
        latest = max(busy, key=lambda p: p["Timestamp"])
        at = min(latest["Timestamp"].timestamp() + self.period, now)
        requests = int(sum(p["Sum"] for p in busy))
        return Use(at, "routed traffic", {"requests": requests})

    def last_report(
        self, log_stream: tuple[str, str] | None, marker: str | None, since: float
    ) -> Use | None:
        """The latest output line holding the profile's marker."""
        if log_stream is None or not marker or self.container_logs is None:
            return None
        at = self.container_logs.last_marked(*log_stream, marker, since)
        return Use(at, "container activity", {"marker": marker}) if at is not None else None
