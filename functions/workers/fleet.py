"""The worker fleet in ECS: count it, and start more (RunTask in batches of 10)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

STARTED_BY = "berth-workers"
USER_TAG = "berth:user"
CAPABILITY_TAG = "berth:capability"
THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException"}


class Fleet:
    def __init__(
        self,
        ecs: Any,
        *,
        cluster_arn: str,
        task_definition: str,
        family: str,
        subnets: Sequence[str],
        security_groups: Sequence[str],
        assign_public_ip: bool,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ecs = ecs
        self.cluster_arn = cluster_arn
        self.task_definition = task_definition
        self.family = family
        self.subnets = list(subnets)
        self.security_groups = list(security_groups)
        self.assign_public_ip = assign_public_ip
        self.sleep = sleep

    def live(self) -> dict[str, bool]:
        """Each live worker task's id → whether it is RUNNING (else still starting)."""
        arns: list[str] = []
        for page in self.ecs.get_paginator("list_tasks").paginate(
            cluster=self.cluster_arn, family=self.family, desiredStatus="RUNNING"
        ):
            arns += page.get("taskArns", [])
        found: dict[str, bool] = {}
        for start in range(0, len(arns), 100):
            tasks = self.ecs.describe_tasks(
                cluster=self.cluster_arn, tasks=arns[start : start + 100]
            )
            for task in tasks.get("tasks", []):
                found[task["taskArn"].rsplit("/", 1)[-1]] = task.get("lastStatus") == "RUNNING"
        return found

    def label(self, worker: str, user: str) -> bool:
        """Tags a worker's task with the user it is bound to (cost allocation tags match
        berth's own usage); False if ECS refused (berth's usage reads the binding, not this)."""
        try:
            self.ecs.tag_resource(
                resourceArn=f"{self.cluster_arn.replace(':cluster/', ':task/')}/{worker}",
                tags=[{"key": USER_TAG, "value": user[:256]}],
            )
        except ClientError:
            return False
        return True

    def launch(self, count: int) -> tuple[list[str], list[str]]:
        """Starts ``count`` workers; returns the started tasks' ids and the failures'
        reasons. A worker's id is its task's id."""
        started: list[str] = []
        failures: list[str] = []
        remaining = count
        while remaining > 0:
            batch = min(10, remaining)  # RunTask's own limit
            try:
                response = self._run(batch)
            except ClientError as exc:
                failures.append(exc.response.get("Error", {}).get("Code", "Error"))
                break
            started += [task["taskArn"].rsplit("/", 1)[-1] for task in response.get("tasks", [])]
            failures += [f.get("reason", "unknown") for f in response.get("failures", [])]
            remaining -= batch
        return started, failures

    def _run(self, count: int, attempts: int = 5) -> Any:
        for attempt in range(attempts):
            try:
                return self.ecs.run_task(
                    cluster=self.cluster_arn,
                    taskDefinition=self.task_definition,
                    launchType="FARGATE",
                    count=count,
                    startedBy=STARTED_BY,
                    networkConfiguration={
                        "awsvpcConfiguration": {
                            "subnets": self.subnets,
                            "securityGroups": self.security_groups,
                            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                        }
                    },
                    propagateTags="TASK_DEFINITION",
                    tags=[{"key": CAPABILITY_TAG, "value": "workers"}],
                )
            except ClientError as exc:
                if (
                    exc.response.get("Error", {}).get("Code") not in THROTTLED
                    or attempt == attempts - 1
                ):
                    raise
                self.sleep(min(8.0, 0.25 * 2**attempt))
        raise AssertionError("unreachable")
