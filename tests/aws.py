"""Emulated AWS for unit tests: moto, with resources shaped by the synthesized template."""

from __future__ import annotations

from typing import Any

from tests.synth import Synth


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def table_resource(synth: Synth, logical_prefix: str) -> dict[str, Any]:
    (table,) = [
        r
        for key, r in synth.resources("AWS::DynamoDB::Table").items()
        if key.startswith(logical_prefix)
    ]
    return table


def create_table_like(dynamodb: Any, synth: Synth, logical_prefix: str, name: str) -> Any:
    """A moto table with the template's keys and indexes, so tests cannot drift from infra."""
    props = table_resource(synth, logical_prefix)["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return dynamodb.create_table(**kwargs)


def usage_ledger(aws: Any, synth: Synth) -> Any:
    """berth's usage table (``usage``) in moto, and the ledger on it."""
    from shared.usage import Ledger

    create_table_like(aws.client("dynamodb"), synth, "UsageTable", "usage")
    return Ledger(aws.resource("dynamodb").Table("usage"))


def fargate_task_definition(ecs: Any, family: str, container: str, port: int) -> str:
    response = ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": container,
                "image": "echo:latest",
                "memory": 512,
                "portMappings": [{"containerPort": port}],
            }
        ],
    )
    return str(response["taskDefinition"]["taskDefinitionArn"])
