"""The local sandbox: synthesize berth, deploy it into the emulator, serve its API locally."""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from berth_client.client import LOCAL_STATE as LOCAL_STATE_NAME
from infra.app import build_app
from infra.sandbox.bridges import EventBridge
from infra.sandbox.containers import LocalTaskRunner, images_of
from infra.sandbox.emulator import (
    ACCOUNT,
    REGION,
    Deployment,
    Emulator,
    deploy,
)
from infra.sandbox.events import local_user_arn
from infra.sandbox.faults import FaultPlan
from infra.sandbox.gateway import GatewayServer, routes_of, serve
from infra.sandbox.lambdas import LocalFunction
from infra.sandbox.moto_bridges import (
    check,
    enable_execution,
    fix_ecs_integration,
    keep_fifo_promises,
    route_lambda_invocations,
    start_tasks_after,
)
from infra.sandbox.router import LocalRouter
from infra.sandbox.sigv4 import LocalCredentials, know_vended_credentials
from infra.sandbox.websocket import LocalWebSocketApi
from infra.settings import ROOT, Settings, project_context
from infra.workers import CREDENTIALS_PATH
from sessions.config import SessionsConfig
from shared.config import env_name

log = logging.getLogger("berth.sandbox")

LOCAL_STATE = ROOT / LOCAL_STATE_NAME
"""Where ``berth config --local`` finds the sandbox running in this checkout."""
SANDBOX_DIR = LOCAL_STATE.parent


@dataclass
class SandboxOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    websocket_port: int = 8081
    router_port: int = 8082
    """Where sessions are reached (``http://<session id>.berth.localhost:<port>/``)."""
    emulator_port: int = 0
    """0: any free port (the banner says which)."""
    concurrency: int = 4
    log_level: str = "WARNING"
    schedule_seconds: float | None = None
    task_start_seconds: float = 0.0
    """How long a task takes to reach RUNNING (0: at once; on AWS about a minute)."""
    context: dict[str, Any] = field(default_factory=dict)
    """Settings overrides (``{"berth:workers.lease_seconds": 6}``) on top of cdk.json."""
    faults: FaultPlan | None = None
    """AWS faults injected in front of the emulator (``BERTH_LOCAL_FAULTS``; off: None)."""

    @classmethod
    def from_env(cls) -> SandboxOptions:
        schedule = os.environ.get("BERTH_LOCAL_SCHEDULE_SECONDS")
        return cls(
            host=os.environ.get("BERTH_LOCAL_HOST", "127.0.0.1"),
            port=int(os.environ.get("BERTH_LOCAL_PORT", "8080")),
            websocket_port=int(os.environ.get("BERTH_LOCAL_WEBSOCKET_PORT", "8081")),
            router_port=int(os.environ.get("BERTH_LOCAL_ROUTER_PORT", "8082")),
            emulator_port=int(os.environ.get("BERTH_LOCAL_EMULATOR_PORT", "0")),
            concurrency=int(os.environ.get("BERTH_LOCAL_CONCURRENCY", "4")),
            log_level=os.environ.get("BERTH_LOCAL_LOG_LEVEL", "WARNING"),
            schedule_seconds=float(schedule) if schedule else None,
            task_start_seconds=float(os.environ.get("BERTH_LOCAL_TASK_START_SECONDS") or 0),
            context=json.loads(os.environ.get("BERTH_LOCAL_CONTEXT") or "{}"),
            faults=FaultPlan.parse(os.environ.get("BERTH_LOCAL_FAULTS") or "").or_none(),
        )


