"""WebSocket connections: IAM identity on $connect, per-user topics, forgetting gone clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from live.handler import route
from shared.live import ConnectionStore, Publisher, user_topic
from tests.aws import FakeClock, create_table_like
from tests.synth import Synth

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"


@pytest.fixture
def store(synth: Synth) -> Iterator[ConnectionStore]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        create_table_like(dynamodb.meta.client, synth, "LiveConnections", "connections")
        yield ConnectionStore(dynamodb.Table("connections"), FakeClock())


def ws_event(
    route_key: str, connection_id: str, user: str | None = None, body: Any = None
) -> dict[str, Any]:
    identity = {"userArn": user} if user else {}
    return {
        "requestContext": {
            "routeKey": route_key,
            "connectionId": connection_id,
            "identity": identity,
        },
        "body": json.dumps(body) if body is not None else None,
    }


class FakeManagement:
    """API Gateway's management API: records posts; some connections are gone."""

    def __init__(self, gone: set[str]) -> None:
        self.gone = gone
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:
        if ConnectionId in self.gone:
            raise ClientError({"Error": {"Code": "GoneException", "Message": "gone"}}, "Post")
        self.posts.append((ConnectionId, json.loads(Data)))


def test_connect_needs_an_iam_identity(store: ConnectionStore) -> None:
    assert route(ws_event("$connect", "c1"), store)["statusCode"] == 401
    assert route(ws_event("$connect", "c1", ALICE), store)["statusCode"] == 200
    assert store.user_of("c1") == ALICE
    assert store.subscribers(user_topic(ALICE)) == ["c1"]


def test_publish_reaches_the_users_connections_and_forgets_gone_ones(
    store: ConnectionStore,
) -> None:
    route(ws_event("$connect", "c1", ALICE), store)
    route(ws_event("$connect", "c2", ALICE), store)
    route(ws_event("$connect", "c3", "arn:aws:sts::123456789012:assumed-role/x/bob"), store)
    management = FakeManagement(gone={"c2"})
    delivered = Publisher(store, management).publish(user_topic(ALICE), {"type": "session"})
    assert delivered == 1
    assert management.posts == [("c1", {"type": "session"})]
    assert store.subscribers(user_topic(ALICE)) == ["c1"]
    assert store.user_of("c2") is None


def test_disconnect_removes_every_subscription(store: ConnectionStore) -> None:
    route(ws_event("$connect", "c1", ALICE), store)
    route(ws_event("$disconnect", "c1"), store)
    assert store.subscribers(user_topic(ALICE)) == []
    assert store.user_of("c1") is None


def test_default_route_answers_unknown_actions_and_bad_json(store: ConnectionStore) -> None:
    assert route(ws_event("$default", "c9", body={"action": "x"}), store)["statusCode"] == 401
    route(ws_event("$connect", "c1", ALICE), store)
    unknown = route(ws_event("$default", "c1", body={"action": "dance"}), store)
    assert unknown["statusCode"] == 400
    assert json.loads(unknown["body"])["error"]["code"] == "unknown_action"
    broken = route({**ws_event("$default", "c1"), "body": "{not json"}, store)
    assert broken["statusCode"] == 400


def test_subscribe_needs_a_grant_of_the_topics_scope(store: ConnectionStore) -> None:
    bob = "arn:aws:sts::123456789012:assumed-role/x/bob"
    route(ws_event("$connect", "c1", ALICE), store)
    route(ws_event("$connect", "c2", bob), store)
    store.grant("terminal:demo", ALICE)  # what the workers do for a project's owner

    def subscribe(connection: str, topic: object) -> tuple[int, dict[str, Any]]:
        answer = route(
            ws_event("$default", connection, body={"action": "subscribe", "topic": topic}), store
        )
        return answer["statusCode"], json.loads(answer["body"])

    assert subscribe("c1", "terminal:demo:t1") == (200, {"subscribed": "terminal:demo:t1"})
    assert store.subscribers("terminal:demo:t1") == ["c1"]
    assert subscribe("c2", "terminal:demo:t1")[0] == 404  # not bob's
    assert subscribe("c1", "terminal:other:t1")[0] == 404  # granted to nobody
    for bad in ("terminal", "Terminal:demo:t1", "terminal:demo:../x", "user:" + bob, 7, None):
        assert subscribe("c1", bad)[0] == 400, bad
    assert store.subscribers("terminal:demo:t1") == ["c1"]
