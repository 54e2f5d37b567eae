"""The provisioning workflow's steps. Step Functions does the waiting; each step looks once,
moves the record along its phases and says what the workflow should do next:

``next`` (go on), ``wait`` (poll again), ``done`` (ready), ``failed`` (the record says why),
``stopped`` (the instance was deleted meanwhile: nothing more to do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from aws_lambda_powertools import Logger

from instances.config import InstancesConfig
from instances.ec2 import GONE_STATES, Machines
from instances.models import Instance, Phase
from instances.repository import InstanceRepository, StaleRecord

logger = Logger(child=True)

Outcome = Literal["next", "wait", "done", "failed", "stopped"]
COMMAND_RUNNING = {"Pending", "InProgress", "Delayed"}


class NotRecordedYet(LookupError):
    """The API starts the workflow before it records the instance (so no record ever waits
    for a workflow that never started): the launch step may run first. The workflow retries
    this error past the API call's timeout; a record that never came was answered 503, and
    nothing is launched."""


class Provisioner:
    def __init__(
        self,
        *,
        config: InstancesConfig,
        repository: InstanceRepository,
        machines: Machines,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.repo = repository
        self.machines = machines
        self.clock = clock

    def run(self, step: str, instance_id: str, error: str | None = None) -> Outcome:
        instance = self.repo.get(instance_id)
        if instance is None and step == "fail":
            return "stopped"  # never recorded: nothing was launched, nothing to record
        if instance is None:
            raise NotRecordedYet(f"no instance record {instance_id}")
        if step == "fail":
            self.fail(instance, error or "the provisioning workflow failed")
            return "failed"
        if not instance.status.provisioning:
            return "stopped"  # deleted (terminated) or already finished meanwhile
        steps = {
            "launch": self.launch,
            "check_instance": self.check_instance,
            "check_ssm": self.check_ssm,
            "check_command": self.check_command,
        }
        if step not in steps:
            raise ValueError(f"unknown step {step!r}")
        return steps[step](instance)

    def launch(self, instance: Instance) -> Outcome:
        if instance.ec2_instance_id:  # run again after its answer was lost: launched already
            return "next"
        ec2_id = self.machines.launch(instance)
        self._move(instance, instance.moved(instance.status, self.clock(), ec2_instance_id=ec2_id))
        return "next"

    def check_instance(self, instance: Instance) -> Outcome:
        ec2_id = _ec2_id(instance)
        facts = self.machines.describe([ec2_id])[ec2_id]
        if facts.state == "running":
            moved = instance.moved(
                Phase.WAITING_FOR_SSM,
                self.clock(),
                private_ip=facts.private_ip,
                public_ip=facts.public_ip,
            )
            self._move(instance, moved)
            return "next"
        if facts.state == "missing" or facts.state in GONE_STATES:
            return self.fail(instance, f"the EC2 instance is {facts.state} before it was ready")
        return self._wait_or_time_out(
            instance, self.config.running_timeout_seconds, "reach the running state"
        )

    def check_ssm(self, instance: Instance) -> Outcome:
        if not self.machines.agent_online(_ec2_id(instance)):
            return self._wait_or_time_out(
                instance, self.config.ssm_timeout_seconds, "report its SSM agent online"
            )
        command_id = self.machines.run_document(
            _ec2_id(instance),
            self.config.document_name,
            {"blobId": [instance.blob_id], "aggregatorUrl": [self.config.aggregator_url]},
            self.config.command_timeout_seconds,
        )
        moved = instance.moved(Phase.FETCHING_BLOB, self.clock(), command_id=command_id)
        self._move(instance, moved)
        return "next"

    def check_command(self, instance: Instance) -> Outcome:
        if not instance.command_id:
            raise RuntimeError(f"{instance.id} has no command to check")
        status, details = self.machines.command_status(instance.command_id, _ec2_id(instance))
        if status == "Success":
            self._move(instance, instance.moved(Phase.READY, self.clock()))
            return "done"
        if status in COMMAND_RUNNING:
            return self._wait_or_time_out(
                instance, self.config.command_timeout_seconds, "finish fetching the blob"
            )
        return self.fail(instance, f"fetching the blob ended {status}: {details}".strip())

    def fail(self, instance: Instance, error: str) -> Outcome:
        """Records the failure and (by default) terminates the instance: nothing left billing."""
        logger.warning("provisioning failed", extra={"instance": instance.id, "error": error})
        if instance.status.live:
            try:
                self._move(instance, instance.moved(Phase.FAILED, self.clock(), error=error))
            except StaleRecord:
                logger.info("instance changed meanwhile", extra={"instance": instance.id})
        if self.config.terminate_on_failure and instance.ec2_instance_id:
            self.machines.terminate(instance.ec2_instance_id)
        return "failed"

    def _wait_or_time_out(self, instance: Instance, limit: int, goal: str) -> Outcome:
        waited = self.clock() - instance.phase_started_at
        if waited <= limit:
            return "wait"
        return self.fail(instance, f"the instance did not {goal} within {limit} s")

    def _move(self, old: Instance, new: Instance) -> None:
        self.repo.replace(old, new)


def _ec2_id(instance: Instance) -> str:
    """The EC2 id a phase after launch needs (the workflow records its failure otherwise)."""
    if not instance.ec2_instance_id:
        raise RuntimeError(f"{instance.id} has no EC2 instance yet")
    return instance.ec2_instance_id