@dataclass
class Sandbox:
    options: SandboxOptions
    emulator: Emulator
    deployment: Deployment
    functions: dict[str, LocalFunction]
    events: EventBridge
    server: Any
    websocket: LocalWebSocketApi
    router: LocalRouter
    state: Path
    """This sandbox's own state folder (task scratch directories, task logs)."""
    command_user: int | None
    """The uid local workers run commands as; None: the sandbox's own user."""
    credentials: LocalCredentials
    config_file: Path
    credentials_file: Path
    """AWS config and credentials files with a profile per local user (SigV4)."""
    runner: LocalTaskRunner | None = None
    """Runs ECS tasks as local processes."""
    _thread: threading.Thread | None = field(default=None)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def router_url(self) -> str:
        host, port = self.router.address
        return f"http://{host}:{port}"

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        return self.functions[logical_id].invoke(event)

    def announce(self) -> dict[str, str]:
        """Writes ``LOCAL_STATE`` (for ``berth config --local``); returns what it says."""
        local = {
            "api_url": self.url,
            "websocket_url": self.websocket.url,
            "router_url": self.router_url,
            "region": REGION,
            "config_file": str(self.config_file),
            "credentials_file": str(self.credentials_file),
            "emulator": self.emulator.endpoint,
            "state": str(self.state),
        }
        LOCAL_STATE.write_text(json.dumps(local, indent=2))
        return local

    def serve_in_background(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.events.stop()  # first: a schedule firing now must not find the endpoints gone
        if self.runner is not None:
            self.runner.close()
        self.router.stop()
        self.websocket.stop()
        self.server.shutdown()
        self.server.server_close()
        for function in self.functions.values():
            function.close()
        self.emulator.stop()
        shutil.rmtree(self.state, ignore_errors=True)
        try:
            if json.loads(LOCAL_STATE.read_text()).get("state") == str(self.state):
                LOCAL_STATE.unlink()
        except (OSError, ValueError):
            pass


# Settings the sandbox changes from cdk.json: nobody wants to wait 10 s per poll locally.
LOCAL_ADMIN = "admin"
SANDBOX_CONTEXT = {
    "berth:instances.poll_seconds": 1,
    # make local's operator: X-Berth-User admin (profile berth-local-admin) may call /admin
    "berth:usage.admins": [local_user_arn(LOCAL_ADMIN)],
}


def websocket_function(deployment: Deployment, kind: str = "Integration") -> str:
    """The function the template integrates with the WebSocket API's routes (``kind``
    ``Authorizer``: the one that authorizes ``$connect``)."""
    found = {
        match.group(1)
        for resource in deployment.resources(f"AWS::ApiGatewayV2::{kind}").values()
        if (
            match := re.search(
                r'"Fn::GetAtt": \["([A-Za-z0-9]+)", "Arn"\]',
                json.dumps(resource["Properties"][f"{kind}Uri"]),
            )
        )
    }
    if len(found) != 1:
        raise ValueError(f"expected one WebSocket {kind.lower()} function, found {sorted(found)}")
    return found.pop()


def state_folder() -> Path:
    """A folder of this sandbox's own. Commands run as another user when the sandbox is root,
    so every folder above it must let others through; if the checkout's does not, the state
    goes to a private temporary folder instead."""
    folder = SANDBOX_DIR / "run" / f"{os.getpid()}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    if os.geteuid() == 0 and not all(
        p.stat().st_mode & stat.S_IXOTH for p in [folder, *folder.parents]
    ):
        shutil.rmtree(folder)
        folder = Path(tempfile.mkdtemp(prefix="berth-sandbox-"))
        folder.chmod(0o711)
    return folder


UIDS_PER_SANDBOX = 4096


def worker_identities(
    deployment: Deployment, credentials: LocalCredentials
) -> Callable[[str], dict[str, str]]:
    """Each worker task signs as its task role's session named by its id (as on ECS), and the
    tenant role's sessions the credentials route vends may post frames."""
    vending = next(
        described["environment"]
        for described in deployment.functions.values()
        if env_name("worker_role_name") in described["environment"]
    )
    know_vended_credentials(credentials, {vending[env_name("tenant_role_arn")].rsplit("/", 1)[-1]})
    role = vending[env_name("worker_role_name")]

    def identity(task_id: str) -> dict[str, str]:
        key = credentials.issue(f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{task_id}")
        return {"AWS_ACCESS_KEY_ID": key.access_key, "AWS_SECRET_ACCESS_KEY": key.secret}

    return identity


def command_uid() -> int | None:
    """When root: the first of ``UIDS_PER_SANDBOX`` uids no account on this machine has, for
    local workers' commands (the image's own ``berth-run`` uid may be a real person here),
    and no other sandbox uses — derived from this process's id, which no other running
    process shares. Otherwise None."""
    if os.geteuid() != 0:
        return None
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    first = 1_000_000 + (os.getpid() % 2**18) * UIDS_PER_SANDBOX
    if taken & set(range(first, first + UIDS_PER_SANDBOX)):
        raise RuntimeError(f"uids {first}.. are taken by accounts here; cannot fence commands")
    return first


LOCAL_DOMAIN = "berth.localhost"
"""Sessions are ``<session id>.berth.localhost`` (``*.localhost`` is the loopback)."""


def local_routing(emulator: Emulator, deployment: Deployment) -> dict[str, str]:
    """A load balancer and listener in the emulator, in the deployed VPC, for the sessions
    functions to put routes on (what ``routing.mode: alb`` deploys on AWS)."""
    ec2, elbv2 = emulator.client("ec2"), emulator.client("elbv2")
    (vpc,) = deployment.resources("AWS::EC2::VPC")
    vpc_id = deployment.physical[vpc]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    by_zone = {subnet["AvailabilityZone"]: subnet["SubnetId"] for subnet in subnets}
    balancer = elbv2.create_load_balancer(
        Name=f"{deployment.stack_name}-routing", Subnets=sorted(by_zone.values())[:2]
    )["LoadBalancers"][0]["LoadBalancerArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "ContentType": "application/json"},
            }
        ],
    )["Listeners"][0]["ListenerArn"]
    return {"listener_arn": listener, "vpc_id": vpc_id, "tag": deployment.stack_name}


