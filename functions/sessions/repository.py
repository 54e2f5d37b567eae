"""The session table. One table, three kinds of item:

- ``pk = <session id>``: the session record (also indexed on user + created_at, newest
  first since ids sort by time, and — while not ended — in the sparse ``by_activity`` index
  the reaper reads).
- ``pk = LIVE#<user>#<profile>``: the caller's one live session for a profile. Creating it is
  conditional, so concurrent identical POSTs start exactly one session.
- ``pk = COUNT#<user>``: how many live sessions the user holds, bounded by the limit.

Every write that changes whether a session is live updates all three in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sessions.models import Session
from shared.pagination import query_page
from shared.records import to_item
from shared.transactions import StaleRecord, commit, count, guarded_put

__all__ = ["CreateOutcome", "SessionRepository", "StaleRecord"]

BY_USER = "by_user_created"
BY_ACTIVITY = "by_activity"
ACTIVE = "1"
ENDED_RECORD_RETENTION_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class CreateOutcome:
    created: bool
    existing_id: str | None = None
    limit_reached: bool = False


def live_key(user: str, profile: str) -> str:
    return f"LIVE#{user}#{profile}"


def count_key(user: str) -> str:
    return f"COUNT#{user}"


class SessionRepository:
    def __init__(self, table: Any) -> None:
        """``table`` is a boto3 ``dynamodb.Table`` (resource API)."""
        self.table = table
        self.client = table.meta.client
        self.name = table.name

    # --- reads --------------------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        item = self.table.get_item(Key={"pk": session_id}, ConsistentRead=True).get("Item")
        return Session.from_record(item) if item else None

    def live_session_id(self, user: str, profile: str) -> str | None:
        item = self.table.get_item(Key={"pk": live_key(user, profile)}, ConsistentRead=True).get(
            "Item"
        )
        return str(item["session_id"]) if item else None

    def list_for_user(
        self, user: str, limit: int, token: str | None
    ) -> tuple[list[Session], str | None]:
        items, next_token = query_page(
            self.table, BY_USER, ("user", user), limit=limit, token=token
        )
        return [Session.from_record(item) for item in items], next_token

    def active(self) -> list[Session]:
        """Every session not yet ended (the reaper's worklist)."""
        sessions: list[Session] = []
        query: dict[str, Any] = {
            "IndexName": BY_ACTIVITY,
            "KeyConditionExpression": "active = :a",
            "ExpressionAttributeValues": {":a": ACTIVE},
        }
        while True:
            response = self.table.query(**query)
            sessions.extend(Session.from_record(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return sessions
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- writes -------------------------------------------------------------------------------

    def create(self, session: Session, max_live: int) -> CreateOutcome:
        """Stores a new live session unless the user already has one for the profile."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": self._record(session),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": {
                                "pk": live_key(session.user, session.profile),
                                "session_id": session.id,
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    count(self.name, count_key(session.user), 1, limit=max_live),
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            lock = reasons[1] if len(reasons) > 1 else {}
            if lock.get("Code") == "ConditionalCheckFailed":
                existing = (lock.get("Item") or {}).get("session_id")
                existing_id = _attr(existing)
                return CreateOutcome(created=False, existing_id=existing_id)
            limit = reasons[2] if len(reasons) > 2 else {}
            if limit.get("Code") == "ConditionalCheckFailed":
                return CreateOutcome(created=False, limit_reached=True)
            raise
        return CreateOutcome(created=True)

    def replace(self, old: Session, new: Session) -> None:
        """Writes ``new`` if the stored record is still ``old``'s status; raises ``StaleRecord``.

        Leaving the live states frees the profile slot and the count in the same transaction.
        """
        items = [guarded_put(self.name, self._record(new), old.status.value)]
        if old.status.live and not new.status.live:
            items += [
                {
                    "Delete": {
                        "TableName": self.name,
                        "Key": {"pk": live_key(old.user, old.profile)},
                        "ConditionExpression": "session_id = :id",
                        "ExpressionAttributeValues": {":id": old.id},
                    }
                },
                count(self.name, count_key(old.user), -1),
            ]
        commit(self.client, items, old.id)

    def _record(self, session: Session) -> dict[str, Any]:
        record = to_item(session.id, session.to_record())
        if session.status.ended:
            record["expires_record_at"] = int(session.updated_at) + ENDED_RECORD_RETENTION_SECONDS
        else:
            record["active"] = ACTIVE
        return record


def _attr(value: Any) -> str | None:
    """Cancellation reasons carry low-level attribute values ({"S": ...}) even on the resource."""
    if isinstance(value, dict):
        return str(value.get("S")) if value.get("S") is not None else None
    return str(value) if value is not None else None
