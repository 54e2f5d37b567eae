"""What one ``checksum`` and one ``render`` job cost at default sizes, from the template.

Usage: ``.venv/bin/python bench/job_cost.py [rounds]`` (default 3: each job's runner is timed
that many times, the median counts). Synthesizes the app, reads the chooser's
definition (state transitions on each job's success path), the job function's memory and
the job task definition's CPU/memory, times each job's runner on its default input here
(the same code the images run), and prices it with the public on-demand prices below.
Prints each job's cost and the render/checksum ratio measured in the same run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "containers" / "jobs")]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from berth_jobs.catalog import JOBS  # noqa: E402
from infra.app import build_app  # noqa: E402
from infra.settings import project_context  # noqa: E402

# us-east-1 on-demand list prices (2026), arm64 where it applies.
STEP_FUNCTIONS_PER_TRANSITION = 0.000025
LAMBDA_ARM_PER_GB_SECOND = 0.0000133334
LAMBDA_PER_REQUEST = 0.20 / 1_000_000
FARGATE_ARM_PER_VCPU_HOUR = 0.03238
FARGATE_ARM_PER_GB_HOUR = 0.00356
FARGATE_MINIMUM_SECONDS = 60

DEFAULT_INPUTS: dict[str, dict[str, Any]] = {"checksum": {"text": "hello berth"}, "render": {}}


def success_path(states: dict[str, Any], job: str) -> list[str]:
    """The states a successful execution of ``job`` enters, in order."""
    path, name = [], "Valid input?"
    while True:
        path.append(name)
        state = states[name]
        if state["Type"] == "Succeed":
            return path
        if name == "Known job?":
            name = next(c["Next"] for c in state["Choices"] if c["StringEquals"] == job)
        elif name == "Choose runtime":
            runtime = states[f"Job {job}"]["Parameters"]["runtime"]
            name = next(c["Next"] for c in state["Choices"] if c["StringEquals"] == runtime)
        elif state["Type"] == "Choice":
            name = state["Choices"][0]["Next"]
        else:
            name = state["Next"]


def time_job(name: str, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as workdir:
            began = time.perf_counter()
            JOBS[name](DEFAULT_INPUTS[name], Path(workdir))
            times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as out:
        app, stack = build_app(project_context(), outdir=out)
        app.synth()
        template = json.loads((Path(out) / f"{stack.artifact_id}.template.json").read_text())
    resources = template["Resources"]
    (machine,) = [  # the job chooser (the instances' workflow is another state machine)
        r
        for key, r in resources.items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and key.startswith("Jobs")
    ]
    text = "".join(
        p if isinstance(p, str) else "x"
        for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    )
    states = json.loads(text)["States"]
    (function,) = [
        r
        for k, r in resources.items()
        if k.startswith("JobsJobFunction") and r["Type"] == "AWS::Lambda::Function"
    ]
    lambda_gb = function["Properties"]["MemorySize"] / 1024
    costs = {}
    for job, settings in stack.settings.jobs.catalogue.items():
        transitions = len(success_path(states, job))
        seconds = time_job(job, rounds)
        sfn_cost = transitions * STEP_FUNCTIONS_PER_TRANSITION
        if settings.runtime == "lambda":
            gb_seconds = lambda_gb * math.ceil(seconds * 1000) / 1000
            compute = gb_seconds * LAMBDA_ARM_PER_GB_SECOND + LAMBDA_PER_REQUEST
            detail = f"{gb_seconds:.3f} Lambda GB-s ({lambda_gb:g} GB x {seconds:.3f} s)"
        else:
            billed = max(seconds, FARGATE_MINIMUM_SECONDS)
            vcpu_seconds = settings.cpu / 1024 * billed
            gb_seconds = settings.memory / 1024 * billed
            compute = (
                vcpu_seconds * FARGATE_ARM_PER_VCPU_HOUR + gb_seconds * FARGATE_ARM_PER_GB_HOUR
            ) / 3600
            detail = (
                f"{vcpu_seconds:.1f} Fargate vCPU-s + {gb_seconds:.1f} GB-s "
                f"(ran {seconds:.2f} s, billed {billed:.0f} s minimum)"
            )
        costs[job] = sfn_cost + compute
        print(
            f"{job:<9} {settings.runtime:<8} {transitions} transitions (${sfn_cost:.7f}) + "
            f"{detail} (${compute:.7f}) = ${costs[job]:.7f} per job"
        )
    if {"checksum", "render"} <= set(costs):
        print(f"ratio render / checksum: {costs['render'] / costs['checksum']:.1f}x")


if __name__ == "__main__":
    main()
