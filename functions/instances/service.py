"""Instances API logic: validate, count, start the workflow; show records with live EC2 data."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from instances.config import InstancesConfig
from instances.ec2 import Machines
from instances.models import (
    Instance,
    InstanceLog,
    InstanceView,
    Phase,
    new_instance_id,
    vm_name,
)
from instances.repository import InstanceRepository, QuotaFull, StaleRecord
from shared.errors import LimitReached, NotFound, Unavailable
from shared.records import execution_arn
from shared.usage import Capability, Metering, Span, Usage


class InstanceService:
    def __init__(
        self,
        *,
        config: InstancesConfig,
        repository: InstanceRepository,
        machines: Machines,
        stepfunctions: Any,
        clock: Callable[[], float],
        metering: Metering | None = None,
    ) -> None:
        self.config = config
        self.repo = repository
        self.machines = machines
        self.sfn = stepfunctions
        self.clock = clock
        self.metering = metering
        """Set when usage is on: budgets checked at create, each machine's time recorded."""

    def create(self, user: str, blob_id: str) -> InstanceView:
        """Started first, recorded second: a 202 means both happened. If the record fails the
        answer is 503 and the workflow, finding no record, launches nothing
        (``provisioning.NotRecordedYet``); no record ever waits for a workflow never started."""
        if self.repo.live_count(user) >= self.config.max_instances_per_user:
            raise self._limit_reached()
        if self.metering:
            self.metering.check(user)
        now = self.clock()
        instance_id = new_instance_id(now)
        instance = Instance(
            id=instance_id,
            user=user,
            blob_id=blob_id,
            name=vm_name(now, instance_id),
            status=Phase.WAITING_FOR_INSTANCE,
            created_at=now,
            updated_at=now,
            phase_started_at=now,
        )
        try:
            self.sfn.start_execution(
                stateMachineArn=self.config.state_machine_arn,
                name=instance.id,
                input=json.dumps({"instance_id": instance.id}),
            )
        except ClientError as exc:
            raise Unavailable("could not start provisioning; try again") from exc
        try:
            self.repo.create(instance, self.config.max_instances_per_user)
        except QuotaFull:  # another of theirs took the last place meanwhile
            raise self._limit_reached() from None
        return InstanceView(instance)

    def _limit_reached(self) -> LimitReached:
        return LimitReached(
            f"you already have {self.config.max_instances_per_user} instances; delete one "
            "(DELETE /instances/{id}) before starting another",
            code="instance_limit",
        )

    def get(self, user: str, instance_id: str) -> InstanceView:
        instance = self._owned(user, instance_id)
        return self._merged([instance])[0]

    def logs(self, user: str, instance_id: str) -> InstanceLog:
        """The instance's script output: empty until the script was sent."""
        instance = self._owned(user, instance_id)
        if not (instance.command_id and instance.ec2_instance_id):
            return InstanceLog(instance, None)
        output = self.machines.script_output(instance.command_id, instance.ec2_instance_id)
        return InstanceLog(instance, output)

    def list_instances(
        self, user: str, limit: int, token: str | None
    ) -> tuple[list[InstanceView], str | None]:
        instances, next_token = self.repo.list_for_user(user, limit, token)
        return self._merged(instances), next_token

    def delete(self, user: str, instance_id: str) -> tuple[InstanceView, bool]:
        """``(instance, True)`` when this call terminated it."""
        instance = self._owned(user, instance_id)
        if instance.status == Phase.TERMINATED:
            return self._merged([instance])[0], False
        if instance.ec2_instance_id:
            self.machines.terminate(instance.ec2_instance_id)
        self._stop_workflow(instance.id)
        terminated = instance.moved(Phase.TERMINATED, self.clock())
        try:
            self.repo.replace(instance, terminated)
        except StaleRecord:
            return self.delete(user, instance_id)  # the workflow moved it meanwhile: again
        return self._merged([terminated])[0], True

    def meter(self, ec2_id: str, ended_at: float) -> Usage | None:
        """Records a machine that stopped running (an "EC2 Instance State-change
        Notification": shutting-down, terminated, stopping or stopped) as its instance's
        usage, once per launch; None when usage is off or the machine is not berth's."""
        if self.metering is None:
            return None
        life = self.machines.life(ec2_id)
        instance = self.repo.get(life.instance_id) if life else None
        if life is None or instance is None:
            return None
        span = Span(
            f"instance/{instance.id}/{int(life.launched_at)}",  # once per launch
            instance.user,
            Capability.INSTANCES,
            instance.id,
            life.launched_at,
            max(life.launched_at, ended_at),
        )
        usage = self.metering.meter.ec2(span, instance_type=life.instance_type)
        self.metering.record(usage)
        return usage

    def _owned(self, user: str, instance_id: str) -> Instance:
        instance = self.repo.get(instance_id)
        if instance is None or instance.user != user:
            raise NotFound("instance")
        return instance

    def _merged(self, instances: list[Instance]) -> list[InstanceView]:
        ids = [i.ec2_instance_id for i in instances if i.ec2_instance_id]
        facts = self.machines.describe(ids) if ids else {}
        return [
            InstanceView(i, facts.get(i.ec2_instance_id) if i.ec2_instance_id else None)
            for i in instances
        ]

    def _stop_workflow(self, instance_id: str) -> None:
        arn = execution_arn(self.config.state_machine_arn, instance_id)
        try:
            self.sfn.stop_execution(executionArn=arn, cause="instance deleted by its owner")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"ExecutionDoesNotExist"}:
                raise