def synthesize(outdir: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, Settings]:
    """The template the sandbox deploys, and the settings it was made from."""
    context = project_context() | SANDBOX_CONTEXT | (overrides or {})
    app, stack = build_app(context, outdir=str(outdir))
    app.synth()
    return outdir / f"{stack.artifact_id}.template.json", stack.settings


Progress = Callable[[str], None]


def start(options: SandboxOptions, progress: Progress = lambda _: None) -> Sandbox:
    started = time.monotonic()
    state = state_folder()
    try:
        return _start(options, state, started, progress)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise


def _start(options: SandboxOptions, state: Path, started: float, progress: Progress) -> Sandbox:
    """The template deployed into the emulator, then what stands in for AWS around it: the
    gateway and the WebSocket, the functions, the task runner and router, EventBridge."""
    assembly = state / "cdk.out"
    emulator, deployment, settings = _deploy(options, state, assembly, progress)
    credentials = LocalCredentials()
    config_file, credentials_file = credentials.write(state)
    aws_env = _aws_env(emulator, credentials)
    functions: dict[str, LocalFunction] = {}

    def invoke(logical_id: str, event: dict[str, Any]) -> Any:
        return functions[logical_id].invoke(event)

    websocket = LocalWebSocketApi(
        options.host,
        options.websocket_port,
        partial(invoke, websocket_function(deployment)),
        partial(invoke, websocket_function(deployment, "Authorizer")),
    )
    server = serve(
        options.host, options.port, routes_of(deployment), invoke, credentials, websocket.post
    )
    local_endpoints = _local_endpoints(server, websocket)
    uid = command_uid()
    runner = LocalTaskRunner(
        emulator,
        images_of(assembly, deployment.stack_name, state / "images"),
        state,
        overrides=local_endpoints,
        aws_env=aws_env,
        command_uids=range(uid, uid + UIDS_PER_SANDBOX) if uid is not None else None,
        task_identity=worker_identities(deployment, credentials),
    )
    routing = local_routing(emulator, deployment)
    router = _router(options, emulator, routing, runner)
    environment = {**aws_env, **BASE_ENV, "POWERTOOLS_LOG_LEVEL": options.log_level}
    local_routes = _local_routes(routing, router.address[1], settings.routing.max_routes)
    for logical_id, described in deployment.functions.items():
        functions[logical_id] = _local_function(
            options, described, environment, local_endpoints, local_routes
        )
    events = _events(emulator, deployment, invoke, functions, options, runner)
    websocket.start()
    for function in functions.values():
        function.warm()
    log.info("sandbox ready in %.1f s", time.monotonic() - started)
    if emulator.faults is not None:  # from now on: the template is deployed, the API serves
        emulator.faults.enable()
    return Sandbox(
        options,
        emulator,
        deployment,
        functions,
        events,
        server,
        websocket,
        router,
        state,
        uid,
        credentials,
        config_file,
        credentials_file,
        runner=runner,
    )


def _aws_env(emulator: Emulator, credentials: LocalCredentials) -> dict[str, str]:
    """The sandbox's own credential: the emulator takes any, the gateway this one."""
    return {
        "AWS_ENDPOINT_URL": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": credentials.sandbox.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.sandbox.secret,
        "AWS_DEFAULT_REGION": REGION,
    }


