"""The contract between the sandbox and moto's internals: every internal a bridge relies on is
still there, in the shape it was written against — and a missing or reshaped one is named."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.sandbox import moto_bridges
from infra.sandbox.moto_bridges import CONTRACT, MotoChanged, check, keep_fifo_promises
from infra.settings import ROOT


def test_every_internal_the_bridges_rely_on_is_still_there() -> None:
    check()  # raises MotoChanged, naming each internal that moved


def test_a_moved_or_reshaped_internal_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    changed: list[tuple[str, str, Any]] = [
        ("moto.sqs.models", "SQSBackend.send_message_gone", callable),
        ("moto.sts.models", "STSBackend.assume_role", lambda f: False),
        ("moto.no_such_module", "X", callable),
    ]
    monkeypatch.setattr(moto_bridges, "CONTRACT", [*CONTRACT, *changed])
    with pytest.raises(MotoChanged) as raised:
        check()
    said = str(raised.value)
    assert "moto.sqs.models.SQSBackend.send_message_gone is gone" in said
    assert "moto.sts.models.STSBackend.assume_role changed shape" in said
    assert "moto.no_such_module.X is gone" in said


def test_only_the_bridges_module_patches_moto() -> None:
    """No other sandbox module assigns to a moto class (one seam to check on an upgrade)."""
    for path in sorted((ROOT / "infra" / "sandbox").glob("*.py")):
        if path.name == "moto_bridges.py":
            continue
        tree = ast.parse(Path(path).read_text())
        moto_names = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("moto")
            for alias in node.names
        }
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    assert target.value.id not in moto_names, f"{path.name} patches moto"


def test_a_deduplication_id_is_remembered_after_its_message_is_gone() -> None:
    """SQS accepts a FIFO message whose deduplication id it saw within five minutes, but
    never delivers it, even when the first message was deleted; moto forgets once deleted."""
    keep_fifo_promises()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(
            QueueName="q.fifo",
            Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup"},
        )["QueueUrl"]

        def send(body: str, dedup: str, group: str = "g") -> str:
            sent = sqs.send_message(
                QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup
            )
            return str(sent["MessageId"])

        first = send("first", "d-1")
        (got,) = sqs.receive_message(QueueUrl=url)["Messages"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"])
        assert send("again", "d-1") == first  # accepted, answered as the first time
        send("other group", "d-1", group="h")  # the scope is the message group
        send("new", "d-2")
        bodies = []
        while answer := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for message in answer:
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        assert sorted(bodies) == ["new", "other group"]
