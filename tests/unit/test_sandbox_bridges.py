"""The sandbox's bridges over moto still take effect on this moto (a moto upgrade that changes
its internals must fail here, not make the sandbox quietly unfaithful)."""

from __future__ import annotations

import boto3

from infra.sandbox.sqs import number_fifo_messages_in_order


def fifo_queue(aws: boto3.session.Session) -> str:
    number_fifo_messages_in_order()
    return str(
        aws.client("sqs").create_queue(
            QueueName="q.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"}
        )["QueueUrl"]
    )


def test_sequence_numbers_increase_in_queue_order(aws: boto3.session.Session) -> None:
    queue, sqs = fifo_queue(aws), aws.client("sqs")
    numbers = [
        int(
            sqs.send_message(
                QueueUrl=queue,
                MessageBody=str(n),
                MessageGroupId="g",
                MessageDeduplicationId=str(n),
            )["SequenceNumber"]
        )
        for n in range(30)
    ]
    assert numbers == sorted(numbers) and len(set(numbers)) == 30
    (first,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert first["Body"] == "0"


def test_the_step_functions_bridges_still_fit_moto() -> None:
    """Each bridge checks the moto internal it replaces before replacing it."""
    from infra.sandbox.stepfunctions import fix_ecs_integration, route_lambda_invocations

    fix_ecs_integration()  # raises MotoChanged if moto's ECS integration moved
    route_lambda_invocations({})  # ... or if moto's simple Lambda invoke changed shape
