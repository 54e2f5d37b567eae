"""Credentials for a worker task, scoped to the one user it is bound to.

A worker task's own role can do almost nothing: call this route, say it is idle or alive,
read its binding. Whatever it does for its user it does with credentials vended here, after
checking who is asking and for whom:

- the caller must be a session of the worker task role — on ECS its session name is the
  task's id (``arn:aws:sts::<account>:assumed-role/<worker role>/<task id>``) — so a task
  asks as itself and no one else;
- the task's binding (``workers.reserve``: ``BIND#<task>``, written once, by the scaler) says
  its user; an unbound task, or one that left, gets nothing;
- asked for a command, the command must be that user's.

The credentials are the *tenant role* assumed with the session tags ``user`` and ``tenant``
(its queue), plus ``project`` and ``command`` when asked for a command (that project's files
and log, that command's record, that user's count, that project's terminals). A task holding
root cannot name another user, project or command: the tags come from the binding and the
record, never from the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from shared.errors import Conflict, NotFound
from workers.config import VendingConfig
from workers.repository import WorkersRepository
from workers.reserve import LEFT, FleetRegistry
from workers.tenancy import queue_name, tenant_of

SESSION_SECONDS = 3600
TASK_SESSION = re.compile(
    r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/(?P<role>[\w+=,.@-]+)/(?P<task>[\w+=,.@-]+)$"
)


@dataclass(frozen=True)
class Vended:
    user: str
    tenant: str
    queue_name: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: str


class CredentialVendor:
    def __init__(
        self,
        config: VendingConfig,
        registry: FleetRegistry,
        repository: WorkersRepository,
        sts: Any,
    ) -> None:
        self.config = config
        self.registry = registry
        self.repository = repository
        self.sts = sts

    def vend(self, caller: str, command_id: str | None = None) -> Vended:
        task = self._task_of(caller)
        user = self.registry.binding_of(task)
        if user is None or user == LEFT:
            raise Conflict("this worker task is not bound to a user", code="not_bound")
        tags = {"user": user, "tenant": tenant_of(user)}
        if command_id is not None:
            command = self.repository.get(command_id)
            if command is None or command.user != user:
                raise NotFound("command")
            tags |= {"project": command.project, "command": command.id}
        credentials = self.sts.assume_role(
            RoleArn=self.config.tenant_role_arn,
            RoleSessionName=task[:64],
            DurationSeconds=SESSION_SECONDS,
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
        )["Credentials"]
        expiration = credentials["Expiration"]
        if isinstance(expiration, datetime):
            expiration = expiration.astimezone(UTC).isoformat()
        return Vended(
            user=user,
            tenant=tags["tenant"],
            queue_name=queue_name(self.config.user_queue_prefix, user),
            access_key_id=credentials["AccessKeyId"],
            secret_access_key=credentials["SecretAccessKey"],
            session_token=credentials["SessionToken"],
            expiration=str(expiration),
        )

    def _task_of(self, caller: str) -> str:
        """The task id of a worker task's session; anyone else is told there is nothing."""
        found = TASK_SESSION.match(caller)
        if found is None or found["role"] != self.config.worker_role_name:
            raise NotFound("worker task")
        return found["task"]


@cache
def vendor_from_env() -> CredentialVendor:
    import boto3

    config = VendingConfig.from_env()
    table = boto3.resource("dynamodb").Table(config.workers_table)
    return CredentialVendor(
        config, FleetRegistry(table), WorkersRepository(table), boto3.client("sts")
    )
