"""What berth's API answers, as the client reads it.

The API's OpenAPI document is the source of truth: a test compares every model here, field
by field, with the schema of the same name there. Statuses are plain strings so that a newer
API's statuses never break an older client; fields the client does not know are ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SessionOut(Answer):
    id: str
    user: str
    profile: str
    status: str
    private_ip: str | None
    port: int
    task_arn: str | None
    created_at: str
    updated_at: str
    expires_at: str
    last_heartbeat_at: str
    last_active_at: str | None = None
    idle_expires_at: str
    error: str | None
    stop_reason: str | None = None
    url: str | None = None
    token: str | None = None


class ProfileOut(Answer):
    name: str
    port: int
    default_ttl_seconds: int
    max_ttl_seconds: int
    idle_timeout_seconds: int
    warm_pool: int
    storage_path: str | None = None


class LogLineOut(Answer):
    at: str
    message: str


class LogPage(Answer):
    items: list[LogLineOut]
    next_token: str | None = None


class VolumeOut(Answer):
    profile: str
    path: str
    created_at: str
    last_used_at: str


class JobError(Answer):
    code: str
    message: str
    failure_url: str | None = None


class JobOut(Answer):
    id: str
    name: str
    runtime: str
    status: str
    created_at: str
    finished_at: str | None = None
    result_url: str | None = None
    error: JobError | None = None


class JobRunnerOut(Answer):
    name: str
    runtime: str


class Ec2Facts(Answer):
    state: str
    instance_type: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    launch_time: str | None = None


class InstanceOut(Answer):
    id: str
    name: str
    blob_id: str
    status: str
    ec2_instance_id: str | None
    private_ip: str | None
    public_ip: str | None
    created_at: str
    updated_at: str
    error: str | None
    ec2: Ec2Facts | None = None


class InstanceLogOut(Answer):
    id: str
    status: str
    script_status: str | None
    exit_code: int | None
    stdout: str
    stderr: str


class CommandError(Answer):
    code: str
    message: str


class CommandOut(Answer):
    id: str
    project: str
    terminal: str
    command: str
    status: str
    sequence: str | None
    exit_code: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    cancel_requested: bool
    error: CommandError | None
    output_tail: str
    log_url: str | None


class Output(Answer):
    data: str
    offset: int
    next_offset: int
    complete: bool


class FileOut(Answer):
    path: str
    size: int
    modified_at: str


class FileTransfer(Answer):
    path: str
    method: str
    url: str
    fields: dict[str, str] | None
    expires_at: str


class TicketOut(Answer):
    url: str
    expires_at: str
    topic: str | None = None


class UsageGroup(Answer):
    key: str
    capability: str | None = None
    count: int
    seconds: float
    units: float
    dollars: float


class BudgetOut(Answer):
    monthly_budget_usd: float | None
    spent_this_month_usd: float
    resets_at: str
    over_budget: bool


class UsageOut(Answer):
    user: str
    start: str
    end: str
    group_by: str
    groups: list[UsageGroup]
    total: UsageGroup
    budget: BudgetOut


class UserSpendOut(Answer):
    user: str
    user_id: str
    count: int
    seconds: float
    dollars: float
    monthly_budget_usd: float | None


class AdminUsageOut(Answer):
    month: str
    users: list[UserSpendOut]
    total_dollars: float


MODELS: tuple[type[Answer], ...] = (
    TicketOut,
    SessionOut,
    ProfileOut,
    LogLineOut,
    LogPage,
    VolumeOut,
    JobError,
    JobOut,
    JobRunnerOut,
    Ec2Facts,
    InstanceOut,
    InstanceLogOut,
    CommandError,
    CommandOut,
    Output,
    FileOut,
    FileTransfer,
    UsageGroup,
    BudgetOut,
    UsageOut,
    UserSpendOut,
    AdminUsageOut,
)
"""Each has a schema of the same name in the API's OpenAPI document."""
