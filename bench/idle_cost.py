"""What the default stack costs in a month when nobody uses it, item by item (us-east-1).

Usage: ``.venv/bin/python bench/idle_cost.py``

Two sources, both from this run:

- **the synthesized template** (default settings, ``cdk.json``): what exists whether or not
  anyone calls — schedules and their rates, function memory, alarms, dashboards, keys, NAT
  gateways, endpoints, public addresses, always-on services;
- **one idle run of each scheduled function**: the template deployed into the emulator
  (moto), each function run in a fresh interpreter with its deployed environment, then once
  more warm (a function run every minute stays warm); measured: the bytes it logs, the
  metrics it publishes (embedded metric format lines), the AWS calls it makes, how long the
  warm run takes.

A month of idleness is those runs repeated at their schedules' rates, priced with the public
list prices below (no free tier counted, except CloudWatch's 3 free dashboards per account,
shown on its own line). Beside it, the baseline an always-on design pays: a NAT gateway and
one always-on Fargate task (0.25 vCPU, 0.5 GB, arm64). Target: at most $0.50 a month.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOURS = 730  # a month
MINUTES = HOURS * 60
# Public list prices, us-east-1 (USD), as of 2026.
LAMBDA_GB_SECOND = 0.0000133334  # arm64
LAMBDA_REQUEST = 0.20 / 1e6
LOGS_INGEST_GB = 0.50
LOG_EVENT_OVERHEAD = 26  # bytes CloudWatch Logs counts per event
PLATFORM_LINES_BYTES = 350  # Lambda's own START/END/REPORT lines per invocation
CUSTOM_METRIC = 0.30  # per metric (name + dimensions) a month
XRAY_TRACE = 5.00 / 1e6
ALARM = 0.10
DASHBOARD = 3.00  # beyond the 3 free per account
KMS_KEY = 1.00
SECRET = 0.40
NAT_GATEWAY_HOUR = 0.045
INTERFACE_ENDPOINT_HOUR = 0.01  # per AZ
PUBLIC_IPV4_HOUR = 0.005
DYNAMODB_READ = 0.125 / 1e6  # on demand, per read request unit
DYNAMODB_WRITE = 0.625 / 1e6
SQS_FIFO_REQUEST = 0.50 / 1e6
SQS_REQUEST = 0.40 / 1e6
FARGATE_VCPU_HOUR = 0.03238  # arm64
FARGATE_GB_HOUR = 0.00356
EFS_STANDARD_GB_MONTH = 0.30
EFS_IA_GB_MONTH = 0.016  # Infrequent Access, after sessions.storage_ia_days untouched
EFS_MOUNT_TARGET = 0.0  # mount targets, access points and an empty file system are free
IDLE_STORED_GB = 0.0  # an idle stack holds no user's files: EFS bills stored bytes only
BUDGET = 0.50
FREE_CALLS = {"ecs", "events", "sts"}  # ECS control plane calls are not charged
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}

RUNNER = r"""
import collections, json, os, sys, time
import botocore.client

calls = collections.Counter()
make_api_call = botocore.client.BaseClient._make_api_call

def counted(self, operation, params):
    calls[f"{self.meta.service_model.service_name}:{operation}"] += 1
    return make_api_call(self, operation, params)

botocore.client.BaseClient._make_api_call = counted
sys.path.insert(0, sys.argv[1])
module, function = sys.argv[2].rsplit(".", 1)
handler = getattr(__import__(module, fromlist=[function]), function)

class Context:
    function_name = sys.argv[3]
    aws_request_id = "idle"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + sys.argv[3]
    def get_remaining_time_in_millis(self):
        return 60000

event = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
         "detail": {}, "resources": []}
