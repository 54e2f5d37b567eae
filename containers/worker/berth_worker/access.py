"""What a worker may do for its user, and for one of their commands.

The worker task's own role reaches almost nothing (its binding, the fleet's item, its task
protection, metrics, and one API route). Bound to a user, it asks that route —
``POST /workers/credentials``, signed with the task's own credentials, so it asks as itself
— for credentials of the *tenant role* tagged with its user (``workers.vending`` checks the
binding): its user's queue. For each command it asks again with the command's id: the same
role tagged also with the command's project and id — that project's files and log, that
command's record, its user's count and that project's terminals. Root inside the task cannot
reach another user's anything: the tags come from the binding and the record, not from it.
Credentials refresh themselves before they expire (an hour; commands may run longer).

Without a credentials URL (unit tests) the worker's own session is used for everything.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import RefreshableCredentials
from botocore.session import get_session

from shared.live import ConnectionStore, Publisher
from workers.repository import WorkersRepository

Publish = Callable[[str, dict[str, Any]], Any]
VEND_TIMEOUT_SECONDS = 10
VEND_ATTEMPTS = 4
RETRIED_STATUSES = {429, 500, 502, 503, 504}
"""Throttled (the API stage's limit) or failing for a moment: asked again, with backoff."""


class NotThisUser(RuntimeError):
    """The credentials route answered for another user than the worker believes it serves."""


def backoff(attempt: int, *, first: float, cap: float) -> float:
    """The worker's one pause before trying again: ``first`` doubling with each attempt, up
    to ``cap``, jittered to between half and all of it."""
    return float(min(cap, first * 2**attempt)) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter


@dataclass(frozen=True)
class CommandAccess:
    repository: WorkersRepository
    lease_repository: WorkersRepository
    """A second handle for the heartbeat thread (boto3 resources are not thread-safe)."""
    s3: Any
    publish: Publish | None = None
    """Frames to the command's terminals with the command's own credentials (None: the
    worker's default publisher)."""


@dataclass(frozen=True)
class Live:
    """Where frames go: the connections table and the WebSocket management endpoint."""

    connections_table: str
    endpoint: str


class AccessBroker:
    def __init__(
        self,
        session: boto3.session.Session,
        table: str,
        credentials_url: str | None = None,
        live: Live | None = None,
    ) -> None:
        self.session = session
        self.table = table
        self.credentials_url = credentials_url
        self.live = live
        self.sleep: Callable[[float], None] = time.sleep

    def queue_client(self, user: str) -> Any:
        """An SQS client that reaches ``user``'s queue (and, with vending, nothing else)."""
        if self.credentials_url is None:
            return self.session.client("sqs")
        return self._vended(user, None).client("sqs")

    def for_command(self, project: str, command_id: str, user: str) -> CommandAccess:
        session = self._vended(user, command_id) if self.credentials_url else self.session
        dynamodb = session.resource("dynamodb")
        publish = None
        if self.live is not None and self.credentials_url:
            publish = Publisher(
                ConnectionStore(
                    session.resource("dynamodb").Table(self.live.connections_table), time.time
                ),
                session.client("apigatewaymanagementapi", endpoint_url=self.live.endpoint),
                forget_gone=False,  # the $disconnect route forgets them; this may only read
            ).publish
        return CommandAccess(
            repository=WorkersRepository(dynamodb.Table(self.table)),
            lease_repository=WorkersRepository(session.resource("dynamodb").Table(self.table)),
            s3=session.client("s3"),
            publish=publish,
        )

    def _vended(self, user: str, command_id: str | None) -> boto3.session.Session:
        def fetch() -> dict[str, str]:
            answer = self.vend(command_id)
            if answer["user"] != user:
                raise NotThisUser("the credentials route named another user")
            credentials = answer["credentials"]
            return {
                "access_key": credentials["access_key_id"],
                "secret_key": credentials["secret_access_key"],
                "token": credentials["session_token"],
                "expiry_time": credentials["expiration"],
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method="berth-vended"
        )
        botocore_session = get_session()
        botocore_session._credentials = credentials  # the documented-by-use way to attach them
        return boto3.session.Session(
            botocore_session=botocore_session, region_name=self.session.region_name
        )

    def vend(self, command_id: str | None) -> dict[str, Any]:
        """One signed call to the credentials route, as this task."""
        if self.credentials_url is None:
            raise RuntimeError("no credentials route configured")
        body = json.dumps({"command_id": command_id} if command_id else {}).encode()
        request = AWSRequest(
            method="POST",
            url=self.credentials_url,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        own = self.session.get_credentials()
        if own is None:
            raise RuntimeError("the worker task has no credentials of its own")
        SigV4Auth(own.get_frozen_credentials(), "execute-api", self.session.region_name).add_auth(
            request
        )
        prepared = request.prepare()
        for attempt in range(1, VEND_ATTEMPTS + 1):
            sent = urllib.request.Request(  # noqa: S310 - berth's own API URL, from settings
                prepared.url, data=body, headers=dict(prepared.headers.items()), method="POST"
            )
            try:
                with urllib.request.urlopen(sent, timeout=VEND_TIMEOUT_SECONDS) as response:  # noqa: S310
                    return dict(json.load(response))
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRIED_STATUSES or attempt == VEND_ATTEMPTS:
                    raise
            except urllib.error.URLError:
                if attempt == VEND_ATTEMPTS:
                    raise
            self.sleep(backoff(attempt, first=0.25, cap=4.0))
        raise AssertionError("unreachable")
