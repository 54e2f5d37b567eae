"""EventBridge, locally: the template's rules delivered to their target functions.

moto does not deliver ECS task state changes or run schedules. The sandbox watches the
emulated ECS and synthesizes "ECS Task State Change" events exactly when a task's status
changes, and fires scheduled rules on their rate — then hands each event to the rule's
target, like EventBridge does. Handlers cannot tell the difference — including, under
``BERTH_LOCAL_FAULTS``, an event that comes twice or late (``Faults.deliveries``).
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
        ecs = self.emulator.client("ecs")
        while not self._stop.wait(self.poll_seconds):
            try:
                for cluster in ecs.list_clusters()["clusterArns"]:
                    self._poll_cluster(ecs, cluster)
            except Exception:
                if not self._stop.is_set():
                    log.exception("watching ECS failed")

    def _poll_cluster(self, ecs: Any, cluster: str) -> None:
        arns: list[str] = []
        for desired in ("RUNNING", "STOPPED"):
            arns += ecs.list_tasks(cluster=cluster, desiredStatus=desired)["taskArns"]
        for start in range(0, len(arns), 100):
            tasks = ecs.describe_tasks(
                cluster=cluster, tasks=arns[start : start + 100], include=["TAGS"]
            )
            for task in tasks["tasks"]:
                status = task["lastStatus"]
                if self._last_status.get(task["taskArn"]) == status:
                    continue
                self._last_status[task["taskArn"]] = status
                for listener in self.task_listeners:
                    listener(task)
                self.deliver(
                    {
                        "version": "0",
                        "id": str(uuid.uuid4()),
                        "detail-type": "ECS Task State Change",
                        "source": "aws.ecs",
                        "account": ACCOUNT,
                        "time": datetime.now(UTC).isoformat(),
                        "region": REGION,
                        "resources": [task["taskArn"]],
                        "detail": _plain(task),
                    }
                )
