"""Synthesizes the app once per test session; tests read the template, never re-synthesize."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.app import build_app, project_context
from infra.stack import BerthStack

ASSET_HASH = re.compile(r"[0-9a-f]{64}")


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


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default deployment, exactly as ``cdk synth`` builds it from cdk.json."""
    return synthesize(project_context(), tmp_path_factory.mktemp("cdk.out"))


def mask_asset_hashes(value: Any) -> Any:
    """Asset hashes change with every code edit; the snapshot guards structure, not bytes."""
    if isinstance(value, dict):
        return {key: mask_asset_hashes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_asset_hashes(item) for item in value]
    if isinstance(value, str):
        return ASSET_HASH.sub("<asset-hash>", value)
    return value
