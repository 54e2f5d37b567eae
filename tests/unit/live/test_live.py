"""WebSocket connections: tickets on $connect (single use, short-lived, one topic for a browser),
per-user topics, listen-only connections, forgetting gone clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from live.authorizer import decide
from live.handler import route
from shared.live import (
    Connection,
    ConnectionStore,
    Publisher,
    Ticket,
    Tickets,
    ticket_url,
    user_topic,
)
from tests.aws import FakeClock, create_table_like
from tests.synth import Synth

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(synth: Synth) -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        create_table_like(dynamodb.meta.client, synth, "LiveConnections", "connections")
        yield dynamodb.Table("connections")


@pytest.fixture
def store(table: Any, clock: FakeClock) -> ConnectionStore:
    return ConnectionStore(table, clock)


@pytest.fixture
def tickets(table: Any, clock: FakeClock) -> Tickets:
    return Tickets(table, clock)


def ws_event(
    route_key: str,
    connection_id: str,
    user: str | None = None,
    body: Any = None,
    topic: str = "",
) -> dict[str, Any]:
    """An event of a connection the authorizer let in with ``user``'s ticket (``topic``: a
    one-topic ticket)."""
    granted = {"principalId": user, "user": user, "topic": topic} if user else {}
    return {
        "requestContext": {
            "routeKey": route_key,
            "connectionId": connection_id,
            "identity": {"sourceIp": "203.0.113.9"},
            "authorizer": granted,
        },
        "body": json.dumps(body) if body is not None else None,
    }


ROUTE_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/$connect"


def authorize(tickets: Tickets, query: dict[str, str] | None) -> dict[str, Any]:
    event = {"type": "REQUEST", "methodArn": ROUTE_ARN, "queryStringParameters": query}
    return decide(event, tickets.redeem)


def effect(decision: dict[str, Any]) -> str:
    (statement,) = decision["policyDocument"]["Statement"]
    return str(statement["Effect"])


class FakeManagement:
    """API Gateway's management API: records posts; some connections are gone."""

    def __init__(self, gone: set[str]) -> None:
        self.gone = gone
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:
        if ConnectionId in self.gone:
            raise ClientError({"Error": {"Code": "GoneException", "Message": "gone"}}, "Post")
        self.posts.append((ConnectionId, json.loads(Data)))


def test_connect_needs_what_the_authorizer_let_in(store: ConnectionStore) -> None:
    assert route(ws_event("$connect", "c1"), store)["statusCode"] == 401
    assert route(ws_event("$connect", "c1", ALICE), store)["statusCode"] == 200
    assert store.connection("c1") == Connection(ALICE)
    assert store.subscribers(user_topic(ALICE)) == ["c1"]


def test_a_ticket_opens_one_connection_once(tickets: Tickets) -> None:
    secret, _ = tickets.mint(Ticket(ALICE), 30)
    first = authorize(tickets, {"ticket": secret})
    assert effect(first) == "Allow"
    assert first["principalId"] == ALICE
    assert first["context"] == {"user": ALICE, "topic": ""}
    assert effect(authorize(tickets, {"ticket": secret})) == "Deny"  # used


def test_an_expired_unknown_or_missing_ticket_is_denied(tickets: Tickets, clock: FakeClock) -> None:
    secret, expires = tickets.mint(Ticket(ALICE), 30)
    assert expires == int(clock()) + 30
    clock.advance(30)
    assert effect(authorize(tickets, {"ticket": secret})) == "Deny"
    fresh, _ = tickets.mint(Ticket(ALICE), 30)
    forged = fresh[:-1] + ("A" if fresh[-1] != "A" else "B")
    for query in ({"ticket": forged}, {"ticket": ""}, {}, None, {"ticket": "x" * 5000}):
        assert effect(authorize(tickets, query)) == "Deny", query
    assert effect(authorize(tickets, {"ticket": fresh})) == "Allow"  # the real one still works


def test_the_table_keeps_no_ticket(tickets: Tickets, table: Any) -> None:
    secret, _ = tickets.mint(Ticket(ALICE, "terminal:demo:t1"), 30)
    stored = json.dumps(table.scan()["Items"], default=str)
    assert secret not in stored
    assert "terminal:demo:t1" in stored


def test_a_topic_ticket_hears_that_topic_only_and_may_send_nothing(
    store: ConnectionStore, tickets: Tickets
) -> None:
    store.grant("terminal:demo", ALICE)
    secret, _ = tickets.mint(Ticket(ALICE, "terminal:demo:t1"), 60)
    granted = authorize(tickets, {"ticket": secret})["context"]
    assert granted == {"user": ALICE, "topic": "terminal:demo:t1"}
    opened = ws_event("$connect", "b1", ALICE, topic="terminal:demo:t1")
    assert route(opened, store)["statusCode"] == 200
    assert store.subscribers("terminal:demo:t1") == ["b1"]
    assert store.subscribers(user_topic(ALICE)) == []  # not the owner's sessions
    for message in (
        {"action": "subscribe", "topic": "terminal:demo:t2"},
        {"action": "subscribe", "topic": "terminal:demo:t1"},
        {"action": "sendCommand", "command": "rm -rf /"},
        {"action": "dance"},
    ):
        answer = route(ws_event("$default", "b1", ALICE, message, "terminal:demo:t1"), store)
        assert answer["statusCode"] == 403, message
        assert json.loads(answer["body"])["error"]["code"] == "listen_only"
    assert store.subscribers("terminal:demo:t2") == []


def test_ticket_url_names_the_socket_and_the_ticket(tickets: Tickets, clock: FakeClock) -> None:
    out = ticket_url(tickets, Ticket(ALICE, "terminal:demo:t1"), "wss://x.example/prod", 60)
    assert out.url.startswith("wss://x.example/prod?ticket=")
    assert out.topic == "terminal:demo:t1"
    assert out.expires_at.timestamp() == int(clock()) + 60
    secret = out.url.split("ticket=")[1]
    assert tickets.redeem(secret) == Ticket(ALICE, "terminal:demo:t1")
    assert tickets.redeem(secret) is None


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
    assert store.connection("c2") is None


def test_disconnect_removes_every_subscription(store: ConnectionStore) -> None:
    route(ws_event("$connect", "c1", ALICE), store)
    route(ws_event("$disconnect", "c1"), store)
    assert store.subscribers(user_topic(ALICE)) == []
    assert store.connection("c1") is None


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
