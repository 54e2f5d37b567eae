"""Faults AWS hands out every day, injected in front of the emulator (``make local`` only).

Off by default. ``BERTH_LOCAL_FAULTS`` names a rate per service and a few switches:

    BERTH_LOCAL_FAULTS="dynamodb=0.1,sqs=0.05,ecs=0.2,s3=0.05,states=0.05,latency=50ms,seed=7"
    BERTH_LOCAL_FAULTS="all=0.1,capacity=on,seed=1"

Each request to a named service fails with that probability — half the time throttled
(``ThrottlingException``, ``SlowDown``, ``TooManyRequestsException``,
``RequestLimitExceeded``), half the time a server error (500/503) — in the service's own wire
format, so botocore raises exactly what it raises against AWS (and its retry modes act on it).
``latency`` delays every request; ``capacity=on`` makes ``RunTask`` answer with ``failures``
and ``RunInstances`` with ``InsufficientInstanceCapacity``. ``delivery`` is the rate at which
an event EventBridge hands to its target (task state changes, schedules) comes twice — as when
a target timed out after its side effect and was invoked again — or late, behind the events
after it (``all`` sets it too); ``replay`` is the rate at which it always comes twice. ``lost``
is the rate at which a function a state machine invokes does its work and then its answer is
lost, as when it timed out after its side effect: the task fails with ``Sandbox.Timedout``
(``all`` sets it too). ``seed`` makes the choices repeatable: the same seed and the same
requests give the same faults. Every fault is written, one JSON line each, to a log the banner
names, so a failing run can be replayed.

This is the one place faults are decided (``Faults``): AWS calls in a WSGI layer around the
emulator, which every AWS call of the functions and the containers goes through; event
deliveries and Lambda answers by the bridges that play EventBridge and Lambda, which ask it.
Requests signed with the sandbox's own key (template deployment, the bridges that play AWS's
internals) are never faulted.
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.sandbox.moto_bridges import STEP_FUNCTIONS_ACCESS_KEY

SERVICES = {
    "dynamodb", "sqs", "ecs", "s3", "states", "lambda", "ec2", "ssm", "sts", "events",
    "logs", "elasticloadbalancing", "execute-api", "cloudformation", "iam",
}  # fmt: skip
"""What a rate may name: the services as SigV4 credential scopes spell them."""
EXEMPT_KEYS = {"sandbox"}
"""Access keys of the sandbox's own clients (``Emulator.session``)."""
TASK_ACTIONS = ("AmazonEC2ContainerServiceV20141113.RunTask", "POST /2015-03-31/functions/")
"""What a state machine's task asks of ECS and Lambda. On AWS those calls can fail and the
task fails with the service's error (its Retry and Catch act); Step Functions' own polling of a
``.sync`` task (``DescribeTasks``) is internal to AWS and retried there, so it is not faulted."""

STATS_PATH = "/_berth/faults"
"""Where the emulator tells what the fault layer counted (requests, retries, faults by code)."""

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FaultSpecError(ValueError):
    """``BERTH_LOCAL_FAULTS`` does not parse; the message names the bad part."""


LOST_ANSWER = "Sandbox.Timedout"
"""How Lambda names a function that ran out of time (its side effects may have happened)."""
DELIVERY_DELAY_SECONDS = 3.0
"""A late or second delivery of an event comes up to this long after the first."""


@dataclass(frozen=True)
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    latency_seconds: float = 0.0
    capacity: bool = False
    seed: int = 0
    delivery: float = 0.0
    """How often an event is delivered twice or late (``Faults.deliveries``)."""
    lost: float = 0.0
    """How often a state machine's Lambda task loses its answer (``Faults.lose_answer``)."""
    replay: float = 0.0
    """How often an event is delivered twice, never late (``replay=1``: every event, to
    show a target counts each once)."""

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        rates: dict[str, float] = {}
        latency, capacity, seed, delivery, lost, replay = 0.0, False, 0, 0.0, 0.0, 0.0
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, equals, value = part.partition("=")
            name, value = name.strip().lower(), value.strip().lower()
            if not equals or not value:
                raise FaultSpecError(f"{part!r}: write name=value")
            if name == "latency":
                latency = _seconds(value)
            elif name == "capacity":
                if value not in {"on", "off", "true", "false", "1", "0"}:
                    raise FaultSpecError(f"capacity={value}: on or off")
                capacity = value in {"on", "true", "1"}
            elif name == "seed":
                if not value.isdigit():
                    raise FaultSpecError(f"seed={value}: a whole number")
                seed = int(value)
            elif name == "delivery":
                delivery = _rate(name, value)
            elif name == "lost":
                lost = _rate(name, value)
            elif name == "replay":
                replay = _rate(name, value)
            elif name == "all" or name in SERVICES:
                rate = _rate(name, value)
                rates |= dict.fromkeys(SERVICES, rate) if name == "all" else {name: rate}
                if name == "all":
                    delivery = lost = rate
            else:
                raise FaultSpecError(
                    f"{name!r} is not a service; one of all, {', '.join(sorted(SERVICES))}, "
                    "delivery, replay, lost, latency, capacity, seed"
                )
        return cls(rates, latency, capacity, seed, delivery, lost, replay)

    @property
    def active(self) -> bool:
        return bool(
            self.rates
            or self.latency_seconds
            or self.capacity
            or self.delivery
            or self.lost
            or self.replay
        )

    def or_none(self) -> FaultPlan | None:
        return self if self.active else None


