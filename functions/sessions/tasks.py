"""ECS access for sessions: start, stop, describe and find berth's Fargate tasks."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sessions.warm import WARM_STARTED_BY
from shared.records import epoch

SESSION_TAG = "berth:session-id"
PROFILE_TAG = "berth:profile"
WARM_TAG = "berth:warm-pool"
USER_TAG = "berth:user"
CAPABILITY_TAG = "berth:capability"
STARTED_BY_PREFIX = "berth:"

MAX_ERROR_CHARS = 500

STARTING_STATES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
STOPPING_STATES = frozenset({"DEACTIVATING", "STOPPING", "DEPROVISIONING"})


@dataclass(frozen=True)
class TaskInfo:
    """The facts berth needs about a task, from DescribeTasks or a Task State Change event."""

    arn: str
    last_status: str
    desired_status: str
    session_id: str | None
    private_ip: str | None = None
    stopped_reason: str | None = None
    stop_code: str | None = None
    exit_codes: tuple[int, ...] = ()
    warm: bool = False
    """Started for a profile's warm pool (its session, if any, is in the warm item)."""
    created_at: float | None = None
    billed_from: float | None = None
    """When Fargate starts billing it: its image pull began (else when it was created)."""
    stopped_at: float | None = None

    @classmethod
    def from_ecs(cls, task: dict[str, Any]) -> TaskInfo:
        tags = {t.get("key"): t.get("value") for t in task.get("tags") or []}
        started_by = task.get("startedBy") or ""
        session_id = tags.get(SESSION_TAG) or (
            started_by.removeprefix(STARTED_BY_PREFIX)
            if started_by.startswith(STARTED_BY_PREFIX)
            else None
        )
        private_ip = None
        for attachment in task.get("attachments") or []:
            for detail in attachment.get("details") or []:
                if detail.get("name") == "privateIPv4Address":
                    private_ip = detail.get("value")
        exit_codes = tuple(
            int(c["exitCode"])
            for c in task.get("containers") or []
            if c.get("exitCode") is not None
        )
        return cls(
            arn=task["taskArn"],
            last_status=task.get("lastStatus", "PROVISIONING"),
            desired_status=task.get("desiredStatus", "RUNNING"),
            session_id=session_id,
            private_ip=private_ip,
            stopped_reason=task.get("stoppedReason"),
            stop_code=task.get("stopCode"),
            exit_codes=exit_codes,
            warm=started_by == WARM_STARTED_BY or WARM_TAG in tags,
            created_at=epoch(task.get("createdAt")),
            billed_from=epoch(task.get("pullStartedAt")) or epoch(task.get("createdAt")),
            stopped_at=epoch(task.get("stoppedAt")),
        )


@dataclass(frozen=True)
class RunResult:
    task_arn: str | None
    error: str | None


class TaskRunner:
    """Runs one Fargate task per session in the configured subnets and security groups."""

    def __init__(
        self,
        ecs: Any,
        *,
        cluster_arn: str,
        subnets: Sequence[str],
        security_groups: Sequence[str],
        assign_public_ip: bool,
    ) -> None:
        self.ecs = ecs
        self.cluster_arn = cluster_arn
        self.subnets = list(subnets)
        self.security_groups = list(security_groups)
        self.assign_public_ip = assign_public_ip

    def run(
        self,
        *,
        session_id: str,
        user: str,
        profile: str,
        task_definition: str,
        container: str,
        environment: dict[str, str],
    ) -> RunResult:
        """Starts the session's task; the session id is the idempotency token (one task, ever)."""
        return self._run(
            task_definition,
            container,
            environment,
            started_by=f"{STARTED_BY_PREFIX}{session_id}",
            client_token=session_id,
            tags={
                SESSION_TAG: session_id,
                PROFILE_TAG: profile,
                USER_TAG: user[:256],
                CAPABILITY_TAG: "sessions",
            },
        )

    def run_warm(self, *, profile: str, task_definition: str, container: str) -> RunResult:
        """Starts an unassigned task for ``profile``'s warm pool. It knows no user: its
        environment names only its pool."""
        return self._run(
            task_definition,
            container,
            {"BERTH_WARM_POOL": profile},
            started_by=WARM_STARTED_BY,
            client_token=str(uuid.uuid4()),
            tags={WARM_TAG: profile, PROFILE_TAG: profile, CAPABILITY_TAG: "sessions"},
        )

    def label(self, task_arn: str, user: str) -> bool:
        """Tags a claimed warm task with its user (for the bill; berth's own usage reads the
        session); False if ECS refused."""
        try:
            self.ecs.tag_resource(
                resourceArn=task_arn, tags=[{"key": USER_TAG, "value": user[:256]}]
            )
        except ClientError:
            return False
        return True

    def _run(
        self,
        task_definition: str,
        container: str,
        environment: dict[str, str],
        *,
        started_by: str,
        client_token: str,
        tags: dict[str, str],
    ) -> RunResult:
        try:
            response = self.ecs.run_task(
                cluster=self.cluster_arn,
                taskDefinition=task_definition,
                launchType="FARGATE",
                count=1,
                startedBy=started_by,
                clientToken=client_token,
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": self.subnets,
                        "securityGroups": self.security_groups,
                        "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
                    }
                },
                overrides={
                    "containerOverrides": [
                        {
                            "name": container,
                            "environment": [
                                {"name": key, "value": value}
                                for key, value in sorted(environment.items())
                            ],
                        }
                    ]
                },
                tags=[{"key": key, "value": value} for key, value in tags.items()],
                propagateTags="TASK_DEFINITION",
                enableECSManagedTags=True,
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            message = f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
            return RunResult(None, message[:MAX_ERROR_CHARS])
        tasks = response.get("tasks") or []
        if tasks:
            return RunResult(tasks[0]["taskArn"], None)
        failures = response.get("failures") or [{}]
        reason = "; ".join(
            f"{f.get('reason', 'unknown')}{': ' + f['detail'] if f.get('detail') else ''}"
            for f in failures
        )
        return RunResult(None, f"RunTask failed: {reason}"[:MAX_ERROR_CHARS])

    def stop(self, task_arn: str, reason: str) -> None:
        try:
            self.ecs.stop_task(cluster=self.cluster_arn, task=task_arn, reason=reason[:255])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {
                "InvalidParameterException",
                "ResourceNotFoundException",
            }:
                raise

    def describe(self, task_arns: Iterable[str]) -> dict[str, TaskInfo | None]:
        """Each ARN mapped to its task, or None when ECS no longer knows it."""
        arns = list(dict.fromkeys(task_arns))
        found: dict[str, TaskInfo | None] = dict.fromkeys(arns)
        for start in range(0, len(arns), 100):
            response = self.ecs.describe_tasks(
                cluster=self.cluster_arn, tasks=arns[start : start + 100], include=["TAGS"]
            )
            for task in response.get("tasks") or []:
                found[task["taskArn"]] = TaskInfo.from_ecs(task)
        return found

    def running_berth_tasks(self) -> list[TaskInfo]:
        """Tasks in the cluster that berth started for a session (tagged with its id) or for
        a warm pool."""
        arns: list[str] = []
        paginator = self.ecs.get_paginator("list_tasks")
        for page in paginator.paginate(cluster=self.cluster_arn, desiredStatus="RUNNING"):
            arns.extend(page.get("taskArns") or [])
        described = self.describe(arns)
        return [task for task in described.values() if task and (task.session_id or task.warm)]
