"""The workers functions' and the worker container's environment (infra/workers.py renders
each with ``environment()``; the worker and the functions read it with ``from_env()``)."""

from __future__ import annotations

from pydantic import Field

from shared.config import EnvModel, Ids


class WorkersConfig(EnvModel):
    """The commands API."""

    workers_table: str
    user_queue_prefix: str
    """Each user's commands wait in a FIFO queue of their own: ``<prefix><tenant>.fifo``."""
    dead_letter_queue_arn: str
    lease_seconds: int = Field(ge=3)
    max_receive_count: int = Field(ge=1)
    workspaces_bucket: str
    command_max_chars: int = Field(ge=1)
    max_pending_per_user: int = Field(ge=1)
    log_url_seconds: int = Field(ge=1)
    """How long a presigned log or file URL stays valid."""
    max_file_bytes: int = Field(ge=1)
    scaler_function: str | None = None
    connections_table: str | None = None
    """Where a project's owner is granted its terminals' topics (live updates)."""
    websocket_url: str | None = None
    """What a terminal's connect URL opens (``wss://…/<stage>``), with a ticket."""
    connect_url_seconds: int = Field(ge=1)
    """How long a terminal's connect URL opens a connection (once; ``workers.*`` settings)."""


class ScalerConfig(EnvModel):
    workers_table: str
    cluster_arn: str
    worker_task_definition: str
    worker_family: str
    task_subnets: Ids
    task_security_groups: Ids
    assign_public_ip: bool
    min_tasks: int = Field(ge=0)
    max_tasks: int = Field(ge=0)
    max_workers_per_user: int = Field(ge=1)
    reserve_minimum: int = Field(ge=0)
    reserve_window_seconds: int = Field(ge=0)
    warm_reserve_share: float = Field(ge=0)
    worker_cpu: int = 512
    """The worker task's Fargate CPU units and memory (MiB): what its usage is priced by."""
    worker_memory: int = 1024


class ReconcilerConfig(EnvModel):
    workers_table: str
    dead_letter_queue_url: str
    reserve_window_seconds: int = Field(ge=0)
    connections_table: str | None = None
    websocket_endpoint: str | None = None


class WorkerConfig(EnvModel):
    """The worker container."""

    user_queue_prefix: str
    """Its user's queue is ``<prefix><tenant>.fifo`` (``workers.tenancy``)."""
    workspaces_bucket: str
    workers_table: str
    connections_table: str | None = None
    websocket_endpoint: str | None = None
    credentials_url: str | None = None
    """``POST /workers/credentials`` of berth's API: credentials scoped to the task's user
    (``workers.vending``); none: the task's own (tests)."""
    idle_seconds: int = Field(ge=1)
    """An unbound worker beyond the reserve leaves after this long without being bound."""
    keep_warm_seconds: int = Field(ge=1)
    """A bound worker leaves after this long without a command."""
    command_timeout_seconds: int = Field(ge=1)
    lease_seconds: int = Field(ge=3)
    stop_grace_seconds: int = Field(ge=1)
    cancel_grace_seconds: int = Field(ge=1)
    record_grace_seconds: int = Field(ge=1)
    """Longer than a call of the commands API may take (its function's timeout and more):
    a message whose command has no record after this long will never have one."""
    run_as_uid: int = Field(ge=1)
    """The first uid commands run as when the worker runs as root (each a fresh one)."""
    run_as_uids: int = Field(ge=1)
    """How many uids from ``run_as_uid`` on commands may use, one per command."""
    workdir: str
    metrics_namespace: str


class VendingConfig(EnvModel):
    """The credentials route (``workers.vending``)."""

    workers_table: str
    tenant_role_arn: str
    """Assumed with the session tags of the task's user (and of a command of theirs)."""
    worker_role_name: str
    """The worker task role: only its sessions (one per task) may ask."""
    user_queue_prefix: str
