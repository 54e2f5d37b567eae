"""The instances functions' environment (infra/instances.py renders it)."""

from __future__ import annotations

from pydantic import Field

from shared.config import EnvModel, Ids


class InstancesConfig(EnvModel):
    """Every value comes from infra (settings hold the defaults, not this model)."""

    instances_table: str
    state_machine_arn: str = ""
    """Only the API function starts the workflow (the workflow's own step has none)."""
    launch_template_id: str
    subnets: Ids
    document_name: str
    aggregator_url: str
    app_tag: str
    max_instances_per_user: int = Field(ge=1)
    running_timeout_seconds: int = Field(ge=1)
    ssm_timeout_seconds: int = Field(ge=1)
    command_timeout_seconds: int = Field(ge=1)
    terminate_on_failure: bool
