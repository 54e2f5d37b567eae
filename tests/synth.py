"""Synthesizes the app once per test session (per xdist worker); tests read the template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Template

from infra.app import build_app
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


def mask_asset_hashes(value: Any) -> Any:
    """Asset hashes change with every code edit; the snapshot guards structure, not bytes."""
    if isinstance(value, dict):
        return {key: mask_asset_hashes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_asset_hashes(item) for item in value]
    if isinstance(value, str):
        return ASSET_HASH.sub("<asset-hash>", value)
    return value