def _router(
    options: SandboxOptions, emulator: Emulator, routing: dict[str, str], runner: LocalTaskRunner
) -> LocalRouter:
    """The local stand-in for the routing load balancer, started."""
    return LocalRouter(
        options.host,
        options.router_port,
        emulator.client("elbv2"),
        routing["listener_arn"],
        runner.address_of,
        emulator.client("cloudwatch"),
    ).start()


BASE_ENV = {
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}
"""Every local function's environment beside the template's and the sandbox's credential."""


def _deploy(
    options: SandboxOptions, state: Path, assembly: Path, progress: Progress
) -> tuple[Emulator, Deployment, Settings]:
    """``cdk synth``, the emulator started with its bridges, the template deployed into it."""
    progress("synthesizing the app (cdk synth)")
    template_path, settings = synthesize(assembly, options.context)
    stack_name = template_path.name.removesuffix(".template.json")
    check()  # every moto internal the bridges rely on is still there
    keep_fifo_promises()
    emulator = Emulator(
        port=options.emulator_port,
        faults=options.faults,
        fault_log=SANDBOX_DIR / f"faults-{state.name}.jsonl",  # kept after the run, to replay
    ).start()
    enable_execution(emulator.endpoint)
    fix_ecs_integration()
    start_tasks_after(options.task_start_seconds)
    progress(f"deploying the template into the emulator ({emulator.endpoint})")
    deployment = deploy(emulator, assembly, stack_name)
    progress(f"starting {len(deployment.functions)} functions")
    return emulator, deployment, settings


def _local_endpoints(server: GatewayServer, websocket: LocalWebSocketApi) -> dict[str, str]:
    """Functions and workers reach API Gateway's management API and the credentials route
    on the local gateway, and clients the local WebSocket."""
    host, port = server.server_address[:2]
    return {
        "BERTH_WEBSOCKET_ENDPOINT": f"http://{host!s}:{port}",
        "BERTH_WEBSOCKET_URL": websocket.url,
        env_name("credentials_url"): f"http://{host!s}:{port}{CREDENTIALS_PATH}",
    }


def _local_routes(routing: dict[str, str], router_port: int, max_routes: int) -> dict[str, str]:
    """What the sessions functions read of routing: the local router's listener and URLs."""
    return SessionsConfig.environment(
        routing_listener_arn=routing["listener_arn"],
        routing_vpc_id=routing["vpc_id"],
        routing_domain=LOCAL_DOMAIN,
        routing_tag=routing["tag"],
        routing_url_format=f"http://{{host}}:{router_port}/",
        max_routes=max_routes,
        activity_period_seconds=1,  # the router counts requests per second
    )


def _local_function(
    options: SandboxOptions,
    described: dict[str, Any],
    base: dict[str, str],
    local_endpoints: dict[str, str],
    local_routes: dict[str, str],
) -> LocalFunction:
    """One function with the template's environment, pointed at the local stand-ins."""
    environment = {**described["environment"], **base}
    if env_name("sessions_table") in environment:  # routed by the local router
        environment.update(local_routes)
    environment.update({k: v for k, v in local_endpoints.items() if k in environment})
    code_path = described["code_path"]
    return LocalFunction(
        described["name"],
        described["handler"],
        environment,
        options.concurrency,
        code_path=str(code_path) if code_path else None,
        timeout_seconds=described["timeout"],
    )


def _events(
    emulator: Emulator,
    deployment: Deployment,
    invoke: Callable[[str, dict[str, Any]], Any],
    functions: dict[str, LocalFunction],
    options: SandboxOptions,
    runner: LocalTaskRunner,
) -> EventBridge:
    """Lambda's Invoke routed to the local functions, and EventBridge's rules and schedules."""
    route_lambda_invocations(
        {
            described["name"]: functions[logical_id].invoke
            for logical_id, described in deployment.functions.items()
        },
        emulator.faults.lose_answer if emulator.faults else None,
    )
    events = EventBridge(
        emulator,
        deployment,
        invoke,
        schedule_seconds=options.schedule_seconds,
        faults=emulator.faults,
    )
    events.task_listeners.append(runner)
    events.start()
    return events
