"""Instances against moto: validation before launch, each provisioning step, failure cleanup."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from instances.config import InstancesConfig
from instances.models import Phase
from instances.provisioning import Provisioner
from instances.service import InstanceService
from shared.api import status_of
from shared.errors import DomainError
from tests.aws import FakeClock
from tests.unit.instances.conftest import ALICE, BOB, Agent, ec2_instances


def executions(aws: boto3.session.Session, config: InstancesConfig) -> list[str]:
    sfn = aws.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=config.state_machine_arn)["executions"]
    return [e["name"] for e in listed]


def test_create_answers_at_once_and_starts_the_workflow(
    service: InstanceService, aws: boto3.session.Session, config: InstancesConfig
) -> None:
    instance = service.create(ALICE, "0xAbC_-123")
    assert instance.instance.status == Phase.WAITING_FOR_INSTANCE
    assert instance.instance.name.startswith("berth-vm-")
    assert executions(aws, config) == [instance.id]
    assert ec2_instances(aws) == []  # the workflow launches, not the API


def test_the_instance_limit_is_a_429(service: InstanceService) -> None:
    service.create(ALICE, "a")
    service.create(ALICE, "b")
    with pytest.raises(DomainError) as raised:
        service.create(ALICE, "c")
    assert (status_of(raised.value), raised.value.code) == (429, "instance_limit")
    service.create(BOB, "a")


def test_create_starts_the_workflow_then_records_and_a_failed_start_leaves_nothing(
    service: InstanceService,
    aws: boto3.session.Session,
    config: InstancesConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Started first, recorded second: a 503 leaves no record behind, counted or not (a
    record whose workflow never started would wait for good and hold the user's slot)."""
    from botocore.exceptions import ClientError

    def throttled(**_: object) -> None:
        error = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
        raise ClientError(error, "StartExecution")

    real = service.sfn
    monkeypatch.setattr(
        service, "sfn", type("Sfn", (), {"start_execution": staticmethod(throttled)})
    )
    for _ in range(3):  # more than the limit of two: nothing was counted
        with pytest.raises(DomainError) as raised:
            service.create(ALICE, "blob_1")
        assert (status_of(raised.value), raised.value.code) == (503, "unavailable")
    assert service.list_instances(ALICE, 10, None)[0] == []
    monkeypatch.setattr(service, "sfn", real)
    assert service.create(ALICE, "blob_1").instance.status == Phase.WAITING_FOR_INSTANCE


