"""Typed settings for the whole app, read once from the CDK context.

The settings live under the ``berth`` key of ``cdk.json``'s context. Any single value can be
overridden on the command line with a dotted key under the ``berth:`` prefix, e.g.::

    cdk synth -c berth:sessions.profiles.default.memory=1024
    cdk synth -c berth:vpc.mode=lookup -c berth:vpc.vpc_id=vpc-0abc

Override values are parsed as JSON when they parse (numbers, booleans, lists, objects) and
taken as plain strings otherwise. Every problem is reported as one line naming the key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.usage import Pricing
from shared.windows import Window

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_DIR = ROOT / "containers"
CONTEXT_KEY = "berth"
OVERRIDE_PREFIX = f"{CONTEXT_KEY}:"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip

# Fargate's valid memory sizes (MiB) per CPU size (CPU units).
FARGATE_MEMORY_BY_CPU: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}


def check_fargate_size(cpu: int, memory: int) -> None:
    """The one check of a Fargate cpu/memory pair; raises ValueError naming what is wrong."""
    if cpu not in FARGATE_MEMORY_BY_CPU:
        raise ValueError(f"Fargate cpu must be one of {sorted(FARGATE_MEMORY_BY_CPU)}")
    allowed = FARGATE_MEMORY_BY_CPU[cpu]
    if memory not in allowed:
        raise ValueError(
            f"memory {memory} is not valid with cpu {cpu} on Fargate "
            f"(allowed {min(allowed)}..{max(allowed)} in steps shown in the Fargate docs)"
        )


Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
PositiveInt = Annotated[int, Field(gt=0)]


class SettingsError(Exception):
    """Raised with one line per problem, each naming the offending key."""


class _Strict(BaseModel):
    # `-c berth:env.account=111122223333` parses as a number; account ids are strings.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class EnvironmentSettings(_Strict):
    """Where to deploy. Leave both empty for an environment-agnostic template."""

    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")


class VpcSettings(_Strict):
    mode: Literal["create", "lookup"] = "create"
    vpc_id: str | None = Field(default=None, pattern=r"^vpc-[0-9a-f]{8,17}$")
    tags: dict[str, str] = Field(default_factory=dict)
    cidr: str = "10.40.0.0/16"
    max_azs: int = Field(default=2, ge=1, le=3)
    task_subnets: Literal["public", "private"] = "public"
    """Where Fargate tasks run. ``public`` gives them a public IP for egress (image pulls) with
    no inbound from the internet; ``private`` needs ``interface_endpoints``."""
    interface_endpoints: bool = False
    """Create ECR/Logs/ECS interface endpoints (billed hourly) for tasks in private subnets."""
    ingress_cidrs: list[str] = Field(default_factory=list)
    """Networks that may reach session containers on their ports, besides members of the
    ``SessionClients`` security group (a product's backend attaches that group). Empty: no
    one else — in particular not workers, job tasks, instances or other sessions."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        ipaddress.ip_network(value)
        return value

    @field_validator("ingress_cidrs")
    @classmethod
    def _ingress(cls, values: list[str]) -> list[str]:
        for value in values:
            network = ipaddress.ip_network(value)
            if network.prefixlen == 0:
                raise ValueError(f"{value} opens the containers to the whole internet")
        return values

    @model_validator(mode="after")
    def _mode(self) -> Self:
        if self.mode == "lookup" and not (self.vpc_id or self.tags):
            raise ValueError("mode 'lookup' needs vpc_id or tags")
        if self.mode == "create" and (self.vpc_id or self.tags):
            raise ValueError("vpc_id/tags are only used with mode 'lookup'")
        if (
            self.task_subnets == "private"
            and self.mode == "create"
            and not self.interface_endpoints
        ):
            raise ValueError(
                "task_subnets 'private' has no NAT gateway: set interface_endpoints true "
                "so tasks can pull images"
            )
        return self


class VolumeSettings(_Strict):
    """A profile's persistent volume: one per user, kept across sessions (``sessions.storage``)."""

    path: str = Field(pattern=r"^/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
    """Where the user's volume is mounted in the container (e.g. Chroma's persist directory)."""


class ProfileSettings(_Strict):
    """One kind of per-user container a client can ask for with ``POST /sessions``."""

    image: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """A directory under containers/ that holds a Dockerfile."""
    cpu: int = 256
    memory: PositiveInt = 512
    port: int = Field(default=8080, ge=1, le=65535)
    environment: dict[str, str] = Field(default_factory=dict)
    default_ttl_seconds: PositiveInt = 3600
    max_ttl_seconds: PositiveInt = 8 * 3600
    idle_timeout_seconds: PositiveInt = 30 * 60
    """How long nobody uses a session before the reaper stops it: no heartbeat from its owner,
    no request through its route, no ``activity_marker`` line from its container."""
    activity_marker: str | None = Field(default="berth:active", pattern=r"^[A-Za-z0-9:._-]{1,64}$")
    """A line of the container's output holding this word counts as use (the container's way
    to say "busy", e.g. a long computation); None: its output is never asked."""
    health_check_path: str = Field(default="/", pattern=r"^/[A-Za-z0-9._~/-]{0,200}$")
    """What the routing load balancer asks a routed session (any answer below 500 is alive)."""
    warm_pool: int = Field(default=0, ge=0, le=50)
    """Tasks kept started and unassigned, so a POST /sessions answers RUNNING at once."""
    max_warm_seconds: int = Field(default=3600, ge=300)
    """A warm task unclaimed this long is replaced (fresh image, no long-lived strays)."""
    warm_windows: list[str] = Field(default_factory=list)
    """When to keep the pool, UTC (``"mon-fri 07:00-19:00"``); empty: always."""
    storage: VolumeSettings | None = None
    """A volume per user that outlives the session (EFS); none: the task's own disk only."""

    @field_validator("warm_windows")
    @classmethod
    def _windows(cls, values: list[str]) -> list[str]:
        for value in values:
            Window.parse(value)  # one line naming the bad window
        return values

    @field_validator("image")
    @classmethod
    def _image_dir(cls, value: str) -> str:
        if not (CONTAINERS_DIR / value / "Dockerfile").is_file():
            raise ValueError(f"containers/{value}/Dockerfile does not exist")
        return value

    @field_validator("environment")
    @classmethod
    def _env_names(cls, values: dict[str, str]) -> dict[str, str]:
        for key in values:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return values

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        check_fargate_size(self.cpu, self.memory)
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("default_ttl_seconds is larger than max_ttl_seconds")
        if self.storage is not None and self.warm_pool:
            raise ValueError(
                "a profile with storage cannot keep a warm pool: a warm task starts before it "
                "has a user, and ECS mounts a volume only when a task starts"
            )
        return self


def _default_profiles() -> dict[str, ProfileSettings]:
    return {
        "default": ProfileSettings(image="echo", port=8080),
        "chroma": ProfileSettings(
            image="chroma",
            cpu=512,
            memory=1024,
            port=8000,
            storage=VolumeSettings(path="/data"),  # Chroma's PERSIST_DIRECTORY
        ),
    }


STORAGE_IA_DAYS = (1, 7, 14, 30, 60, 90, 180, 270, 365)
"""What EFS lifecycle management accepts."""


class SessionsSettings(_Strict):
    profiles: dict[Name, ProfileSettings] = Field(default_factory=_default_profiles, min_length=1)
    reaper_interval_minutes: int = Field(default=1, ge=1, le=60)
    reaper_dry_run: bool = False
    storage_ia_days: int = 30
    """Files of a session volume untouched this long move to EFS Infrequent Access."""
    storage_removal_policy: Literal["retain", "destroy"] = "retain"
    """What ``cdk destroy`` does to the file system holding users' volumes."""

    @field_validator("storage_ia_days")
    @classmethod
    def _ia_days(cls, value: int) -> int:
        if value not in STORAGE_IA_DAYS:
            raise ValueError(f"storage_ia_days must be one of {list(STORAGE_IA_DAYS)}")
        return value


LAMBDA_MAX_TIMEOUT_SECONDS = 900
STOP_GRACE_SECONDS = 100
"""A stopping worker's grace for its command, within Fargate's 120 s stop timeout."""


class JobSettings(_Strict):
    """One job a client may start by name; the runtime comes from here, never from the client."""

    runtime: Literal["lambda", "fargate"]
    timeout_seconds: PositiveInt = 300
    memory: PositiveInt = 1024
    """MiB. Lambda jobs share one function sized for the largest of them."""
    cpu: int = 512
    """Fargate CPU units (Fargate jobs only)."""

    @model_validator(mode="after")
    def _runtime_limits(self) -> Self:
        if self.runtime == "lambda":
            if self.timeout_seconds > LAMBDA_MAX_TIMEOUT_SECONDS:
                raise ValueError(
                    f"timeout_seconds {self.timeout_seconds} is over Lambda's 15-minute cap "
                    f"({LAMBDA_MAX_TIMEOUT_SECONDS} s): use runtime 'fargate'"
                )
            if not 128 <= self.memory <= 10240:
                raise ValueError("Lambda memory must be 128..10240 MiB")
        else:
            check_fargate_size(self.cpu, self.memory)
        return self


def _default_jobs() -> dict[str, JobSettings]:
    return {
        "checksum": JobSettings(runtime="lambda", timeout_seconds=60, memory=512),
        "render": JobSettings(runtime="fargate", timeout_seconds=1800, cpu=1024, memory=2048),
    }


class JobsSettings(_Strict):
    catalogue: dict[Name, JobSettings] = Field(default_factory=_default_jobs, min_length=1)
    """Each name must have a runner in ``containers/jobs/berth_jobs/catalog.py``."""
    result_url_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    """How long a presigned result/failure URL stays valid."""

    @field_validator("catalogue")
    @classmethod
    def _runners(cls, catalogue: dict[str, JobSettings]) -> dict[str, JobSettings]:
        from berth_jobs.catalog import JOBS  # the image's own list of what it can run

        missing = sorted(set(catalogue) - set(JOBS))
        if missing:
            raise ValueError(
                f"no runner for {', '.join(map(repr, missing))} in "
                "containers/jobs/berth_jobs/catalog.py (JOBS)"
            )
        return catalogue


class InstancesSettings(_Strict):
    """EC2 instances that fetch a blob and run its script."""

    launch_template_id: str | None = Field(default=None, pattern=r"^lt-[0-9a-f]{8,17}$")
    """Use an existing launch template instead of berth's."""
    instance_type: str = Field(default="t4g.small", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    architecture: Literal["arm64", "x86_64"] = "arm64"
    root_volume_gb: int = Field(default=16, ge=8, le=1024)
    aggregator_url: str = Field(
        default="https://aggregator.walrus-testnet.walrus.space",
        pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*$",
    )
    running_timeout_seconds: int = Field(default=300, ge=30, le=3600)
    ssm_timeout_seconds: int = Field(default=300, ge=30, le=3600)
    command_timeout_seconds: int = Field(default=900, ge=60, le=172800)
    poll_seconds: int = Field(default=10, ge=1, le=300)
    terminate_on_failure: bool = True


class WorkersSettings(_Strict):
    """Queue-fed Fargate workers that run terminal commands in a project's workspace."""

    command_max_chars: int = Field(default=4096, ge=1, le=65536)
    command_timeout_seconds: int = Field(default=600, ge=1, le=12 * 3600)
    lease_seconds: int = Field(default=60, ge=3, le=900)
    """A worker holds its command for this long without a heartbeat (it renews every third of
    it): a vanished worker's command ends ``worker_lost`` about this long after."""
    cancel_grace_seconds: int = Field(default=10, ge=1, le=60)
    """A cancelled (or stopping) command gets SIGTERM, then SIGKILL after this long."""
    max_receive_count: int = Field(default=5, ge=2, le=1000)
    """A message received this many times without ending goes to the dead-letter queue."""
    min_tasks: int = Field(default=0, ge=0)
    """Unbound reserve workers kept at all times (each costs a Fargate task around the
    clock)."""
    reserve_minimum: int = Field(default=2, ge=0, le=1000)
    """Unbound reserve workers kept at least while any project was active within
    ``reserve_window_seconds`` (none once nothing was)."""
    idle_seconds: int = Field(default=10, ge=1, le=3600)
    """An unbound reserve worker beyond the reserve exits after this long."""
    keep_warm_seconds: int = Field(default=60, ge=1, le=3600)
    """A bound worker exits after this long without a command of its user: a person's next
    command within it runs at once on their own worker. A worker whose user queued a command
    while another ran (scripted work, not a person reading) exits after ``idle_seconds``."""
    warm_reserve_share: float = Field(default=0.3, ge=0, le=10)
    """Unbound reserve workers per project active within ``reserve_window_seconds``, so a
    user's first command need not wait for a worker to boot."""
    reserve_window_seconds: int = Field(default=120, ge=0, le=3600)
    """How far back a project counts as active for the reserve."""
    scaler_interval_minutes: int = Field(default=1, ge=1, le=60)
    reconcile_interval_minutes: int = Field(default=1, ge=1, le=60)
    """How often lost and undeliverable commands are looked for."""
    log_url_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    """How long a command's presigned log URL (or a file's download/upload URL) stays valid."""
    connect_url_seconds: int = Field(default=60, ge=5, le=3600)
    """How long a terminal's connect URL (for a browser) opens a connection, once."""
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1, le=5 * 1024**3)
    """The largest file a caller may upload into a project (``berth files put``)."""
    log_expiry_days: int = Field(default=30, ge=1)
    """Command logs are deleted this many days after they are written."""
    cpu: int = 512
    memory: PositiveInt = 1024

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        check_fargate_size(self.cpu, self.memory)
        if self.cancel_grace_seconds >= STOP_GRACE_SECONDS:
            raise ValueError(f"cancel_grace_seconds must be under {STOP_GRACE_SECONDS}")
        return self


class LimitSettings(_Strict):
    max_sessions_per_user: int = Field(default=3, ge=1, le=100)
    max_worker_tasks: int = Field(default=10, ge=0, le=1000)
    max_instances_per_user: int = Field(default=2, ge=1, le=100)
    max_queued_commands_per_user: int = Field(default=20, ge=1, le=10000)
    """Commands a user may have QUEUED or RUNNING at once (429 ``command_limit`` beyond)."""
    max_workers_per_user: int = Field(default=4, ge=1, le=1000)
    monthly_budget_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    """Every user's monthly budget (estimated dollars, ``pricing``); unset: none. A user over
    it gets 429 ``budget_exceeded`` on anything that starts compute. Operators set one user's
    own with ``PUT /admin/users/{user}/budget``."""
    stop_over_budget: bool = False
    """Also stop a user's sessions and cancel their queued commands once they are over."""
    """Worker tasks bound to one user at once (one per busy project, up to this)."""


PrincipalArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/*-]+$")
]


class UsageSettings(_Strict):
    """Usage records and budgets (``GET /usage``, ``/admin/...``)."""

    admins: list[
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/*-]+$")]
    ] = Field(default_factory=list)
    """Principals that may call the ``/admin`` routes: IAM role or user ARNs (``*`` wildcards),
    or one assumed-role session's ARN. Empty: nobody."""


class StorageSettings(_Strict):
    object_expiry_days: int | None = Field(default=90, gt=0)
    """Results/failure ZIPs are deleted after this many days (null keeps them forever)."""
    noncurrent_version_expiry_days: PositiveInt = 30
    removal_policy: Literal["retain", "destroy"] = "retain"
    """What happens to data (buckets, tables) when the stack is deleted."""


class LogSettings(_Strict):
    retention_days: int = 30
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs retention must be one of {list(LOG_RETENTION_DAYS)}")
        return value


class FunctionSettings(_Strict):
    memory_mb: int = Field(default=256, ge=128, le=10240)
    timeout_seconds: int = Field(default=29, ge=1, le=900)
    powertools_layer_version: PositiveInt = 27
    """Version of the public Powertools for AWS Lambda (Python) v3 layer (arm64, python3.14)."""


class ApiSettings(_Strict):
    """The REST API takes IAM (SigV4) auth only."""

    throttling_rate_limit: float = Field(default=50, gt=0)
    throttling_burst_limit: int = Field(default=100, gt=0)
    cors_allow_origins: list[str] = Field(default_factory=list)
    """Empty keeps CORS off."""
    stage_name: str = Field(default="v1", pattern=r"^[A-Za-z0-9_]{1,64}$")


class RoutingSettings(_Strict):
    """How a user's browser reaches their own session (opt-in)."""

    mode: Literal["none", "alb"] = "none"
    """``none``: sessions answer with their private address only; ``alb``: an internet-facing
    load balancer routes ``https://<session id>.<domain>`` to the session, with its token."""
    domain: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"
    )
    """Sessions are ``<session id>.<domain>``; the certificate covers ``*.<domain>``."""
    certificate_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:acm:")
    hosted_zone_id: str | None = None
    """When set, a wildcard alias ``*.<domain>`` → the load balancer in this Route 53 zone."""
    max_routes: int = Field(default=45, ge=1, le=490)
    """Sessions routed at once (two listener rules each; an ALB has 100 rules by default)."""

    @model_validator(mode="after")
    def _alb_needs(self) -> Self:
        if self.mode == "alb" and not (self.certificate_arn and self.domain):
            raise ValueError(
                "routing.mode 'alb' needs routing.certificate_arn (a wildcard certificate "
                "for *.<domain>) and routing.domain"
            )
        return self


class Settings(_Strict):
    prefix: str = Field(default="berth", pattern=r"^[a-z][a-z0-9-]{1,24}$")
    """Names the stack and prefixes physical names."""
    env: EnvironmentSettings = Field(default_factory=EnvironmentSettings)
    vpc: VpcSettings = Field(default_factory=VpcSettings)
    sessions: SessionsSettings = Field(default_factory=SessionsSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    instances: InstancesSettings = Field(default_factory=InstancesSettings)
    workers: WorkersSettings = Field(default_factory=WorkersSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    logs: LogSettings = Field(default_factory=LogSettings)
    functions: FunctionSettings = Field(default_factory=FunctionSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    pricing: Pricing = Field(default_factory=Pricing)

    @model_validator(mode="after")
    def _workers_fit(self) -> Self:
        if self.workers.min_tasks > self.limits.max_worker_tasks:
            raise ValueError("workers.min_tasks is larger than limits.max_worker_tasks")
        return self

    @model_validator(mode="after")
    def _routing_needs_region(self) -> Self:
        if self.routing.mode == "alb" and not self.env.region:
            raise ValueError(
                "routing.mode 'alb' needs env.region (the load balancer's access logs are "
                "delivered by that region's Elastic Load Balancing account)"
            )
        return self

    @model_validator(mode="after")
    def _lookup_needs_env(self) -> Self:
        if self.vpc.mode == "lookup" and not (self.env.account and self.env.region):
            raise ValueError("vpc.mode 'lookup' needs env.account and env.region")
        return self

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Settings:
        """Builds settings from a CDK context mapping (base object + ``berth:`` overrides)."""
        base = context.get(CONTEXT_KEY, {})
        if isinstance(base, str):
            base = _parse_value(base)
        if not isinstance(base, dict):
            raise SettingsError(f"berth: setting '{CONTEXT_KEY}' must be an object")
        data = json.loads(json.dumps(base))  # deep copy, plain JSON types only
        for key in sorted(k for k in context if k.startswith(OVERRIDE_PREFIX)):
            _set_path(data, key.removeprefix(OVERRIDE_PREFIX), _parse_value(context[key]))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


def _parse_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise SettingsError(f"berth: setting '{dotted}' is not a valid dotted key")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise SettingsError(f"berth: setting '{where}' is a value, not a group of settings")
        node = child
    node[parts[-1]] = value


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or CONTEXT_KEY
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message = f"{message} (got {error['input']!r})"
        lines.append(f"berth: invalid setting '{key}': {message}")
    return "\n".join(lines)


def project_context(root: Path = ROOT) -> dict[str, Any]:
    """The context the CDK CLI would pass: cdk.json's ``context`` plus cdk.context.json."""
    context: dict[str, Any] = {}
    for name, key in (("cdk.json", "context"), ("cdk.context.json", None)):
        path = root / name
        if path.is_file():
            data = json.loads(path.read_text())
            context.update(data.get(key, {}) if key else data)
    return context
