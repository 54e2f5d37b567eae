"""The workers functions' environment (infra/workers.py renders it)."""

from __future__ import annotations

from shared.config import EnvModel


class WorkersConfig(EnvModel):
    workers_table: str
    queue_url: str
    workspaces_bucket: str
    command_max_chars: int = 4096
    scaler_function: str | None = None


class ScalerConfig(EnvModel):
    queue_url: str
    cluster_arn: str
    worker_task_definition: str
    worker_family: str
    task_subnets: str
    task_security_groups: str
    assign_public_ip: bool = False
    messages_per_task: int = 2
    min_tasks: int = 0
    max_tasks: int = 10
    expected_command_seconds: float = 15
    start_delay_seconds: int = 60


class WorkerConfig(EnvModel):
    """The worker container's environment."""

    queue_url: str
    workers_table: str
    workspaces_bucket: str
    connections_table: str | None = None
    websocket_endpoint: str | None = None
    idle_seconds: int = 10
    command_timeout_seconds: int = 600
    stop_grace_seconds: int = 100
    workdir: str = "/tmp/workspaces"  # noqa: S108 - the container's own scratch space
    metrics_namespace: str = "berth"