def test_a_workflow_whose_record_never_came_launches_nothing(
    service: InstanceService,
    provisioner: Provisioner,
    aws: boto3.session.Session,
    config: InstancesConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record failed after the workflow started (the API answered 503): the launch step
    raises NotRecordedYet (the workflow retries it past the API's timeout), and the failure
    step then has nothing to record — no machine, no record, no slot taken."""
    from botocore.exceptions import ClientError

    from instances.provisioning import NotRecordedYet
    from instances.repository import InstanceRepository

    def refused(*_: object) -> None:
        error = {"Error": {"Code": "InternalServerError", "Message": "injected"},
                 "ResponseMetadata": {"HTTPStatusCode": 500}}  # fmt: skip
        raise ClientError(error, "TransactWriteItems")

    monkeypatch.setattr(InstanceRepository, "create", refused)
    with pytest.raises(ClientError):  # the API answers 503 (tests/unit/test_api_basics.py)
        service.create(ALICE, "blob_1")
    (started,) = executions(aws, config)
    with pytest.raises(NotRecordedYet):
        provisioner.run("launch", started)
    assert provisioner.run("fail", started, "NotRecordedYet: gave up") == "stopped"
    assert ec2_instances(aws) == []
    assert service.repo.live_count(ALICE) == 0


def test_a_step_names_aws_trouble_as_the_error_the_workflow_retries(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    from botocore.exceptions import ClientError

    import instances.wiring
    from instances import step
    from shared.errors import AwsUnavailable

    class Flaky:
        def run(self, *_: object) -> str:
            error = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
            raise ClientError(error, "DescribeInstances")

    monkeypatch.setattr(instances.wiring, "provisioner_from_env", lambda: Flaky())
    with pytest.raises(AwsUnavailable, match="ThrottlingException"):
        step.handler({"step": "check_instance", "instance_id": "ins_1"}, lambda_context)


def launched(provisioner: Provisioner, service: InstanceService) -> str:
    instance = service.create(ALICE, "blob_1")
    assert provisioner.run("launch", instance.id) == "next"
    return instance.id


def sent(provisioner: Provisioner, service: InstanceService, agent: Agent) -> str:
    """An instance whose fetch-and-run command was sent (its SSM agent came online)."""
    instance_id = launched(provisioner, service)
    provisioner.run("check_instance", instance_id)
    agent.online = True
    assert provisioner.run("check_ssm", instance_id) == "next"
    return instance_id


def test_a_launch_run_again_after_its_answer_was_lost_launches_nothing_more(
    provisioner: Provisioner, service: InstanceService, aws: boto3.session.Session
) -> None:
    instance_id = launched(provisioner, service)
    assert provisioner.run("launch", instance_id) == "next"
    assert len(ec2_instances(aws)) == 1


def test_a_launch_whose_record_write_failed_finds_its_machine_when_run_again(
    provisioner: Provisioner,
    service: InstanceService,
    aws: boto3.session.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RunInstances succeeded, then recording the machine failed (AwsUnavailable, retried by
    the workflow): the next try finds the machine by its id tag instead of a second one."""
    from instances.repository import InstanceRepository

    instance = service.create(ALICE, "blob_1")
    replace, failures = InstanceRepository.replace, [1]

    def refused_once(self: InstanceRepository, *args: Any) -> None:
        if failures:
            failures.pop()
            raise RuntimeError("the record write failed")
        replace(self, *args)

    monkeypatch.setattr(InstanceRepository, "replace", refused_once)
    with pytest.raises(RuntimeError):
        provisioner.run("launch", instance.id)
    assert provisioner.run("launch", instance.id) == "next"
    (machine,) = ec2_instances(aws)
    assert service.get(ALICE, instance.id).instance.ec2_instance_id == machine["InstanceId"]


def test_launch_uses_the_template_and_tags_the_instance(
    provisioner: Provisioner, service: InstanceService, aws: boto3.session.Session
) -> None:
    instance_id = launched(provisioner, service)
    (machine,) = ec2_instances(aws)
    tags = {t["Key"]: t["Value"] for t in machine["Tags"]}
    assert tags["berth:instance-id"] == instance_id
    assert (tags["berth:user"], tags["berth:capability"]) == (ALICE, "instances")  # the bill
    assert tags["berth:app"] == "berth"
    assert tags["Name"].startswith("berth-vm-")
    record = provisioner.repo.get(instance_id)
    assert record and record.ec2_instance_id == machine["InstanceId"]


def test_phases_advance_to_ready(
    provisioner: Provisioner, service: InstanceService, agent: Agent, clock: FakeClock
) -> None:
    instance_id = launched(provisioner, service)
    assert provisioner.run("check_instance", instance_id) == "next"
    record = provisioner.repo.get(instance_id)
    assert record and record.status == Phase.WAITING_FOR_SSM
    assert record.private_ip
    assert provisioner.run("check_ssm", instance_id) == "wait"
    agent.online = True
    assert provisioner.run("check_ssm", instance_id) == "next"
    record = provisioner.repo.get(instance_id)
    assert record and record.status == Phase.FETCHING_BLOB
    assert record.command_id
    assert provisioner.run("check_command", instance_id) == "done"  # moto: Success at once
    assert service.get(ALICE, instance_id).instance.status == Phase.READY


def test_the_command_gets_the_blob_only_as_a_document_parameter(
    provisioner: Provisioner,
    service: InstanceService,
    agent: Agent,
    aws: boto3.session.Session,
) -> None:
    instance_id = launched(provisioner, service)
    provisioner.run("check_instance", instance_id)
    agent.online = True
    provisioner.run("check_ssm", instance_id)
    (command,) = aws.client("ssm").list_commands()["Commands"]
    assert command["DocumentName"] == "berth-fetch-and-run"
    assert command["Parameters"]["blobId"] == ["blob_1"]
    assert command["Parameters"]["aggregatorUrl"] == ["https://aggregator.example"]


def test_ssm_timeout_fails_and_terminates(
    provisioner: Provisioner,
    service: InstanceService,
    clock: FakeClock,
    aws: boto3.session.Session,
) -> None:
    instance_id = launched(provisioner, service)
    provisioner.run("check_instance", instance_id)
    clock.advance(301)
    assert provisioner.run("check_ssm", instance_id) == "failed"
    record = service.get(ALICE, instance_id)
    assert record.instance.status == Phase.FAILED
    assert record.instance.error == "the instance did not report its SSM agent online within 300 s"
    (machine,) = ec2_instances(aws)
    assert machine["State"]["Name"] in {"shutting-down", "terminated"}
    # the slot is free again
    service.create(ALICE, "again")
    service.create(ALICE, "and-again")


def test_a_vanished_instance_shows_in_the_record(
    provisioner: Provisioner, service: InstanceService, aws: boto3.session.Session
) -> None:
    instance_id = launched(provisioner, service)
    record = provisioner.repo.get(instance_id)
    assert record and record.ec2_instance_id
    from moto.ec2.models import ec2_backends

    ec2_backends["123456789012"]["us-east-1"].reservations.clear()
    shown = service.get(ALICE, instance_id)
    assert shown.ec2 is not None
    assert shown.ec2.state == "missing"
    assert provisioner.run("check_instance", instance_id) == "failed"
    assert service.get(ALICE, instance_id).instance.error == (
        "the EC2 instance is missing before it was ready"
    )


def test_a_failed_command_fails_with_its_details(
    provisioner: Provisioner,
    service: InstanceService,
    agent: Agent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance_id = sent(provisioner, service, agent)
    monkeypatch.setattr(
        provisioner.machines, "command_status", lambda *_: ("Failed", "the blob has no script.sh")
    )
    assert provisioner.run("check_command", instance_id) == "failed"
    assert service.get(ALICE, instance_id).instance.error == (
        "fetching the blob ended Failed: the blob has no script.sh"
    )


def test_a_workflow_error_is_recorded_and_cleans_up(
    provisioner: Provisioner, service: InstanceService, aws: boto3.session.Session
) -> None:
    instance_id = launched(provisioner, service)
    assert provisioner.run("fail", instance_id, "States.Timeout: task timed out") == "failed"
    assert service.get(ALICE, instance_id).instance.error == "States.Timeout: task timed out"
    (machine,) = ec2_instances(aws)
    assert machine["State"]["Name"] in {"shutting-down", "terminated"}


def test_delete_terminates_then_is_idempotent_and_stops_the_workflow(
    provisioner: Provisioner, service: InstanceService, aws: boto3.session.Session
) -> None:
    instance_id = launched(provisioner, service)
    deleted, terminated = service.delete(ALICE, instance_id)
    assert (deleted.instance.status, terminated) == (Phase.TERMINATED, True)
    (machine,) = ec2_instances(aws)
    assert machine["State"]["Name"] in {"shutting-down", "terminated"}
    again, terminated_again = service.delete(ALICE, instance_id)
    assert (again.instance.status, terminated_again) == (Phase.TERMINATED, False)
    # a workflow still polling finds nothing left to do
    assert provisioner.run("check_instance", instance_id) == "stopped"


def test_other_users_instances_are_not_found(
    service: InstanceService, provisioner: Provisioner
) -> None:
    instance = service.create(ALICE, "x")
    for call in (service.get, service.delete):
        with pytest.raises(DomainError) as raised:
            call(BOB, instance.id)
        assert status_of(raised.value) == 404


def test_logs_show_the_scripts_output_and_exit_code_once_it_was_sent_and_only_to_its_owner(
    provisioner: Provisioner,
    service: InstanceService,
    agent: Agent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = launched(provisioner, service)
    before = service.logs(ALICE, waiting)
    assert (before.output, before.instance.id) == (None, waiting)  # nothing sent yet
    instance_id = sent(provisioner, service, agent)
    asked: list[dict[str, str]] = []
    answer = {
        "Status": "Failed", "ResponseCode": 3,
        "StandardOutputContent": "fetched blob_1\nrunning\n", "StandardErrorContent": "boom\n",
    }  # fmt: skip

    def invocation(**kwargs: str) -> dict[str, object]:
        asked.append(kwargs)
        return answer

    monkeypatch.setattr(service.machines.ssm, "get_command_invocation", invocation)
    log = service.logs(ALICE, instance_id)
    record = service.get(ALICE, instance_id).instance
    assert asked == [{"CommandId": record.command_id, "InstanceId": record.ec2_instance_id}]
    assert log.output is not None
    assert (log.output.status, log.output.exit_code) == ("Failed", 3)
    assert (log.output.stdout, log.output.stderr) == ("fetched blob_1\nrunning\n", "boom\n")
    answer["ResponseCode"] = -1  # SSM's "no exit code yet"
    assert service.logs(ALICE, instance_id).output.exit_code is None  # type: ignore[union-attr]
    with pytest.raises(DomainError):
        service.logs(BOB, instance_id)
