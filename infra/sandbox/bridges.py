"""EventBridge, locally: the template's rules delivered to their target functions.

moto does not deliver AWS's events or run schedules. The sandbox watches the emulated ECS,
Step Functions and EC2 and synthesizes "ECS Task State Change", "Step Functions Execution
Status Change" and "EC2 Instance State-change Notification" events exactly when a task's,
an execution's or a machine's state changes, and fires scheduled rules on their rate — then
hands each event to the rule's target, like EventBridge does. Handlers cannot tell the
difference — including, under ``BERTH_LOCAL_FAULTS``, an event that comes twice or late
(``Faults.deliveries``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from infra.sandbox.emulator import ACCOUNT, REGION, Deployment, Emulator
from infra.sandbox.faults import Faults

log = logging.getLogger("berth.sandbox")

Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Rule:
    logical_id: str
    targets: tuple[str, ...]  # function logical ids
    pattern: dict[str, Any] | None
    rate_seconds: float | None


def rules_of(emulator: Emulator, deployment: Deployment) -> list[Rule]:
    """The deployed rules, read back from the emulated EventBridge (patterns resolved)."""
    events = emulator.client("events")
    function_by_arn_name = {
        fn["name"]: logical_id for logical_id, fn in deployment.functions.items()
    }
    rules = []
    for rule in events.list_rules()["Rules"]:
        targets = tuple(
            function_by_arn_name[target["Arn"].rsplit(":", 1)[-1]]
            for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            if target["Arn"].rsplit(":", 1)[-1] in function_by_arn_name
        )
        rate = None
        found = re.fullmatch(
            r"rate\((\d+) (minute|minutes|hour|hours)\)", rule.get("ScheduleExpression", "")
        )
        if found:
            unit = 60 if found.group(2).startswith("minute") else 3600
            rate = int(found.group(1)) * unit
        pattern = json.loads(rule["EventPattern"]) if rule.get("EventPattern") else None
        rules.append(Rule(rule["Name"], targets, pattern, rate))
    return rules


def matches(pattern: Any, value: Any) -> bool:
    """EventBridge's matching for the subset berth's rules use (exact values, nesting)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            matches(sub, value.get(key)) for key, sub in pattern.items()
        )
    if isinstance(pattern, list):
        return value in pattern
    return bool(pattern == value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _millis(value: Any) -> int | None:
    """Step Functions events carry times as epoch milliseconds."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


class EventBridge:
    def __init__(
        self,
        emulator: Emulator,
        deployment: Deployment,
        invoke: Invoke,
        *,
        poll_seconds: float = 0.25,
        schedule_seconds: float | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.emulator = emulator
        self.deployment = deployment
        self.invoke = invoke
        self.rules = rules_of(emulator, deployment)
        self.poll_seconds = poll_seconds
        self.schedule_seconds = schedule_seconds
        self.faults = faults
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_status: dict[str, str] = {}
        self.task_listeners: list[Callable[[dict[str, Any]], None]] = []
        """Also told of every task status change (e.g. to run batch containers locally)."""

    def start(self) -> EventBridge:
        self._spawn(self._watch_ecs, "ecs-events")
        for rule in self.rules:
            if rule.rate_seconds:
                every = self.schedule_seconds or rule.rate_seconds
                self._spawn(partial(self._schedule, rule, every), f"schedule-{rule.logical_id}")
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def deliver(self, event: dict[str, Any]) -> int:
        """Hands ``event`` to every target whose rule matches; how many (now) it reached."""
        delivered = 0
        for rule in self.rules:
            if rule.pattern and matches(rule.pattern, event):
                for target in rule.targets:
                    delivered += self._hand(target, event)
        return delivered

    def _hand(self, target: str, event: dict[str, Any]) -> int:
        """Invokes ``target`` — at once, or (under faults) twice or late, on a timer."""
        delays = self.faults.deliveries(event["detail-type"]) if self.faults else [0.0]
        for delay in delays:
            if delay:
                timer = threading.Timer(delay, self._invoke, (target, event))
                timer.daemon = True
                timer.start()
            else:
                self._invoke(target, event)
        return delays.count(0.0)

    def _invoke(self, target: str, event: dict[str, Any]) -> None:
        if self._stop.is_set():
            return
        try:
            self.invoke(target, event)
        except Exception:
            if self._stop.is_set():  # the sandbox stopped under it: its endpoints are gone
                log.debug("event target %s ended with the sandbox", target, exc_info=True)
                return
            log.exception("event target %s failed", target)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _schedule(self, rule: Rule, every: float) -> None:
        while not self._stop.wait(every):
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT,
                "time": datetime.now(UTC).isoformat(),
                "region": REGION,
                "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule.logical_id}"],
                "detail": {},
            }
            for target in rule.targets:
                self._hand(target, event)

    def _watch_ecs(self) -> None:
        ecs, sfn = self.emulator.client("ecs"), self.emulator.client("stepfunctions")
        ec2 = self.emulator.client("ec2")
        while not self._stop.wait(self.poll_seconds):
            try:
                for cluster in ecs.list_clusters()["clusterArns"]:
                    self._poll_cluster(ecs, cluster)
                self._poll_executions(sfn)
                self._poll_machines(ec2)
            except Exception:
                if not self._stop.is_set():
                    log.exception("watching ECS, Step Functions or EC2 failed")

    def _event(self, detail_type: str, source: str, resource: str, detail: Any) -> dict[str, Any]:
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT,
            "time": datetime.now(UTC).isoformat(),
            "region": REGION,
            "resources": [resource],
            "detail": detail,
        }

    def _changed(self, key: str, status: str) -> bool:
        if self._last_status.get(key) == status:
            return False
        self._last_status[key] = status
        return True

    def _poll_executions(self, sfn: Any) -> None:
        for machine in sfn.list_state_machines()["stateMachines"]:
            arn = machine["stateMachineArn"]
            for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
                if not self._changed(execution["executionArn"], execution["status"]):
                    continue
                detail = {
                    "executionArn": execution["executionArn"],
                    "stateMachineArn": arn,
                    "name": execution["name"],
                    "status": execution["status"],
                    "startDate": _millis(execution.get("startDate")),
                    "stopDate": _millis(execution.get("stopDate")),
                }
                self.deliver(
                    self._event(
                        "Step Functions Execution Status Change",
                        "aws.states",
                        execution["executionArn"],
                        detail,
                    )
                )

    def _poll_machines(self, ec2: Any) -> None:
        for reservation in ec2.describe_instances()["Reservations"]:
            for machine in reservation["Instances"]:
                state = machine["State"]["Name"]
                if not self._changed(machine["InstanceId"], state):
                    continue
                arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{machine['InstanceId']}"
                self.deliver(
                    self._event(
                        "EC2 Instance State-change Notification",
                        "aws.ec2",
                        arn,
                        {"instance-id": machine["InstanceId"], "state": state},
                    )
                )

    def _poll_cluster(self, ecs: Any, cluster: str) -> None:
        arns: list[str] = []
        for desired in ("RUNNING", "STOPPED"):
            arns += ecs.list_tasks(cluster=cluster, desiredStatus=desired)["taskArns"]
        for start in range(0, len(arns), 100):
            tasks = ecs.describe_tasks(
                cluster=cluster, tasks=arns[start : start + 100], include=["TAGS"]
            )
            for task in tasks["tasks"]:
                if not self._changed(task["taskArn"], task["lastStatus"]):
                    continue
                for listener in self.task_listeners:
                    listener(task)
                self.deliver(
                    self._event("ECS Task State Change", "aws.ecs", task["taskArn"], _plain(task))
                )
