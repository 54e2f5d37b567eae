"""Per-command AWS access, narrowed to the project and command at hand.

The worker's task role may only read the queue, publish output and assume the *command
role*. For each command the worker assumes that role with the session tags ``project``,
``command`` and ``user``; the role's policies name ``${aws:PrincipalTag/project}`` and
``${aws:PrincipalTag/command}``, so everything done for a command (workspace files, its log,
its record and its user's count) can reach only that project's prefix and that command's
items — a bug in the worker cannot spill one project into another. Credentials refresh
themselves (role chaining caps a session at one hour; commands may run longer).

Without a command role (unit tests) the worker's own session is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

from workers.repository import WorkersRepository

SESSION_SECONDS = 3600


@dataclass(frozen=True)
class CommandAccess:
    repository: WorkersRepository
    lease_repository: WorkersRepository
    """A second handle for the heartbeat thread (boto3 resources are not thread-safe)."""
    s3: Any


class AccessBroker:
    def __init__(self, session: boto3.session.Session, table: str, role_arn: str | None):
        self.session = session
        self.table = table
        self.role_arn = role_arn
        self.sts: Any = session.client("sts") if role_arn else None

    def for_command(self, project: str, command_id: str, user: str) -> CommandAccess:
        session = self._scoped(project, command_id, user) if self.role_arn else self.session
        dynamodb = session.resource("dynamodb")
        return CommandAccess(
            repository=WorkersRepository(dynamodb.Table(self.table)),
            lease_repository=WorkersRepository(session.resource("dynamodb").Table(self.table)),
            s3=session.client("s3"),
        )

    def _scoped(self, project: str, command_id: str, user: str) -> boto3.session.Session:
        def fetch() -> dict[str, str]:
            credentials = self.sts.assume_role(
                RoleArn=self.role_arn,
                RoleSessionName=command_id[:64],
                DurationSeconds=SESSION_SECONDS,
                Tags=[
                    {"Key": "project", "Value": project},
                    {"Key": "command", "Value": command_id},
                    {"Key": "user", "Value": user},
                ],
            )["Credentials"]
            expiry = credentials["Expiration"]
            if isinstance(expiry, datetime):
                expiry = expiry.astimezone(UTC).isoformat()
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": str(expiry),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
        )
        botocore_session = get_session()
        botocore_session._credentials = credentials  # the documented-by-use way to attach them
        return boto3.session.Session(
            botocore_session=botocore_session, region_name=self.session.region_name
        )
