"""The sessions functions' environment (infra/sessions.py renders it with ``environment()``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, Json

from shared.config import EnvModel, Ids


class Profile(BaseModel):
    """What a session of this profile runs (rendered by infra from the settings)."""

    task_definition: str
    container: str
    port: int
    cpu: int = 256
    """Fargate CPU units and memory (MiB): what its usage is priced by."""
    memory: int = 512
    default_ttl_seconds: int
    max_ttl_seconds: int
    idle_timeout_seconds: int
    health_check_path: str = "/"
    warm_pool: int = 0
    max_warm_seconds: int = 3600
    warm_windows: list[str] = []
    storage_path: str | None = None
    """Where the user's persistent volume is mounted (``sessions.storage``); None: no volume."""
    log_group: str | None = None
    """Where its containers' output goes (awslogs; stream ``<profile>/session/<task id>``)."""
    activity_marker: str | None = None
    """A container output line holding this word counts as use of the session (the reaper)."""


class SessionsConfig(EnvModel):
    sessions_table: str
    cluster_arn: str
    task_subnets: Ids
    task_security_groups: Ids
    assign_public_ip: bool
    profiles: Json[dict[str, Profile]]
    max_sessions_per_user: int = Field(ge=1)
    reaper_dry_run: bool
    connections_table: str | None = None
    websocket_endpoint: str | None = None
    routing_listener_arn: str | None = None
    """Set when routing is on (``routing.mode: alb``): the HTTPS listener sessions get rules on."""
    routing_vpc_id: str | None = None
    routing_domain: str | None = None
    routing_tag: str | None = None
    routing_url_format: str = "https://{host}/"
    """A session's url from its host (make local's router: ``http://{host}:<port>/``)."""
    max_routes: int = 0
    activity_period_seconds: int = Field(default=60, ge=1)
    """The resolution of a route's request counts (the load balancer's: a minute; make local's
    router publishes per second)."""
    storage_file_system: str | None = None
    """The EFS file system holding users' volumes (set when a profile keeps storage)."""
