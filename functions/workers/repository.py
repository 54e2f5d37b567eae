"""The workers table: ``PROJECT#<name>`` (its owner) and ``CMD#<id>`` (a command)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.records import to_item
from workers.models import Command, CommandStatus


class StaleCommand(Exception):
    """The command is no longer in the status the caller expected."""


def project_key(project: str) -> str:
    return f"PROJECT#{project}"


def command_key(command_id: str) -> str:
    return f"CMD#{command_id}"


class WorkersRepository:
    def __init__(self, table: Any) -> None:
        self.table = table

    def claim_project(self, project: str, user: str, now: float) -> bool:
        """Records ``user`` as the project's owner on first use; True if ``user`` owns it."""
        try:
            self.table.put_item(
                Item={"pk": project_key(project), "owner": user, "created_at": int(now)},
                ConditionExpression="attribute_not_exists(pk) OR #o = :user",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":user": user},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def owner_of(self, project: str) -> str | None:
        item = self.table.get_item(Key={"pk": project_key(project)}, ConsistentRead=True).get(
            "Item"
        )
        return str(item["owner"]) if item else None

    def put(self, command: Command) -> None:
        self.table.put_item(Item=to_item(command_key(command.id), command.to_record()))

    def get(self, command_id: str) -> Command | None:
        item = self.table.get_item(Key={"pk": command_key(command_id)}, ConsistentRead=True).get(
            "Item"
        )
        return Command.from_record(item) if item else None

    def move(self, command: Command, expected: set[CommandStatus]) -> None:
        """Stores ``command`` if the stored one is in one of the ``expected`` statuses."""
        names = {f":s{i}": s.value for i, s in enumerate(sorted(expected))}
        try:
            self.table.put_item(
                Item=to_item(command_key(command.id), command.to_record()),
                ConditionExpression=f"#s IN ({', '.join(names)})",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=names,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StaleCommand(command.id) from None
            raise
