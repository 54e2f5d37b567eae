"""The instances functions' environment (infra/instances.py renders it)."""

from __future__ import annotations

from shared.config import EnvModel


class InstancesConfig(EnvModel):
    instances_table: str
    state_machine_arn: str = ""
    launch_template_id: str
    subnet_ids: str
    document_name: str
    aggregator_url: str
    app_tag: str
    max_instances_per_user: int = 2
    running_timeout_seconds: int = 300
    ssm_timeout_seconds: int = 300
    command_timeout_seconds: int = 900
    terminate_on_failure: bool = True

    @property
    def subnets(self) -> list[str]:
        return [s for s in self.subnet_ids.split(",") if s]
