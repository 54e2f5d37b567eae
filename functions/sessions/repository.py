"""The session table. One table, three kinds of item:

- ``pk = <session id>``: the session record (also indexed on user + created_at, newest
  first since ids sort by time, and — while not ended — in the sparse ``by_activity`` index
  the reaper reads).
- ``pk = LIVE#<user>#<profile>``: the caller's one live session for a profile. Creating it is
  conditional, so concurrent identical POSTs start exactly one session.
- ``pk = COUNT#<user>``: how many live sessions the user holds, bounded by the limit.
- ``pk = ROUTES``: how many live sessions hold a route slot (routing on), bounded by
  ``routing.max_routes`` (the load balancer's rule quota).
- ``pk = STORAGE#<user>#<profile>``: the user's volume of a profile that keeps storage
  (``sessions.storage``): its access point, revision and generation.
- ``pk = WARM#<task arn>``: a warm-pool task (``sessions.warm``); while unclaimed it is in
  the sparse ``warm_pool`` index (partition ``pooled`` = its profile).

Every write that changes whether a session is live updates all three in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sessions.models import Session, Status, Volume
from sessions.warm import WarmTask
from shared.pagination import query_all, query_page
from shared.records import number, to_item
from shared.transactions import StaleRecord, commit, count, guarded_put

__all__ = ["CreateOutcome", "SessionRepository", "StaleRecord"]

BY_USER = "by_user_created"
BY_ACTIVITY = "by_activity"
WARM_POOL = "warm_pool"
ACTIVE = "1"
ENDED_RECORD_RETENTION_SECONDS = 30 * 24 * 3600


ROUTES_KEY = "ROUTES"


@dataclass(frozen=True)
class CreateOutcome:
    created: bool
    existing_id: str | None = None
    limit_reached: bool = False
    routes_full: bool = False


def live_key(user: str, profile: str) -> str:
    return f"LIVE#{user}#{profile}"


def count_key(user: str) -> str:
    return f"COUNT#{user}"


def storage_key(user: str, profile: str) -> str:
    return f"STORAGE#{user}#{profile}"


def warm_key(task_arn: str) -> str:
    return f"WARM#{task_arn}"


class Claimed(Exception):
    """The warm task was claimed (or retired) by someone else first."""


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
        items = query_all(self.table, BY_ACTIVITY, "active", ACTIVE)
        return [Session.from_record(item) for item in items]

    # --- writes -------------------------------------------------------------------------------

    def create(self, session: Session, max_live: int, max_routes: int = 0) -> CreateOutcome:
        """Stores a new live session unless the user already has one for the profile (with
        ``max_routes``, a session holds a route slot while live: bounded by it)."""
        routed = [count(self.name, ROUTES_KEY, 1, limit=max_routes)] if max_routes else []
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
                    *routed,
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
            routes = reasons[3] if len(reasons) > 3 else {}
            if routes.get("Code") == "ConditionalCheckFailed":
                return CreateOutcome(created=False, routes_full=True)
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
            if old.token is not None:  # it held a route slot (sessions made with routing on)
                items.append(count(self.name, ROUTES_KEY, -1))
        commit(self.client, items, old.id)

    def mark_used(self, session: Session, at: float) -> bool:
        """Records a use besides heartbeats (``Session.last_active_at``) on a session still
        live; an update of that one attribute, so a heartbeat or a move written meanwhile is
        kept. False: it ended, or a later use is recorded already."""
        try:
            self.table.update_item(
                Key={"pk": session.id},
                UpdateExpression="SET last_active_at = :at",
                ConditionExpression="active = :active AND "
                "(attribute_not_exists(last_active_at) OR last_active_at < :at)",
                ExpressionAttributeValues={":at": number(at), ":active": ACTIVE},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # --- users' volumes -----------------------------------------------------------------------

    def volume(self, user: str, profile: str) -> Volume | None:
        item = self.table.get_item(Key={"pk": storage_key(user, profile)}, ConsistentRead=True)
        return _volume(item["Item"]) if "Item" in item else None

    def add_volume(self, volume: Volume) -> Volume:
        """Records a new volume; if another start recorded one first, that one (``volume``
        itself when this call made it)."""
        try:
            self.table.put_item(
                Item=_volume_item(volume), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            made = self.volume(volume.user, volume.profile)
            if made is None:
                raise
            return made
        return volume

    def save_volume(self, volume: Volume) -> None:
        self.table.put_item(Item=_volume_item(volume))

    def delete_volume(self, volume: Volume) -> None:
        self.table.delete_item(Key={"pk": storage_key(volume.user, volume.profile)})

    # --- the warm pool ------------------------------------------------------------------------

    def warm_pool(self, profile: str) -> list[WarmTask]:
        """A profile's unclaimed warm tasks, starting or ready (the index is eventually
        consistent: a claim re-checks)."""
        items = query_all(self.table, WARM_POOL, "pooled", profile)
        return [WarmTask.from_record(item) for item in items]

    def warm_task(self, task_arn: str) -> WarmTask | None:
        item = self.table.get_item(Key={"pk": warm_key(task_arn)}, ConsistentRead=True).get("Item")
        return WarmTask.from_record(item) if item else None

    def add_warm(self, task: WarmTask) -> None:
        item = to_item(warm_key(task.task_arn), task.to_record())
        item["pooled"] = task.profile
        # Gone by itself if its stop is never heard of (the reaper reads the tasks themselves).
        item["expires_record_at"] = int(task.warm_since) + ENDED_RECORD_RETENTION_SECONDS
        self.table.put_item(Item=item)

    def warm_ready(self, task_arn: str, private_ip: str) -> None:
        """Records a warm task's address (it runs); a claimed or gone one is left alone."""
        try:
            self.table.update_item(
                Key={"pk": warm_key(task_arn)},
                UpdateExpression="SET private_ip = :ip",
                ConditionExpression="attribute_exists(pooled)",
                ExpressionAttributeValues={":ip": private_ip},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def claim_warm(self, task: WarmTask, pending: Session, running: Session) -> None:
        """Takes a ready warm task for ``pending`` (which becomes ``running``) in one
        transaction; raises ``Claimed`` when another caller (or the recycler) took it first."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.name,
                            "Key": {"pk": warm_key(task.task_arn)},
                            "UpdateExpression": "SET claimed_by = :s REMOVE pooled",
                            "ConditionExpression": (
                                "attribute_exists(pooled) AND attribute_exists(private_ip)"
                            ),
                            "ExpressionAttributeValues": {":s": pending.id},
                        }
                    },
                    guarded_put(self.name, self._record(running), Status.PENDING.value),
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise Claimed(task.task_arn) from None
            raise StaleRecord(pending.id) from None

    def retire_warm(self, task: WarmTask) -> bool:
        """Takes an unclaimed task out of the pool (to stop it); False if it was claimed."""
        try:
            self.table.update_item(
                Key={"pk": warm_key(task.task_arn)},
                UpdateExpression="REMOVE pooled",
                ConditionExpression="attribute_exists(pooled)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def forget_warm(self, task_arn: str) -> None:
        """Deletes a warm task's item once the task has stopped."""
        self.table.delete_item(Key={"pk": warm_key(task_arn)})

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


def _volume_item(volume: Volume) -> dict[str, Any]:
    return {
        "pk": storage_key(volume.user, volume.profile),
        "owner": volume.user,
        "profile": volume.profile,
        "generation": volume.generation,
        "access_point_id": volume.access_point_id,
        "task_definition": volume.task_definition,
        "base": volume.base,
        "created_at": number(volume.created_at),
        "last_used_at": number(volume.last_used_at),
    }


def _volume(item: dict[str, Any]) -> Volume:
    return Volume(
        user=str(item["owner"]),
        profile=str(item["profile"]),
        generation=str(item["generation"]),
        access_point_id=str(item["access_point_id"]),
        task_definition=str(item["task_definition"]),
        base=str(item["base"]),
        created_at=float(item["created_at"]),
        last_used_at=float(item["last_used_at"]),
    )
