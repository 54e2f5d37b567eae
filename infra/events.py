"""The one way berth hands AWS events to a function: an EventBridge rule whose target retries
for two hours and keeps what it could not deliver in an encrypted dead-letter queue."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.nag import acknowledge


def deliver_events(
    scope: Construct,
    rule_id: str,
    *,
    dead_letter_id: str,
    description: str,
    source: str,
    detail_type: str,
    detail: dict[str, Any],
    function: lambda_.IFunction,
) -> events.Rule:
    dead_letters = sqs.Queue(
        scope,
        dead_letter_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    acknowledge(
        dead_letters,
        "AwsSolutions-SQS3",
        f"This queue is itself the dead-letter queue of the rule {rule_id}.",
    )
    return events.Rule(
        scope,
        rule_id,
        description=description,
        event_pattern=events.EventPattern(
            source=[source], detail_type=[detail_type], detail=detail
        ),
        targets=[
            targets.LambdaFunction(
                function,
                retry_attempts=4,
                max_event_age=Duration.hours(2),
                dead_letter_queue=dead_letters,
            )
        ],
    )
