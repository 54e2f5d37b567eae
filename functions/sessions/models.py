"""Sessions: the record, its status flow, and the API's request/response models."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.records import Record, iso


class Status(StrEnum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"

    @property
    def live(self) -> bool:
        """Holds the caller's one-per-profile slot and counts against their limit."""
        return self in LIVE

    @property
    def ended(self) -> bool:
        return self in ENDED


LIVE = frozenset({Status.PENDING, Status.STARTING, Status.RUNNING})
ENDED = frozenset({Status.STOPPED, Status.FAILED})

# Allowed moves; anything else is ignored as stale (events arrive late and out of order).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.STARTING, Status.RUNNING, Status.STOPPING, *ENDED}),
    Status.STARTING: frozenset({Status.RUNNING, Status.STOPPING, *ENDED}),
    Status.RUNNING: frozenset({Status.STOPPING, *ENDED}),
    Status.STOPPING: ENDED,
    Status.STOPPED: frozenset(),
    Status.FAILED: frozenset(),
}

PENDING_GRACE_SECONDS = 30
"""A session still PENDING (no task yet) after this long lost its launcher: a retry of the
create launches it, the reaper fails it."""

SESSION_ID_PATTERN = r"^ses_[0-9a-f]{28}$"


def new_token() -> str:
    """A session route's secret: 32 URL-safe characters (fits an ALB condition value)."""
    return secrets.token_urlsafe(24)


def new_session_id(now: float) -> str:
    """Sortable by creation time (milliseconds, hex), then random."""
    return f"ses_{int(now * 1000):012x}{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Session(Record):
    id: str
    user: str
    profile: str
    status: Status
    created_at: float
    updated_at: float
    expires_at: float
    last_heartbeat_at: float
    idle_timeout_seconds: int
    port: int
    task_arn: str | None = None
    private_ip: str | None = None
    error: str | None = None
    stop_reason: str | None = None
    token: str | None = None
    """The secret a request to the session's route must carry (routing on); owner only."""
    route: str | None = None
    """Its target group and rules while routed (``sessions.routing.Route.stored``)."""
    last_active_at: float | None = None
    """The latest use besides heartbeats: when it began running (its idle clock starts
    then), the latest routed request or container activity line the reaper found
    (``sessions.activity``)."""

    @property
    def last_used_at(self) -> float:
        return max(self.last_heartbeat_at, self.last_active_at or 0.0)

    @property
    def idle_deadline(self) -> float:
        return self.last_used_at + self.idle_timeout_seconds

    def moved(self, status: Status, now: float, **changes: Any) -> Session:
        return replace(self, status=status, updated_at=now, **changes)


@dataclass(frozen=True)
class Volume:
    """A user's persistent volume of one profile (``sessions.storage`` makes them)."""

    user: str
    profile: str
    generation: str
    """Its own name under the user's profile directory: a wiped volume's successor never
    reuses its directory."""
    access_point_id: str
    task_definition: str
    """The user's revision."""
    base: str
    """The profile's task definition it copies (a stack update changes it)."""
    created_at: float
    last_used_at: float


# --- API models ------------------------------------------------------------------------------


class CreateSession(BaseModel):
    # strict: a number must be a JSON integer, never "60", true or 1e2
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"profile": "default", "ttl_seconds": 3600}]},
    )

    profile: str = Field(
        default="default",
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="A profile from the deployment's settings.",
    )
    ttl_seconds: int | None = Field(
        default=None,
        gt=0,
        description="Session lifetime; defaults to the profile's, may not exceed its maximum.",
    )


class SessionOut(BaseModel):
    id: str
    user: str
    profile: str
    status: Status
    private_ip: str | None
    port: int
    task_arn: str | None
    created_at: str
    updated_at: str
    expires_at: str
    last_heartbeat_at: str
    last_active_at: str | None = Field(
        default=None,
        description="The latest use besides heartbeats: when it began running, the latest "
        "request through its route or activity line from its container the reaper saw",
    )
    idle_expires_at: str
    error: str | None
    stop_reason: str | None = Field(
        default=None,
        description="Why it stopped: by its owner, or by berth (ttl expired, idle, over "
        "budget) or ECS",
    )
    url: str | None = Field(
        default=None, description="Where a browser reaches it (routing on): send the token"
    )
    token: str | None = Field(
        default=None,
        description="Only in the owner's answers to POST, GET one and POST .../token: a "
        "request to url must carry it, as a berth-session cookie or an X-Berth-Session-Token "
        "header",
    )

    @classmethod
    def of(cls, session: Session, url: str | None = None, token: str | None = None) -> SessionOut:
        return cls(
            id=session.id,
            user=session.user,
            profile=session.profile,
            status=session.status,
            private_ip=session.private_ip,
            port=session.port,
            task_arn=session.task_arn,
            created_at=iso(session.created_at) or "",
            updated_at=iso(session.updated_at) or "",
            expires_at=iso(session.expires_at) or "",
            last_heartbeat_at=iso(session.last_heartbeat_at) or "",
            last_active_at=iso(session.last_active_at),
            idle_expires_at=iso(session.idle_deadline) or "",
            error=session.error,
            stop_reason=session.stop_reason,
            url=url,
            token=token,
        )


class SessionList(BaseModel):
    items: list[SessionOut]
    next_token: str | None = None


class ProfileOut(BaseModel):
    """A session profile callers may start (``POST /sessions {"profile": name}``)."""

    name: str
    port: int
    default_ttl_seconds: int
    max_ttl_seconds: int
    idle_timeout_seconds: int
    warm_pool: int = Field(description="Tasks kept started for this profile (0: none).")
    storage_path: str | None = Field(
        default=None,
        description="Where its sessions find the caller's persistent volume (none: no volume; "
        "the container's files end with it)",
    )


class ProfileList(BaseModel):
    items: list[ProfileOut]


class LogLineOut(BaseModel):
    at: str = Field(description="When the container wrote it (UTC)")
    message: str


class LogPage(BaseModel):
    """Lines oldest first. ``next_token`` continues after the last one: ask again with it to
    follow the container (the same token comes back while it writes nothing new)."""

    items: list[LogLineOut]
    next_token: str | None = None


class VolumeOut(BaseModel):
    """One of the caller's persistent volumes: what sessions of its profile find at ``path``."""

    profile: str
    path: str = Field(description="Where sessions of this profile see it")
    created_at: str
    last_used_at: str = Field(description="When a session last started with it")


class VolumeList(BaseModel):
    items: list[VolumeOut]
