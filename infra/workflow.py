"""The one way berth makes a state machine: Standard, X-Ray traced, every event logged
(without payloads), bounded by a timeout."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cfn import depend_only_on_policy
from infra.nag import acknowledge


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
