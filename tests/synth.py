"""Synthesizes the app once per test session (per xdist worker); tests read the template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Template

from infra.app import build_app
from infra.settings import project_context
from infra.stack import BerthStack

ASSET_HASH = re.compile(r"[0-9a-f]{64}")

# The settings infra tests build the app from — their own, not the operator's cdk.json, so
# adding a profile or a job there changes no test. (cdk.json's feature flags and the committed
# lookups still come from the project: they are CDK's behaviour, not berth's settings.)
TEST_SETTINGS: dict[str, Any] = {
    "prefix": "berth",
    "vpc": {"mode": "create", "task_subnets": "public"},
    "sessions": {
        "profiles": {
            "default": {
                "image": "echo",
                "cpu": 256,
                "memory": 512,
                "port": 8080,
                "default_ttl_seconds": 3600,
                "max_ttl_seconds": 28800,
            },
            "chroma": {
                "image": "chroma",
                "cpu": 512,
                "memory": 1024,
                "port": 8000,
                "default_ttl_seconds": 3600,
                "max_ttl_seconds": 28800,
                "storage": {"path": "/data"},
            },
        }
    },
    "jobs": {
        "catalogue": {
            "checksum": {"runtime": "lambda", "timeout_seconds": 60, "memory": 512},
            "render": {"runtime": "fargate", "timeout_seconds": 1800, "cpu": 1024, "memory": 2048},
        },
        "result_url_seconds": 300,
    },
    "limits": {"max_sessions_per_user": 3, "max_worker_tasks": 10},
    "storage": {"removal_policy": "retain", "object_expiry_days": 90},
    "logs": {"retention_days": 30, "level": "INFO"},
}


def deployment_context(**overrides: Any) -> dict[str, Any]:
    """The CDK context of the test deployment, with ``berth:<dotted.key>`` overrides."""
    flags = {k: v for k, v in project_context().items() if not k.startswith("berth")}
    return flags | {"berth": TEST_SETTINGS} | {f"berth:{k}": v for k, v in overrides.items()}


@dataclass
class Synth:
    stack: BerthStack
    template: Template
    data: dict[str, Any]
    outdir: Path

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {
            key: value
            for key, value in self.data["Resources"].items()
            if value["Type"] == type_name
        }


def synthesize(context: dict[str, Any], outdir: Path) -> Synth:
    app, stack = build_app(context, outdir=str(outdir))
    app.synth()
    data = json.loads((outdir / f"{stack.artifact_id}.template.json").read_text())
    return Synth(stack=stack, template=Template.from_json(data), data=data, outdir=outdir)


def mask_asset_hashes(value: Any) -> Any:
    """Asset hashes change with every code edit; the snapshot guards structure, not bytes."""
    if isinstance(value, dict):
        return {key: mask_asset_hashes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_asset_hashes(item) for item in value]
    if isinstance(value, str):
        return ASSET_HASH.sub("<asset-hash>", value)
    return value
