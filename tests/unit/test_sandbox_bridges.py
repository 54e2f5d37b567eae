"""The sandbox's bridges over moto still take effect on this moto (a moto upgrade that changes
its internals must fail here, not make the sandbox quietly unfaithful)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.moto_api import state_manager

from infra.sandbox.containers import LocalTaskRunner
from infra.sandbox.moto_bridges import keep_fifo_promises


def fifo_queue(aws: boto3.session.Session) -> str:
    keep_fifo_promises()
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


def test_no_message_of_a_group_is_handed_out_while_another_is_in_flight(
    aws: boto3.session.Session,
) -> None:
    """Two workers long-poll an empty queue; two messages of one project arrive one after the
    other. Only one may be handed out until it is deleted (moto alone gives out both)."""
    queue, sqs = fifo_queue(aws), aws.client("sqs")
    received: list[Any] = []

    def poll() -> None:
        received.extend(
            sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2, VisibilityTimeout=30).get(
                "Messages", []
            )
        )

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    time.sleep(0.3)
    for n in range(2):
        sqs.send_message(
            QueueUrl=queue, MessageBody=str(n), MessageGroupId="g", MessageDeduplicationId=str(n)
        )
        time.sleep(0.3)
    for poller in pollers:
        poller.join()
    assert [m["Body"] for m in received] == ["0"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=received[0]["ReceiptHandle"])
    (nxt,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert nxt["Body"] == "1"


def test_the_step_functions_bridges_still_fit_moto() -> None:
    """Each bridge checks the moto internal it replaces before replacing it."""
    from infra.sandbox.moto_bridges import fix_ecs_integration, route_lambda_invocations

    fix_ecs_integration()  # raises MotoChanged if moto's ECS integration moved
    route_lambda_invocations({})  # ... or if moto's simple Lambda invoke changed shape


def test_tasks_take_the_start_time_to_run_and_stop_at_once(
    aws: boto3.session.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the emulator's own clock, moved by hand: the statuses hold whatever else the
    machine (or another sandbox in this process) is doing."""
    from infra.sandbox import moto_bridges
    from infra.sandbox.moto_bridges import start_tasks_after

    now = [1000.0]
    monkeypatch.setattr(moto_bridges, "_clock", lambda: now[0])

    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="c")
    ecs.register_task_definition(
        family="f", containerDefinitions=[{"name": "app", "image": "i", "memory": 128}]
    )

    def status(arn: str) -> str:
        return str(ecs.describe_tasks(cluster="c", tasks=[arn])["tasks"][0]["lastStatus"])

    def run() -> str:
        task = ecs.run_task(cluster="c", taskDefinition="f", launchType="FARGATE")["tasks"][0]
        return str(task["taskArn"])

    state_manager.set_transition(  # as the sandbox does: RUNNING until stopped
        model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
    )
    try:
        start_tasks_after(4)  # PROVISIONING for 2 s, then PENDING for 2 s
        booting, stopped = run(), run()
        assert status(booting) == "PROVISIONING"
        ecs.stop_task(cluster="c", task=stopped)
        assert status(stopped) == "STOPPED"  # a stop is never undone by the start time
        now[0] += 1.9
        assert status(booting) == "PROVISIONING"
        now[0] += 0.2
        assert status(booting) == "PENDING"
        now[0] += 1.8
        assert status(booting) == "PENDING"  # not before its start time
        now[0] += 0.2
        assert status(booting) == "RUNNING"
        assert status(stopped) == "STOPPED"
        start_tasks_after(0)
        assert status(run()) == "RUNNING"  # moto's instant start again
    finally:
        start_tasks_after(0)
        state_manager.unset_transition("ecs::task")


def test_a_closed_sandbox_runs_no_task_and_calls_its_emulator_no_more(tmp_path: Path) -> None:
    """A task thread that outlives the sandbox's stop (its emulator gone) must not call it:
    it printed a connection-refused traceback on every stop."""

    class Stopped:
        def client(self, name: str) -> Any:
            raise AssertionError(f"the {name} emulator was called after the sandbox stopped")

    runner = LocalTaskRunner(Stopped(), {}, tmp_path)  # type: ignore[arg-type]
    runner.close()
    runner._run({"taskArn": "arn:aws:ecs:task/t", "taskDefinitionArn": "worker"})
    assert not (tmp_path / "tasks").exists()
