"""Step Functions, locally: moto runs the state machine; Lambda tasks run berth's code.

moto's Step Functions interpreter really executes the deployed definition (Choice, Pass,
Retry, Catch, Fail) once execution is switched on. Its Lambda integration calls moto's
Lambda, which cannot run code without Docker; here the invocation is handed to the
sandbox's own execution environments instead. ECS ``.sync`` tasks are run by
``containers.LocalTaskRunner``.
"""

from __future__ import annotations

import inspect
import json
import os
import urllib.request
from collections.abc import Callable
from typing import Any

from infra.sandbox.emulator import Emulator

Invoke = Callable[[dict[str, Any]], Any]


def enable_execution(emulator: Emulator) -> None:
    """Must run before state machines are created (moto keeps them in another backend)."""
    request = urllib.request.Request(  # noqa: S310 - the emulator on loopback
        f"{emulator.endpoint}/moto-api/config",
        data=json.dumps(
            {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        ).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass
    # moto's interpreter calls other services at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = emulator.endpoint.rsplit(":", 1)[-1]


def route_lambda_invocations(functions: dict[str, Invoke]) -> None:
    """moto's Lambda invokes (from Step Functions or the API) run the named local function.

    Without Docker, moto answers invocations from its "simple" Lambda backend (it echoes the
    payload); functions the sandbox runs are routed to their execution environments instead.
    """
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke
    expect_parameters(
        original, ["self", "function_name", "qualifier", "body", "headers", "response_headers"]
    )

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

    for name in ("_normalise_parameters", "_normalise_response", "_from_error"):
        if not callable(getattr(ecs_service.StateTaskServiceEcs, name, None)):
            raise MotoChanged(f"StateTaskServiceEcs.{name} is gone: revisit this bridge")
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
    ecs_service.StateTaskServiceEcs._from_error = named_error  # type: ignore[method-assign]


class MotoChanged(RuntimeError):
    """A moto internal a bridge replaces is not what it was written against (fail loudly at
    sandbox start, and in tests, rather than quietly bridging nothing)."""


def expect_parameters(function: Callable[..., Any], names: list[str]) -> None:
    found = list(inspect.signature(function).parameters)
    if found != names:
        raise MotoChanged(f"{function.__qualname__} now takes {found}, not {names}")


def _rekey(value: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {rename(k): _rekey(v, rename) for k, v in value.items()}
    if isinstance(value, list):
        return [_rekey(v, rename) for v in value]
    return value