handler(event, Context())  # the cold run: imports, clients
calls.clear()
print("---warm---", flush=True)
print("---warm---", file=sys.stderr, flush=True)
started = time.perf_counter()
handler(event, Context())
elapsed = time.perf_counter() - started
print("---measured---" + json.dumps({"seconds": elapsed, "calls": calls}), flush=True)
"""


@dataclass
class IdleRun:
    function: str
    handler: str
    memory_mb: int
    per_month: float
    traced: bool
    seconds: float = 0.0
    log_events: list[str] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def log_bytes(self) -> int:
        return PLATFORM_LINES_BYTES + sum(len(e) + LOG_EVENT_OVERHEAD for e in self.log_events)


def synthesize(outdir: Path) -> tuple[Path, str]:
    from infra.app import build_app
    from infra.settings import project_context

    app, stack = build_app(project_context(), outdir=str(outdir))
    app.synth()
    return outdir, stack.artifact_id


def per_month(expression: str) -> float:
    found = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if not found:
        raise ValueError(f"unpriced schedule {expression!r}")
    every = int(found.group(1)) * {"m": 1, "h": 60, "d": 1440}[found.group(2)[0]]
    return MINUTES / every


def scheduled(template: dict[str, Any]) -> dict[str, float]:
    """Scheduled function (logical id) → runs a month."""
    runs: dict[str, float] = {}
    for rule in template["Resources"].values():
        props = rule["Properties"] if rule["Type"] == "AWS::Events::Rule" else {}
        if "ScheduleExpression" in props and props.get("State", "ENABLED") == "ENABLED":
            for target in props["Targets"]:
                function = target["Arn"]["Fn::GetAtt"][0]
                runs[function] = runs.get(function, 0) + per_month(props["ScheduleExpression"])
    return runs


def run_idle(assembly: Path, stack: str, template: dict[str, Any]) -> list[IdleRun]:
    from infra.sandbox.emulator import Emulator, deploy
    from infra.sandbox.moto_bridges import (
        enable_execution,
        fix_ecs_integration,
        keep_fifo_promises,
    )

    keep_fifo_promises()
    emulator = Emulator().start()
    try:
        enable_execution(emulator.endpoint)
        fix_ecs_integration()
        deployment = deploy(emulator, assembly, stack)
        runs = []
        for logical_id, rate in sorted(scheduled(template).items()):
            props = template["Resources"][logical_id]["Properties"]
            described = deployment.functions[logical_id]
            run = IdleRun(
                function=logical_id,
                handler=described["handler"],
                memory_mb=int(props.get("MemorySize", 128)),
                per_month=rate,
                traced=props.get("TracingConfig", {}).get("Mode") == "Active",
            )
            measure(run, described, emulator.endpoint)
            runs.append(run)
        return runs
    finally:
        emulator.stop()


def measure(run: IdleRun, described: dict[str, Any], endpoint: str) -> None:
    env = {
        **described["environment"],
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "idle",
        "AWS_SECRET_ACCESS_KEY": "idle",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": described["name"],  # as on Lambda (Powertools reads it)
    }
    code = described["code_path"] or ROOT / "functions"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(code), run.handler, described["name"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or "---measured---" not in result.stdout:
        raise RuntimeError(f"{run.handler} failed idle:\n{result.stderr[-2000:]}")
    output = result.stdout.split("---warm---\n", 1)[1]
    lines, measured = output.split("---measured---")
    numbers = json.loads(measured)
    run.seconds = float(numbers["seconds"])
    run.calls = dict(numbers["calls"])
    # What the warm run wrote (stdout and stderr) is what CloudWatch Logs ingests, a line
    # an event.
    errors = result.stderr.split("---warm---\n", 1)[1]
    run.log_events = [line for line in (lines + errors).splitlines() if line.strip()]
    for line in run.log_events:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" in record:
            for directive in record["_aws"].get("CloudWatchMetrics", []):
                run.metrics |= {m["Name"] for m in directive.get("Metrics", [])}


def call_cost(service_operation: str, count: float) -> float:
    service, operation = service_operation.split(":")
    if service in FREE_CALLS:
        return 0.0
    if service == "dynamodb":
        return count * (DYNAMODB_WRITE if operation in DYNAMODB_WRITES else DYNAMODB_READ)
    if service == "sqs":
        return count * SQS_FIFO_REQUEST  # berth's queues are FIFO (the dearer price)
    raise ValueError(f"no price for {service_operation}")


def count(template: dict[str, Any], type_name: str) -> int:
    return sum(1 for r in template["Resources"].values() if r["Type"] == type_name)


def fixed_items(template: dict[str, Any]) -> list[tuple[str, float]]:
    resources = template["Resources"].values()
    endpoints = [
        r
        for r in resources
        if r["Type"] == "AWS::EC2::VPCEndpoint"
        and r["Properties"].get("VpcEndpointType") == "Interface"
    ]
    azs = sum(len(e["Properties"].get("SubnetIds", [])) for e in endpoints)
    always_on = [
        r
        for r in resources
        if r["Type"] == "AWS::ECS::Service" and r["Properties"].get("DesiredCount", 1) > 0
    ]
    return [
        (f"NAT gateways ({count(template, 'AWS::EC2::NatGateway')})",
         count(template, "AWS::EC2::NatGateway") * NAT_GATEWAY_HOUR * HOURS),
        (f"interface endpoints ({len(endpoints)}, {azs} AZ-hours/h)",
         azs * INTERFACE_ENDPOINT_HOUR * HOURS),
        (f"elastic IPs ({count(template, 'AWS::EC2::EIP')})",
         count(template, "AWS::EC2::EIP") * PUBLIC_IPV4_HOUR * HOURS),
        (f"always-on ECS services ({len(always_on)})", 0.0 if not always_on else float("nan")),
        (f"customer KMS keys ({count(template, 'AWS::KMS::Key')})",
         count(template, "AWS::KMS::Key") * KMS_KEY),
        (f"secrets ({count(template, 'AWS::SecretsManager::Secret')})",
         count(template, "AWS::SecretsManager::Secret") * SECRET),
        (f"alarms ({count(template, 'AWS::CloudWatch::Alarm')})",
         count(template, "AWS::CloudWatch::Alarm") * ALARM),
        (f"session volumes' file systems ({count(template, 'AWS::EFS::FileSystem')}, "
         f"{count(template, 'AWS::EFS::MountTarget')} mount targets), holding no data",
         IDLE_STORED_GB * EFS_STANDARD_GB_MONTH
         + count(template, "AWS::EFS::MountTarget") * EFS_MOUNT_TARGET),
    ]  # fmt: skip


def idle_items(runs: list[IdleRun]) -> list[tuple[str, float]]:
    items = []
    for run in runs:
        n = run.per_month
        name = run.handler.removesuffix(".handler")
        gb_seconds = n * max(run.seconds, 0.001) * run.memory_mb / 1024
        items += [
            (f"{name}: {n:,.0f} runs, {run.seconds * 1000:.0f} ms at {run.memory_mb} MB",
             n * LAMBDA_REQUEST + gb_seconds * LAMBDA_GB_SECOND),
            (f"{name}: logs {run.log_bytes} B/run ({len(run.log_events)} lines of its own)",
             n * run.log_bytes / 1e9 * LOGS_INGEST_GB),
            (f"{name}: custom metrics ({len(run.metrics)})", len(run.metrics) * CUSTOM_METRIC),
            (f"{name}: traces ({'every run' if run.traced else 'none'})",
             n * XRAY_TRACE if run.traced else 0.0),
            (f"{name}: AWS calls/run {sum(run.calls.values())} ({', '.join(sorted(run.calls))})",
             sum(call_cost(op, n * c) for op, c in run.calls.items())),
        ]  # fmt: skip
    return items


def baseline() -> float:
    task = (0.25 * FARGATE_VCPU_HOUR + 0.5 * FARGATE_GB_HOUR) * HOURS
    return NAT_GATEWAY_HOUR * HOURS + PUBLIC_IPV4_HOUR * HOURS + task


def main() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    with tempfile.TemporaryDirectory(prefix="berth-idle-") as tmp:
        assembly, stack = synthesize(Path(tmp) / "cdk.out")
        template = json.loads((assembly / f"{stack}.template.json").read_text())
        runs = run_idle(assembly, stack, template)
    items = fixed_items(template) + idle_items(runs)
    width = max(len(name) for name, _ in items)
    print(f"A month of idleness, default settings ({len(runs)} scheduled functions)\n")
    for name, dollars in items:
        print(f"  {name:<{width}}  ${dollars:8.4f}")
    total = sum(dollars for _, dollars in items)
    dashboards = count(template, "AWS::CloudWatch::Dashboard")
    print(f"\n  {'idle month, berth':<{width}}  ${total:8.4f}  (budget ${BUDGET:.2f})")
    print(
        f"  dashboards ({dashboards}): free within CloudWatch's 3 per account, "
        f"${DASHBOARD:.2f} each beyond"
    )
    print("  not priced: ECR storage of the images (their size is known after docker build)")
    print(
        f"  users' data: ${EFS_STANDARD_GB_MONTH:.2f} per GB-month while used, "
        f"${EFS_IA_GB_MONTH:.3f} once untouched for sessions.storage_ia_days (Infrequent Access)"
    )
    base = baseline()
    print(f"  {'baseline: NAT gateway + one always-on task':<{width}}  ${base:8.4f}")
    print(f"\nratio berth idle / baseline: {total / base:.4f}x")
    print(f"idle month: ${total:.4f}")


if __name__ == "__main__":
    main()
