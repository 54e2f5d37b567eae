"""A session's container output, read from CloudWatch Logs (the awslogs driver writes each
task's to the stream ``<profile>/<container>/<task id>`` of the profile's log group)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from shared.pagination import InvalidToken

LAST_LINES = 5
"""How many of a failed container's last lines its session's ``error`` quotes."""
MAX_LINE_CHARS = 300


@dataclass(frozen=True)
class LogLine:
    at: float
    message: str


def stream_of(profile: str, container: str, task_arn: str) -> str:
    return f"{profile}/{container}/{task_arn.rsplit('/', 1)[-1]}"


class ContainerLogs:
    def __init__(self, logs: Any) -> None:
        self.logs = logs

    def read(
        self,
        group: str,
        stream: str,
        *,
        since: float | None,
        limit: int,
        token: str | None,
    ) -> tuple[list[LogLine], str | None]:
        """A page of lines, oldest first, and the token of the next (CloudWatch's forward
        token: the same one comes back while nothing new was written). No stream yet (the
        container has not written): no lines, no token."""
        request: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "limit": limit,
            "startFromHead": True,
        }
        if token:
            request["nextToken"] = token
        elif since is not None:  # before 1970 there was nothing yet: from the start
            request["startTime"] = max(0, int(since * 1000))
        try:
            page = self.logs.get_log_events(**request)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ResourceNotFoundException":
                return [], None
            if token and code == "InvalidParameterException":
                raise InvalidToken from None
            raise
        lines = [
            LogLine(event["timestamp"] / 1000, str(event["message"]).rstrip("\n"))
            for event in page.get("events", [])
        ]
        return lines, page.get("nextForwardToken")

    def last_lines(self, group: str, stream: str, count: int = LAST_LINES) -> list[str]:
        """The container's last ``count`` lines (cut to a readable length); none if it wrote
        nothing or its log cannot be read now."""
        try:
            page = self.logs.get_log_events(
                logGroupName=group, logStreamName=stream, limit=count, startFromHead=False
            )
        except ClientError:
            return []
        return [str(e["message"]).rstrip("\n")[:MAX_LINE_CHARS] for e in page.get("events", [])]

    def last_marked(self, group: str, stream: str, marker: str, since: float) -> float | None:
        """When the container last printed a line holding ``marker`` after ``since`` (the
        latest in one page of matches: a later run sees the rest); None if it did not."""
        try:
            page = self.logs.filter_log_events(
                logGroupName=group,
                logStreamNames=[stream],
                startTime=int(since * 1000) + 1,
                filterPattern=json.dumps(marker),  # a quoted term: the word as it is
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None  # it has printed nothing yet
            raise
        return max((e["timestamp"] / 1000 for e in page.get("events", [])), default=None)
