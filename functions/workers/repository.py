"""The workers table. Kinds of item:

- ``pk = PROJECT#<name>``: the project's owner (its first user).
- ``pk = CMD#<id>``: a command. Indexed ``by_project`` (project + created_at, for listings)
  and in the sparse ``active`` index (created_at) while QUEUED or RUNNING and for
  ``workers.keep_warm_seconds`` after it ends — the scaler sizes the warm reserve from those
  projects; the reconciler takes ended commands out once that time has passed.
- ``pk = COUNT#<user>``: how many of the user's commands are QUEUED or RUNNING, bounded by
  ``limits.max_queued_commands_per_user``.
- ``pk = FLEET`` and ``pk = BIND#<worker>``: the fleet and each worker's one user
  (``workers.reserve``).

Every status change is one conditional write on the status it expects (and, for a worker, on
its own lease), so two writers never both win; every move to a final status frees the
user's count in the same transaction.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from shared.pagination import query_all, query_page
from shared.records import number, to_item
from shared.transactions import count, counted
from workers.models import (
    FINISHED,
    TAIL_BYTES,
    Command,
    CommandStatus,
    ErrorCode,
)

BY_PROJECT = "by_project"
ACTIVE = "active"
ACTIVE_VALUE = "1"
FINISHED_RECORD_RETENTION_SECONDS = 90 * 24 * 3600


class Claim(Enum):
    NEW = "new"
    """The caller owns the project from now on."""
    OWNED = "owned"
    OTHERS = "others"


class StaleCommand(Exception):
    """The command is no longer in the state the caller expected (another writer won)."""


class QueueFull(Exception):
    """The user already has the most commands they may have queued or running."""


def project_key(project: str) -> str:
    return f"PROJECT#{project}"


def command_key(command_id: str) -> str:
    return f"CMD#{command_id}"


def count_key(user: str) -> str:
    return f"COUNT#{user}"


class WorkersRepository:
    def __init__(self, table: Any) -> None:
        """``table`` is a boto3 ``dynamodb.Table`` (resource API)."""
        self.table = table
        self.client = table.meta.client
        self.name = table.name

    # --- projects -----------------------------------------------------------------------------

    def claim_project(self, project: str, user: str, now: float) -> Claim:
        """Records ``user`` as the project's owner on first use."""
        try:
            old = self.table.update_item(
                Key={"pk": project_key(project)},
                UpdateExpression="SET #o = :user, created_at = if_not_exists(created_at, :now)",
                ConditionExpression="attribute_not_exists(pk) OR #o = :user",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":user": user, ":now": int(now)},
                ReturnValues="UPDATED_OLD",
            ).get("Attributes")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return Claim.OTHERS
            raise
        return Claim.OWNED if old else Claim.NEW

    def owner_of(self, project: str) -> str | None:
        item = self.table.get_item(Key={"pk": project_key(project)}, ConsistentRead=True).get(
            "Item"
        )
        return str(item["owner"]) if item else None

    # --- reads --------------------------------------------------------------------------------

    def get(self, command_id: str) -> Command | None:
        item = self.table.get_item(Key={"pk": command_key(command_id)}, ConsistentRead=True).get(
            "Item"
        )
        return Command.from_record(item) if item else None

    def list_for_project(
        self, project: str, limit: int, token: str | None
    ) -> tuple[list[Command], str | None]:
        items, next_token = query_page(
            self.table, BY_PROJECT, ("project", project), limit=limit, token=token
        )
        return [Command.from_record(item) for item in items], next_token

    def active(self) -> list[Command]:
        """Every command QUEUED or RUNNING, and those ended within the keep-warm time (unless
        already taken out), oldest first: the scaler's and the reconciler's view."""
        items = query_all(self.table, ACTIVE, ACTIVE, ACTIVE_VALUE)
        return [Command.from_record(item) for item in items]

    # --- writes -------------------------------------------------------------------------------

    def add(self, command: Command, max_pending: int) -> None:
        """Stores a new QUEUED command and counts it for its user; raises ``QueueFull`` at
        the user's limit."""
        items = [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": self._item(command),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            count(self.name, count_key(command.user), 1, limit=max_pending),
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            failed = [
                reason.get("Code") == "ConditionalCheckFailed"
                for reason in exc.response.get("CancellationReasons") or []
            ]
            if len(failed) > 1 and failed[1]:
                raise QueueFull(command.user) from None
            raise StaleCommand(command.id) from None

    def pending(self, user: str) -> int:
        """The user's commands QUEUED or RUNNING (what ``add`` counts against the limit)."""
        return counted(self.table, count_key(user))

    def claim(self, command_id: str, worker: str, now: float, lease_seconds: float) -> Command:
        """QUEUED → RUNNING for ``worker``, with a lease; raises ``StaleCommand`` otherwise."""
        return self._update(
            command_id,
            sets={
                "status": CommandStatus.RUNNING.value,
                "worker": worker,
                "started_at": now,
                "updated_at": now,
                "lease_expires_at": now + lease_seconds,
            },
            condition="#status = :queued",
            values={":queued": CommandStatus.QUEUED.value},
        )

    def release(self, command_id: str, worker: str, now: float) -> Command:
        """RUNNING on ``worker`` → QUEUED again, for a command whose process never started
        (its worker could not prepare it); ``StaleCommand`` if it is no longer the worker's."""
        return self._update(
            command_id,
            sets={"status": CommandStatus.QUEUED.value, "updated_at": now},
            condition="#status = :running AND #worker = :me",
            values={":running": CommandStatus.RUNNING.value, ":me": worker},
            remove=["worker", "started_at", "lease_expires_at"],
        )

    def renew(
        self, command_id: str, worker: str, now: float, lease_seconds: float, tail: str | None
    ) -> Command:
        """Extends ``worker``'s lease (and stores the output's tail); ``StaleCommand`` if the
        command is no longer RUNNING on this worker."""
        sets: dict[str, Any] = {"lease_expires_at": now + lease_seconds, "updated_at": now}
        if tail is not None:
            sets["tail"] = tail[-TAIL_BYTES:]
        return self._update(
            command_id,
            sets=sets,
            condition="#status = :running AND #worker = :me",
            values={":running": CommandStatus.RUNNING.value, ":me": worker},
        )

    def request_cancel(self, command_id: str, now: float) -> Command:
        """Asks the worker running the command to stop it; ``StaleCommand`` if not RUNNING."""
        return self._update(
            command_id,
            sets={"cancel_requested": True, "updated_at": now},
            condition="#status = :running",
            values={":running": CommandStatus.RUNNING.value},
        )

    def finish(
        self,
        command: Command,
        status: CommandStatus,
        now: float,
        *,
        exit_code: int | None = None,
        error: tuple[ErrorCode, str] | None = None,
        tail: str | None = None,
        worker: str | None = None,
        lease_expires_at: float | None = None,
    ) -> None:
        """Ends ``command`` (as last read) with ``status`` and frees the user's count.

        The write holds only if the command is still in the status it was read in and, with
        ``worker``, still held by that worker — with ``lease_expires_at``, still under that
        very lease (so a lease renewed since it was read is never declared lost).
        Raises ``StaleCommand`` otherwise.
        """
        if status not in FINISHED:
            raise ValueError(f"{status} is not a final status")
        sets: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now}
        sets["expires_record_at"] = int(now) + FINISHED_RECORD_RETENTION_SECONDS
        if exit_code is not None:
            sets["exit_code"] = exit_code
        if error is not None:
            sets["error_code"], sets["error_message"] = error[0].value, error[1]
        if tail is not None:
            sets["tail"] = tail[-TAIL_BYTES:]
        condition = ["#status = :expected"]
        values: dict[str, Any] = {":expected": command.status.value}
        if worker is not None:
            condition.append("#worker = :me")
            values[":me"] = worker
        if lease_expires_at is not None:
            condition.append("#lease_expires_at = :lease")
            values[":lease"] = number(lease_expires_at)
        update = self._expression(command.id, sets, " AND ".join(condition), values)
        items = [
            {"Update": {"TableName": self.name, **update}},
            count(self.name, count_key(command.user), -1),
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise StaleCommand(command.id) from None
            raise

    def retire(self, command_id: str) -> None:
        """Takes an ended command out of the active index (its keep-warm time is over)."""
        try:
            self.table.update_item(
                Key={"pk": command_key(command_id)},
                UpdateExpression="REMOVE #a",
                ConditionExpression="#s IN (:succeeded, :failed, :cancelled)",
                ExpressionAttributeNames={"#a": ACTIVE, "#s": "status"},
                ExpressionAttributeValues={
                    ":succeeded": CommandStatus.SUCCEEDED.value,
                    ":failed": CommandStatus.FAILED.value,
                    ":cancelled": CommandStatus.CANCELLED.value,
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # --- helpers ------------------------------------------------------------------------------

    def _item(self, command: Command) -> dict[str, Any]:
        item = to_item(command_key(command.id), command.to_record())
        item[ACTIVE] = ACTIVE_VALUE
        return item

    def _expression(
        self,
        command_id: str,
        sets: dict[str, Any],
        condition: str,
        values: dict[str, Any],
        remove: list[str] | None = None,
    ) -> dict[str, Any]:
        typed = to_item("", sets)
        del typed["pk"]
        expression = "SET " + ", ".join(f"#{name} = :v_{name}" for name in sets)
        if remove:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in remove)
        names = set(re.findall(r"#(\w+)", f"{expression} {condition}"))
        return {
            "Key": {"pk": command_key(command_id)},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {f"#{name}": name for name in sorted(names)},
            "ExpressionAttributeValues": {
                **{f":v_{name}": value for name, value in typed.items()},
                **values,
            },
        }

    def _update(
        self,
        command_id: str,
        *,
        sets: dict[str, Any],
        condition: str,
        values: dict[str, Any],
        remove: list[str] | None = None,
    ) -> Command:
        try:
            response = self.table.update_item(
                **self._expression(command_id, sets, condition, values, remove),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StaleCommand(command_id) from None
            raise
        return Command.from_record(response["Attributes"])
