"""Every place the sandbox reaches into moto's internals, in one module.

moto is an emulator of AWS's APIs; the sandbox needs a few things AWS does that moto does not
(or does differently). Each bridge below patches one moto internal, checks first that the
internal still has the shape it was written against (``MotoChanged`` otherwise), and is
idempotent. ``CONTRACT`` lists every internal relied on; ``check()`` verifies them all at
sandbox start, and ``tests/unit/test_moto_bridges.py`` runs it, so a moto upgrade that moves
one fails loudly instead of making the sandbox quietly unfaithful.

- **SQS FIFO promises** (``keep_fifo_promises``). On SQS a FIFO message's sequence number
  increases in the order messages enter the queue; moto 5.2 draws them at random: number them
  in order. And SQS never hands out a message of a group while another of that group is in
  flight; moto checks against a snapshot taken when a long poll *starts*, so two workers could
  run two commands of one project at once: a long poll here is a series of short ones, each
  checking the groups in flight at that moment, one at a time. And SQS accepts but never
  delivers a message whose deduplication id it saw in the last five minutes, even if that
  message is gone; moto compares only with messages still queued: remember each id.
- **Step Functions runs berth's code** (``enable_execution``, ``route_lambda_invocations``,
  ``fix_ecs_integration``): moto's interpreter really executes the definition; its Lambda
  invocations go to the sandbox's execution environments, its ECS integration converts keys
  and names errors as Step Functions does.
- **ECS tasks take time to start** (``start_tasks_after``) **and say when they ran**
  (``stamp_task_times``), **SSM agents report Online**
  (``report_ssm_agents_online``), **STS credentials sign** (``on_assume_role``).
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from infra.sandbox.account import ACCOUNT, REGION

Invoke = Callable[[dict[str, Any]], Any]
_PATCHED = "_berth_patched"
_lock = threading.Lock()
_numbers = itertools.count(1)
POLL_SECONDS = 0.1
DEDUPLICATION_SECONDS = 300
_DEDUPLICATED = "_berth_deduplicated"
"""On a moto queue: (group, deduplication id) → when it was sent and its message."""


def keep_fifo_promises() -> None:
    """Patches moto's SQS backend in this process (idempotent)."""
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.send_message, _PATCHED, False):
        return
    send = SQSBackend.send_message
    receive = SQSBackend.receive_message

    def send_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with _lock:  # the number and the place in the queue are taken together
            dedup = kwargs.get("deduplication_id")
            remembered: dict[tuple[str, str], tuple[float, Any]] = (
                self.get_queue(queue_name).__dict__.setdefault(_DEDUPLICATED, {}) if dedup else {}
            )
            key = (str(kwargs.get("group_id")), str(dedup))
            seen = remembered.get(key)
            if seen is not None and time.monotonic() - seen[0] < DEDUPLICATION_SECONDS:
                return seen[1]  # accepted, not delivered again: SQS answers as it did then
            message = send(self, queue_name, *args, **kwargs)
            if message.sequence_number is not None:
                message.sequence_number = f"{next(_numbers):020d}"
            if dedup:
                if len(remembered) > 10_000:  # forget what SQS has forgotten
                    old = time.monotonic() - DEDUPLICATION_SECONDS
                    for stale in [k for k, (at, _) in remembered.items() if at < old]:
                        del remembered[stale]
                remembered[key] = (time.monotonic(), message)
            return message

    def receive_message(
        self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any
    ) -> Any:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _lock:  # which groups are in flight, and taking one, at once
                messages = receive(self, queue_name, count, 0, *args)
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(POLL_SECONDS)

    setattr(send_message, _PATCHED, True)
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign,assignment]