def _rate(name: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise FaultSpecError(f"{name}={value}: a rate between 0 and 1") from None
    if not 0 <= rate <= 1:
        raise FaultSpecError(f"{name}={value}: a rate between 0 and 1")
    return rate


def _seconds(value: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", value)
    if not found:
        raise FaultSpecError(f"latency={value}: e.g. 50ms or 0.2s")
    number = float(found.group(1))
    return number / 1000 if found.group(2) in (None, "ms") else number


@dataclass(frozen=True)
class Fault:
    status: int
    code: str
    retry_after: bool = False


THROTTLED = {
    "dynamodb": Fault(400, "ThrottlingException"),
    "s3": Fault(503, "SlowDown"),
    "lambda": Fault(429, "TooManyRequestsException"),
    "ec2": Fault(503, "RequestLimitExceeded"),
    "execute-api": Fault(429, "TooManyRequestsException"),
}
"""How each service says "slow down"; the others: 400 ``ThrottlingException``."""
SERVER_ERROR = {
    "dynamodb": Fault(500, "InternalServerError"),
    "s3": Fault(500, "InternalError"),
    "lambda": Fault(500, "ServiceException"),
    "ec2": Fault(503, "Unavailable"),
    "sqs": Fault(500, "InternalFailure"),
    "ecs": Fault(500, "ServerException"),
}
"""How each fails on its side; the others: 503 ``ServiceUnavailable``."""


class Faults:
    """The WSGI layer: decides, answers with the fault or passes the request on, and counts."""

    def __init__(self, plan: FaultPlan, app: WsgiApp, log: Path | None = None) -> None:
        self.plan = plan
        self.app = app
        self.log = log
        self.enabled = False
        """Off while the sandbox deploys its template; ``enable()`` once it serves."""
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.retries = 0
        """Requests botocore sent again after an error (its ``amz-sdk-request`` attempt > 1)."""
        self.events = 0
        """Events handed to their targets (``deliveries``)."""
        self._random = random.Random(plan.seed)  # noqa: S311 - repeatability, not secrecy
        self._lock = threading.Lock()

    def enable(self) -> None:
        self.enabled = True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == STATS_PATH and environ.get("REQUEST_METHOD") == "GET":
            return self.stats(start_response)
        service, key = credential_scope(environ.get("HTTP_AUTHORIZATION", ""))
        if not self.enabled or service is None or key in EXEMPT_KEYS:
            return self.app(environ, start_response)
        operation = environ.get("HTTP_X_AMZ_TARGET") or (
            f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
        )
        if key == STEP_FUNCTIONS_ACCESS_KEY and not operation.startswith(TASK_ACTIONS):
            return self.app(environ, start_response)
        with self._lock:
            self.requests += 1
            number = self.requests
            if re.search(r"attempt=([2-9]|\d\d)", environ.get("HTTP_AMZ_SDK_REQUEST", "")):
                self.retries += 1
            fault = self._choose(service, operation, environ)
        if self.plan.latency_seconds:
            time.sleep(self.plan.latency_seconds)
        if fault is None:
            return self.app(environ, start_response)
        self._record(number, service, operation, fault)
        return answer(service, environ, fault, start_response)

    def stats(self, start_response: Callable[..., Any]) -> list[bytes]:
        """What was asked and injected so far (``GET /_berth/faults`` on the emulator)."""
        with self._lock:
            counted = {"requests": self.requests, "retries": self.retries, "events": self.events}
            body = json.dumps({**counted, "injected": dict(self.injected)}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    def _choose(self, service: str, operation: str, environ: dict[str, Any]) -> Fault | None:
        if self.plan.capacity and operation.endswith(".RunTask"):
            return Fault(200, "RESOURCE:FARGATE")
        if self.plan.capacity and service == "ec2" and b"RunInstances" in _peek_body(environ):
            return Fault(500, "InsufficientInstanceCapacity")
        rate = self.plan.rates.get(service, 0.0)
        if not rate or self._random.random() >= rate:
            return None
        if self._random.random() < 0.5:
            return THROTTLED.get(service, Fault(400, "ThrottlingException"))
        return SERVER_ERROR.get(service, Fault(503, "ServiceUnavailable"))

    def deliveries(self, event: str) -> list[float]:
        """When to hand an event to its target, in seconds from now: ``[0.0]`` — once, at
        once; at the plan's ``delivery`` rate, twice (``[0.0, d]``, what EventBridge's
        at-least-once delivery and Lambda's retry of a target that timed out after its side
        effect do) or late (``[d]``, behind the events after it). Counted and logged."""
        with self._lock:
            if not self.enabled:
                return [0.0]
            self.events += 1
            number = self.events
            replayed = bool(self.plan.replay) and self._random.random() < self.plan.replay
            if not replayed and self._random.random() >= self.plan.delivery:
                return [0.0]
            delay = round(self._random.uniform(0.2, DELIVERY_DELAY_SECONDS), 3)
            twice = replayed or self._random.random() < 0.5
        fault = Fault(200, "EventDeliveredTwice" if twice else "EventDeliveredLate")
        self._record(number, "events", event, fault)
        return [0.0, delay] if twice else [delay]

    def lose_answer(self, function: str) -> bool:
        """Whether the answer of this invocation of ``function`` by a state machine is lost
        after the function did its work (at the plan's ``lost`` rate). Counted and logged."""
        with self._lock:
            if not self.enabled or not self.plan.lost:
                return False
            self.events += 1
            number = self.events
            if self._random.random() >= self.plan.lost:
                return False
        self._record(number, "lambda", f"Invoke {function}", Fault(200, LOST_ANSWER))
        return True

    def _record(self, number: int, service: str, operation: str, fault: Fault) -> None:
        with self._lock:
            self.injected[fault.code] += 1
            if self.log is not None:
                line = {"n": number, "service": service, "operation": operation,
                        "status": fault.status, "code": fault.code}  # fmt: skip
                with self.log.open("a") as out:
                    out.write(json.dumps(line) + "\n")


def credential_scope(authorization: str) -> tuple[str | None, str | None]:
    """(service, access key) from a SigV4 ``Authorization`` header; (None, None) if unsigned."""
    found = re.search(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request", authorization)
    return (found.group(2), found.group(1)) if found else (None, None)


def _peek_body(environ: dict[str, Any]) -> bytes:
    """The request body, read once and put back for the emulator."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def answer(
    service: str, environ: dict[str, Any], fault: Fault, start_response: Callable[..., Any]
) -> list[bytes]:
    """The fault in the service's wire format (what botocore parses into its error code)."""
    message = f"berth sandbox: injected {fault.code}"
    headers = [("x-amzn-RequestId", "berth-fault")]
    if fault.status == 200:  # RunTask: accepted, nothing placed
        body = json.dumps({"tasks": [], "failures": [{"reason": fault.code}]}).encode()
        headers.append(("Content-Type", "application/x-amz-json-1.1"))
    elif environ.get("HTTP_X_AMZ_TARGET"):  # the JSON protocols (DynamoDB, SQS, ECS, ...)
        body = json.dumps({"__type": fault.code, "message": message}).encode()
        headers.append(("Content-Type", "application/x-amz-json-1.0"))
    elif service in {"lambda", "execute-api"}:  # REST-JSON
        body = json.dumps({"message": message}).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", fault.code)]
    elif service == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{fault.code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>berth-fault</RequestID></Response>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    elif service == "s3":
        body = f"<Error><Code>{fault.code}</Code><Message>{message}</Message></Error>".encode()
        headers.append(("Content-Type", "application/xml"))
    else:  # the query protocol (STS, CloudFormation, ...)
        body = (
            f"<ErrorResponse><Error><Type>Receiver</Type><Code>{fault.code}</Code>"
            f"<Message>{message}</Message></Error></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    reason = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(fault.status, "Error")  # fmt: skip
    start_response(f"{fault.status} {reason}", [*headers, ("Content-Length", str(len(body)))])
    return [body]
