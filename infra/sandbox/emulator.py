"""The in-process AWS emulator (moto server on loopback) and deploying berth's template into it.

The synthesized CloudFormation template is deployed the way ``cdk deploy`` would: a local
"bootstrap" (the version parameter and the assets bucket), the file assets uploaded, then
``CreateStack``. What moto's CloudFormation cannot express is bridged here, in the sandbox
only (see ``bridge_gaps``), never in the handlers.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import (  # type: ignore[attr-defined]
    MotoRequestHandler,
)
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from infra.sandbox.account import ACCOUNT, REGION
from infra.sandbox.dockerfile import exec_form
from infra.sandbox.faults import FaultPlan, Faults

__all__ = ["ACCOUNT", "REGION", "Deployment", "Emulator", "deploy"]

BOOTSTRAP_QUALIFIER = "hnb659fds"


class Emulator:
    """moto's server on 127.0.0.1.

    Real DynamoDB evaluates a conditional write atomically; moto's threaded server does not
    guarantee that under concurrency, so DynamoDB requests are served one at a time here.
    Only those: a Lambda invocation served by the emulator calls it back (S3, DynamoDB), so
    serializing everything would deadlock. berth's handlers still run concurrently.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        fault_log: Path | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._plan = faults
        self._fault_log = fault_log
        self.faults: Faults | None = None
        """The fault layer (``BERTH_LOCAL_FAULTS``), when asked for; ``enable()`` it once the
        template is deployed."""
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> Emulator:
        # One log line per emulated request, and one per template resource type moto does
        # not emulate (stages, bucket policies): noise that changes nothing the sandbox serves.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto").setLevel(logging.ERROR)
        # Its Step Functions interpreter logs every failed state with a full dump; a job's
        # failure is what GET /jobs/{id} reports (and its failure ZIP holds).
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message="Tried to parse")
        app = DomainDispatcherApplication(create_backend_app)

        def serialized(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
                with self._lock:
                    return list(app(environ, start_response))
            return app(environ, start_response)  # type: ignore[no-any-return]

        served: Any = serialized
        if self._plan is not None and self._plan.active:
            self.faults = served = Faults(self._plan, serialized, self._fault_log)
        self._server = make_server(
            self._host, self._port, served, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("start() the emulator first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",  # noqa: S106 - the emulator accepts any
            region_name=REGION,
        )

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class Deployment:
    """What a deployed stack looks like from outside: its template and physical resources."""

    stack_name: str
    template: dict[str, Any]
    physical: dict[str, str]
    outputs: dict[str, str]
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """logical id → {"name", "handler", "code_path", "timeout", "environment"} as Lambda
    reports them."""

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {
            key: value
            for key, value in self.template["Resources"].items()
            if value["Type"] == type_name
        }


def deploy(emulator: Emulator, assembly: Path, stack_name: str) -> Deployment:
    _bootstrap(emulator)
    _upload_file_assets(emulator, assembly / f"{stack_name}.assets.json", assembly)
    template = json.loads((assembly / f"{stack_name}.template.json").read_text())
    cloudformation = emulator.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    stack = _wait(cloudformation, stack_name)
    physical = {
        resource["LogicalResourceId"]: resource.get("PhysicalResourceId", "")
        for resource in cloudformation.describe_stack_resources(StackName=stack_name)[
            "StackResources"
        ]
        if "LogicalResourceId" in resource
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    deployment = Deployment(stack_name, template, physical, outputs)
    lambda_client = emulator.client("lambda")
    images = json.loads((assembly / f"{stack_name}.assets.json").read_text()).get(
        "dockerImages", {}
    )
    for logical_id, resource in deployment.resources("AWS::Lambda::Function").items():
        configuration = lambda_client.get_function_configuration(FunctionName=physical[logical_id])
        props = resource["Properties"]
        code_path: Path | None = None
        if props.get("PackageType") == "Image":
            # No Docker locally: run the image's Python code from its build context.
            image = images[_image_hash(props["Code"]["ImageUri"])]["source"]
            code_path = assembly / image["directory"]
            command = props.get("ImageConfig", {}).get("Command") or exec_form(
                code_path / image.get("dockerFile", "Dockerfile"),
                image.get("dockerBuildTarget"),
                "CMD",
            )
            if not command:
                raise ValueError(f"{logical_id}: the image has no exec-form CMD (its handler)")
            handler = command[0]
        else:
            handler = configuration["Handler"]
        deployment.functions[logical_id] = {
            "name": configuration["FunctionName"],
            "handler": handler,
            "code_path": code_path,
            "timeout": configuration.get("Timeout", 3),
            "environment": configuration.get("Environment", {}).get("Variables", {}),
        }
    bridge_gaps(emulator, deployment)
    return deployment


def _image_hash(image_uri: Any) -> str:
    """The asset hash at the end of a CDK image URI (a Fn::Sub string in the template)."""
    text = json.dumps(image_uri)
    found = re.search(r":([0-9a-f]{64})", text)
    if not found:
        raise ValueError(f"not a CDK asset image: {text}")
    return found.group(1)


def bridge_gaps(emulator: Emulator, deployment: Deployment) -> None:
    """Makes moto behave like the AWS the template describes, where its CloudFormation cannot.

    - Task definitions created through CloudFormation lose NetworkMode/Cpu/compatibilities,
      so awsvpc tasks would get no ENI (no private IP): restore them from the template.
    - moto moves a task one state further on every read; on AWS it stays RUNNING until
      stopped. Keep tasks RUNNING until StopTask.
    - VPC DNS attributes are not applied; ENIs (task private IPs) need EnableDnsHostnames.
    """
    from infra.sandbox.moto_bridges import (
        keep_tasks_running_until_stopped,
        report_ssm_agents_online,
        restore_task_definition,
        stamp_task_times,
    )

    ec2 = emulator.client("ec2")
    for logical_id, resource in deployment.resources("AWS::EC2::VPC").items():
        for attribute in ("EnableDnsHostnames", "EnableDnsSupport"):
            if resource["Properties"].get(attribute):
                ec2.modify_vpc_attribute(
                    VpcId=deployment.physical[logical_id], **{attribute: {"Value": True}}
                )

    for logical_id, resource in deployment.resources("AWS::ECS::TaskDefinition").items():
        restore_task_definition(deployment.physical[logical_id], resource["Properties"])
    keep_tasks_running_until_stopped()
    stamp_task_times()
    _move_state_machines_to_the_interpreter(emulator, deployment)
    report_ssm_agents_online()


def _move_state_machines_to_the_interpreter(emulator: Emulator, deployment: Deployment) -> None:
    """moto's CloudFormation creates state machines in its plain Step Functions backend; the
    one that really executes them (switched on by ``stepfunctions.enable_execution``) is
    another. Re-create each there, from the definition CloudFormation resolved."""
    from moto.stepfunctions.models import stepfunctions_backends

    plain = stepfunctions_backends[ACCOUNT][REGION]
    sfn = emulator.client("stepfunctions")
    existing = {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    for logical_id in deployment.resources("AWS::StepFunctions::StateMachine"):
        arn = deployment.physical[logical_id]
        if arn in existing:
            continue
        machine = plain.describe_state_machine(arn)
        sfn.create_state_machine(
            name=machine.name, definition=machine.definition, roleArn=machine.roleArn
        )


def _bootstrap(emulator: Emulator) -> None:
    emulator.client("ssm").put_parameter(
        Name=f"/cdk-bootstrap/{BOOTSTRAP_QUALIFIER}/version",
        Value="30",
        Type="String",
        Overwrite=True,
    )
    emulator.client("s3").create_bucket(Bucket=assets_bucket())


def assets_bucket() -> str:
    return f"cdk-{BOOTSTRAP_QUALIFIER}-assets-{ACCOUNT}-{REGION}"


def _upload_file_assets(emulator: Emulator, manifest: Path, assembly: Path) -> None:
    s3 = emulator.client("s3")
    for asset in json.loads(manifest.read_text()).get("files", {}).values():
        source = assembly / asset["source"]["path"]
        body = _zip_directory(source) if source.is_dir() else source.read_bytes()
        for destination in asset["destinations"].values():
            s3.put_object(Bucket=assets_bucket(), Key=destination["objectKey"], Body=body)


def _zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
    return buffer.getvalue()


def _wait(cloudformation: Any, stack_name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack: dict[str, Any] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("IN_PROGRESS"):
            if status != "CREATE_COMPLETE":
                raise RuntimeError(
                    f"stack {stack_name} ended {status}: {stack.get('StackStatusReason')}"
                )
            return stack
        time.sleep(0.1)
    raise TimeoutError(f"stack {stack_name} did not finish deploying in {timeout:.0f} s")