def enable_execution(endpoint: str) -> None:
    """Must run before state machines are created (moto keeps them in another backend);
    ``endpoint``: the emulator's."""
    request = urllib.request.Request(  # noqa: S310 - the emulator on loopback
        f"{endpoint}/moto-api/config",
        data=json.dumps(
            {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        ).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass
    # moto's interpreter calls other services at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = endpoint.rsplit(":", 1)[-1]


def route_lambda_invocations(
    functions: dict[str, Invoke], lose_answer: Callable[[str], bool] | None = None
) -> None:
    """moto's Lambda invokes (from Step Functions or the API) run the named local function.

    Without Docker, moto answers invocations from its "simple" Lambda backend (it echoes the
    payload); functions the sandbox runs are routed to their execution environments instead.
    ``lose_answer`` (the fault layer's) may turn a state machine's invocation that did its
    work into ``Sandbox.Timedout``, as Lambda reports a function that ran out of time.
    """
    from moto.awslambda_simple.models import LambdaSimpleBackend

    check("LambdaSimpleBackend.invoke")
    original = LambdaSimpleBackend.invoke

    def invoke(
        self: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> str | bytes | None:
        name = function_name.split(":function:")[-1].split(":")[0]
        local = functions.get(name)
        if local is None:
            return original(self, function_name, qualifier, body, headers, response_headers)
        payload = json.loads(body) if body else {}
        try:
            result = local(payload)
        except Exception as exc:  # a handler error, as Lambda reports it
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        else:
            signed = str((headers or {}).get("Authorization", ""))
            by_a_state_machine = f"Credential={STEP_FUNCTIONS_ACCESS_KEY}/" in signed
            if by_a_state_machine and lose_answer is not None and lose_answer(name):
                response_headers["x-amz-function-error"] = "Unhandled"
                result = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"}
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]


def fix_ecs_integration() -> None:
    """moto's ECS task integration hands Step Functions' PascalCase parameters straight to
    boto3 (which wants camelCase) and reads the PascalCase output Step Functions returns
    without converting it: convert both ways, as Step Functions does. And where ECS refuses
    (throttled, a server error), Step Functions fails the task with ``ECS.<error code>`` (what
    a state's Retry names); moto reports ``States.Runtime``: name it as AWS does."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_ecs as ecs_service,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    if getattr(ecs_service.StateTaskServiceEcs._from_error, _PATCHED, False):
        return
    check("StateTaskServiceEcs.")
    from_error = ecs_service.StateTaskServiceEcs._from_error

    def named_error(self: Any, env: Any, ex: Exception) -> Any:
        if not isinstance(ex, ClientError):
            return from_error(self, env, ex)
        error = f"ECS.{ex.response['Error']['Code']}"
        details = TaskFailedEventDetails(
            error=error,
            cause=str(ex.response["Error"].get("Message", "")),
            resource=self._get_sfn_resource(),
            resourceType=self._get_sfn_resource_type(),
        )
        return FailureEvent(
            env=env,
            error_name=CustomErrorName(error),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(taskFailedEventDetails=details),  # type: ignore[typeddict-item]
        )

    def parameters(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        converted = _rekey(parameters, lambda key: key[:1].lower() + key[1:])
        parameters.clear()
        parameters.update(converted)

    def response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(response, dict):
            converted = _rekey(response, lambda key: key[:1].upper() + key[1:])
            response.clear()
            response.update(converted)

    ecs_service.StateTaskServiceEcs._normalise_parameters = parameters  # type: ignore[method-assign]
    ecs_service.StateTaskServiceEcs._normalise_response = response  # type: ignore[method-assign]
    setattr(named_error, _PATCHED, True)
    ecs_service.StateTaskServiceEcs._from_error = named_error  # type: ignore[method-assign]


class MotoChanged(RuntimeError):
    """A moto internal a bridge replaces is not what it was written against (fail loudly at
    sandbox start, and in tests, rather than quietly bridging nothing)."""


def _rekey(value: Any, rename: Callable[[str], str]) -> Any:
    """Keys renamed all the way down; times (boto3's datetimes) as the epoch milliseconds
    Step Functions puts in a task's output (JSON, like the rest of it)."""
    if isinstance(value, dict):
        return {rename(k): _rekey(v, rename) for k, v in value.items()}
    if isinstance(value, list):
        return [_rekey(v, rename) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


_TASK_START = {"seconds": 0.0}
_STARTING = ("PROVISIONING", "PENDING")


def _clock() -> float:
    """The start-time bridge's clock (a test moves its own)."""
    return time.monotonic()


def start_tasks_after(seconds: float) -> None:
    """Tasks run from now on (in this process) take ``seconds`` to start, as on AWS.

    moto's ECS starts a task RUNNING at once. On AWS a Fargate task is PROVISIONING, then
    PENDING while its image is pulled, and RUNNING about a minute after RunTask. With
    ``seconds`` > 0 a new task reads PROVISIONING for the first half of that time, PENDING for
    the second, then RUNNING (unless stopped first) — so what depends on a task not being up
    yet behaves here as there: a warm pool's replacement cannot be claimed before it runs,
    the scaler counts starting workers. 0 (the default) keeps moto's instant start.
    """
    from moto.ecs.models import Task as MotoTask

    task: Any = MotoTask  # patched below: attributes mypy would not let us assign

    _TASK_START["seconds"] = max(0.0, seconds)
    if getattr(task, "_berth_start_patched", False):
        return
    check("Task.status")
    managed = task.status  # ManagedState's property, inherited
    init, read = task.__init__, managed.fget

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._berth_ready_at = _clock() + _TASK_START["seconds"]
        self._berth_wait = _TASK_START["seconds"]

    def status(self: Any) -> Any:
        left = getattr(self, "_berth_ready_at", 0.0) - _clock()
        if left > 0 and self._status == "RUNNING":  # moto's own progression starts after
            return _STARTING[0] if left > self._berth_wait / 2 else _STARTING[1]
        return read(self)

    task.__init__ = __init__
    task.status = property(status, managed.fset)
    task._berth_start_patched = True


def report_ssm_agents_online() -> None:
    """moto has no DescribeInstanceInformation; every running instance's agent is Online here
    (on AWS it takes the agent a minute or two after boot). Run Command itself is moto's:
    it reports Success without running anything."""
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.ssm.responses import SimpleSystemManagerResponse

    def describe_instance_information(self: Any) -> ActionResult:
        wanted = {
            value
            for f in self._get_param("Filters") or []
            if f.get("Key") == "InstanceIds"
            for value in f.get("Values", [])
        }
        infos = [
            {
                "InstanceId": machine.id,
                "PingStatus": "Online",
                "PlatformType": "Linux",
                "PlatformName": "Amazon Linux",
                "AgentVersion": "3.3.0.0",
                "ResourceType": "EC2Instance",
            }
            for reservation in ec2_backends[ACCOUNT][REGION].reservations.values()
            for machine in reservation.instances
            if machine.state == "running" and (not wanted or machine.id in wanted)
        ]
        return ActionResult({"InstanceInformationList": infos})

    SimpleSystemManagerResponse.describe_instance_information = describe_instance_information  # type: ignore[attr-defined]


def record_exit_code(cluster_arn: str, task_arn: str, exit_code: int) -> None:
    """What the ECS agent reports when a task's container exits (moto has no agent): its exit
    code and STOPPED, on the task's containers (StopTask follows)."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[ACCOUNT][REGION]
    cluster = cluster_arn.rsplit("/", 1)[-1]
    for arn, stored in backend.tasks.get(cluster, {}).items():
        if arn.endswith(task_arn.rsplit("/", 1)[-1]):
            for container in stored.containers:
                container.exitCode = exit_code
                container.last_status = "STOPPED"


def stamp_task_times() -> None:
    """ECS tells when a task was created, began pulling its image and stopped (Fargate bills
    from the pull to the stop; berth's usage reads them); moto tells none: stamp them as the
    task is made and when it becomes STOPPED (idempotent)."""
    from moto.ecs.models import Task as MotoTask

    task: Any = MotoTask  # patched below: attributes mypy would not let us assign
    if getattr(task, "_berth_times_patched", False):
        return
    check("Task.status")
    init, status = task.__init__, task.status

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.created_at = self.pull_started_at = datetime.now(UTC)
        self.stopped_at = None

    def set_status(self: Any, value: Any) -> None:
        status.fset(self, value)
        if value == "STOPPED" and getattr(self, "stopped_at", None) is None:
            self.stopped_at = datetime.now(UTC)

    task.__init__ = __init__
    task.status = property(status.fget, set_status)
    task._berth_times_patched = True


def keep_tasks_running_until_stopped() -> None:
    """moto moves a task one state further on every read; on AWS it stays RUNNING until
    stopped."""
    from moto.moto_api import state_manager

    state_manager.set_transition(
        model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
    )


def restore_task_definition(arn: str, properties: dict[str, Any]) -> None:
    """Task definitions created through moto's CloudFormation lose NetworkMode, Cpu, Memory
    and compatibilities (awsvpc tasks would get no ENI, no private IP): restore them from the
    template's ``properties``."""
    from moto.ecs.models import ecs_backends

    family, revision = arn.rsplit("/", 1)[-1].rsplit(":", 1)
    definition = ecs_backends[ACCOUNT][REGION].task_definitions[family][int(revision)]
    definition.network_mode = properties.get("NetworkMode", definition.network_mode)
    definition.cpu = properties.get("Cpu", definition.cpu)
    definition.memory = properties.get("Memory", definition.memory)
    definition.requires_compatibilities = properties.get("RequiresCompatibilities")
    if "FARGATE" in (definition.requires_compatibilities or []):
        definition.compatibilities = ["EC2", "FARGATE"]


_assumed: list[Callable[[str, str, str, str], None]] = []


def on_assume_role(listener: Callable[[str, str, str, str], None]) -> None:
    """``listener(access key, secret, role name, session name)`` hears every role moto's STS
    hands out in this process (the sandbox signs with those credentials as AWS would).
    Patches moto's STS backend once."""
    from moto.sts.models import STSBackend

    if listener not in _assumed:
        _assumed.append(listener)
    if getattr(STSBackend.assume_role, _PATCHED, False):
        return
    original = STSBackend.assume_role

    def assume_role(self: Any, *args: Any, **kwargs: Any) -> Any:
        role = original(self, *args, **kwargs)
        for heard in list(_assumed):
            heard(
                role.access_key_id,
                role.secret_access_key,
                role.role_arn.rsplit("/", 1)[-1],
                role.session_name,
            )
        return role

    setattr(assume_role, _PATCHED, True)
    STSBackend.assume_role = assume_role  # type: ignore[method-assign]


STEP_FUNCTIONS_ACCESS_KEY = "ak"
"""What moto's Step Functions interpreter signs its integrations' calls with (the fault layer
lets only a task's own action fail; ``CONTRACT`` checks the key is still this)."""

CONTRACT: list[tuple[str, str, Callable[[Any], bool]]] = [
    ("moto.sqs.models", "SQSBackend.send_message", callable),
    ("moto.sqs.models", "SQSBackend.get_queue", callable),
    ("moto.sqs.models", "SQSBackend.receive_message",
     lambda f: list(inspect.signature(f).parameters)[:4]
     == ["self", "queue_name", "count", "wait_seconds_timeout"]),
    ("moto.awslambda_simple.models", "LambdaSimpleBackend.invoke",
     lambda f: list(inspect.signature(f).parameters)
     == ["self", "function_name", "qualifier", "body", "headers", "response_headers"]),
    ("moto.stepfunctions.parser.asl.component.state.exec.state_task.service"
     ".state_task_service_ecs", "StateTaskServiceEcs._normalise_parameters", callable),
    ("moto.stepfunctions.parser.asl.component.state.exec.state_task.service"
     ".state_task_service_ecs", "StateTaskServiceEcs._normalise_response", callable),
    ("moto.stepfunctions.parser.asl.component.state.exec.state_task.service"
     ".state_task_service_ecs", "StateTaskServiceEcs._from_error", callable),
    ("moto.stepfunctions.parser.asl.utils.boto_client", "boto_client_for",
     lambda f: f'aws_access_key_id="{STEP_FUNCTIONS_ACCESS_KEY}"' in inspect.getsource(f)),
    ("moto.stepfunctions.models", "stepfunctions_backends", lambda b: b is not None),
    ("moto.sts.models", "STSBackend.assume_role", callable),
    ("moto.ecs.models", "Task.status",
     lambda p: isinstance(p, property) and p.fget is not None),
    ("moto.ecs.models", "ecs_backends", lambda b: b is not None),
    ("moto.ec2.models", "ec2_backends", lambda b: b is not None),
    ("moto.ssm.responses", "SimpleSystemManagerResponse._get_param", callable),
    ("moto.moto_api", "state_manager.set_transition", callable),
]  # fmt: skip
"""(module, attribute path, what it must be): every moto internal the sandbox relies on."""


def check(only: str = "") -> None:
    """Raises ``MotoChanged`` naming every internal in ``CONTRACT`` (or those whose path starts
    with ``only``: what one bridge replaces, checked before it does) that is gone or reshaped."""
    broken = []
    for module_name, path, fits in CONTRACT:
        if not path.startswith(only):
            continue
        try:
            found: Any = importlib.import_module(module_name)
            for part in path.split("."):
                found = inspect.getattr_static(found, part)
            if isinstance(found, staticmethod | classmethod):
                found = found.__func__
            if not fits(found):
                broken.append(f"{module_name}.{path} changed shape")
        except (ImportError, AttributeError):
            broken.append(f"{module_name}.{path} is gone")
    if broken:
        raise MotoChanged("moto changed under the sandbox's bridges: " + "; ".join(broken))
