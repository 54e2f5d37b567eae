"""The one way berth makes a state machine: Standard, X-Ray traced, every event logged
(without payloads), bounded by a timeout — and the retry policies its Lambda steps share."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cfn import depend_only_on_policy
from infra.nag import acknowledge

AWS_UNAVAILABLE = "AwsUnavailable"
"""What a Lambda step raises when AWS refused after botocore's retries (the class name of
``shared.errors.AwsUnavailable`` and ``berth_jobs.runner.AwsUnavailable``)."""
PASSING_TROUBLE = ["Lambda.TooManyRequestsException", AWS_UNAVAILABLE]
"""Errors a step is retried on: the invoke was throttled, or AWS failed under the step."""
LOST_ANSWER = "Sandbox.Timedout"
"""A Lambda that ran out of time — its side effects may have happened, its answer is lost."""


def retry_passing_trouble(task: sfn.TaskStateBase, *, rerunnable: bool = False) -> None:
    """Six attempts, 2 s doubling, full jitter (about a minute at most) — on top of
    ``retry_on_service_exceptions`` (Lambda's own 5xx). A ``rerunnable`` step (one that
    only looks, or acts idempotently) is also run again when its answer was lost."""
    task.add_retry(
        errors=PASSING_TROUBLE + ([LOST_ANSWER] if rerunnable else []),
        interval=Duration.seconds(2),
        backoff_rate=2,
        max_attempts=6,
        jitter_strategy=sfn.JitterType.FULL,
    )


def retry_anything(task: sfn.TaskStateBase) -> None:
    """For the step that records a failure: the one trace a failed run leaves must not be
    lost to a throttled invoke or a failed write (writing it again is harmless)."""
    task.add_retry(
        errors=["States.ALL"],
        interval=Duration.seconds(2),
        backoff_rate=2,
        max_attempts=6,
        jitter_strategy=sfn.JitterType.FULL,
    )


def standard_state_machine(
    scope: Construct,
    construct_id: str,
    *,
    start: sfn.IChainable,
    comment: str,
    timeout: Duration,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
) -> sfn.StateMachine:
    machine = sfn.StateMachine(
        scope,
        construct_id,
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(start),
        state_machine_type=sfn.StateMachineType.STANDARD,
        timeout=timeout,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=logs.LogGroup(
                scope,
                f"{construct_id}Logs",
                retention=log_retention,
                removal_policy=removal_policy,
            ),
            level=sfn.LogLevel.ALL,
            include_execution_data=False,
        ),
    )
    depend_only_on_policy(machine, machine.role)
    acknowledge(
        machine.role,
        "AwsSolutions-IAM5[Resource::*]",
        "CloudWatch Logs delivery (logs:*LogDelivery, DescribeLogGroups, resource policies) "
        "and X-Ray tracing support no resource-level permissions.",
    )
    return machine
