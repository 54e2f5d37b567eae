"""The deploy workflow puts staging and its smoke stage before production."""

from __future__ import annotations

from typing import Any

import yaml

from infra.settings import ROOT


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_production_deploys_only_after_the_smoke_stage_passed_against_staging() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    staging, production = workflow["jobs"]["staging"], workflow["jobs"]["production"]
    assert production["needs"] == "staging"
    steps = runs(staging)
    assert (
        steps.index("make test")
        < steps.index('make deploy CDK_ARGS="--all -c berth:prefix=berth-staging"')
        < steps.index("make smoke")
    )
    assert staging["env"]["BERTH_STACK"] == "berth-staging"  # the stack just deployed
    assert runs(production)[0] == 'make deploy CDK_ARGS="--all"'
