"""Starts the sandbox exactly as ``make local`` does (a separate process) once per module."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from infra.sandbox.launch import Launched, LaunchFailed, launch


@dataclass
class Sandbox:
    url: str
    emulator: str
    websocket: str
    aws_config: str = ""
    aws_credentials: str = ""
    """The files with the local users' SigV4 profiles (``berth-local-<user>``)."""
    router: str = ""
    """Where sessions are reached: ``Host: <session id>.berth.localhost`` and the token."""
    fault_log: str = ""
    """Where injected faults are logged (``BERTH_LOCAL_FAULTS``; empty without)."""
    launched: Launched | None = None

    @classmethod
    def of(cls, up: Launched) -> Sandbox:
        return cls(
            up.url, up.emulator, up.websocket, up.aws_config, up.aws_credentials, up.router,
            up.fault_log, up,
        )  # fmt: skip

    def signed(
        self,
        method: str,
        path: str,
        body: Any = None,
        profile: str = "berth-local-alice",
        secret: str | None = None,
    ) -> tuple[int, Any]:
        """A request signed with SigV4 from a local profile (``secret`` to sign it wrong)."""
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        os.environ["AWS_CONFIG_FILE"] = self.aws_config
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = self.aws_credentials
        frozen = (
            boto3.session.Session(profile_name=profile).get_credentials().get_frozen_credentials()
        )
        data = json.dumps(body).encode() if body is not None else b""
        request = AWSRequest(method=method, url=f"{self.url}{path}", data=data)
        SigV4Auth(
            Credentials(frozen.access_key, secret or frozen.secret_key), "execute-api", "us-east-1"
        ).add_auth(request)
        prepared = request.prepare()
        sent = urllib.request.Request(  # noqa: S310
            prepared.url, data=data or None, method=method, headers=dict(prepared.headers)
        )
        try:
            with urllib.request.urlopen(sent, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def ticket(self, user: str = "alice") -> str:
        """A WebSocket URL with a ticket of ``user``'s (``POST /live/tickets``)."""
        code, ticket = self.request("POST", "/live/tickets", user=user)
        assert code == 200, ticket
        return str(ticket["url"])

    def socket(self, user: str = "alice") -> ClientConnection:
        """``user``'s WebSocket connection, opened with a fresh ticket (use it in ``with``)."""
        return connect(self.ticket(user), open_timeout=30)

    def aws(self, service: str) -> Any:
        """A client of the sandbox's emulator (its own credentials, like the banner says)."""
        assert self.launched is not None, "a sandbox the tests started"
        return self.launched.aws(service)

    def request(
        self, method: str, path: str, body: Any = None, user: str | None = "alice"
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310
        if user:
            request.add_header("X-Berth-User", user)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


FAST_LEASE = 4
FAST_CONTEXT: dict[str, Any] = {
    "berth:workers.lease_seconds": FAST_LEASE,
    "berth:workers.cancel_grace_seconds": 1,
    "berth:limits.max_queued_commands_per_user": 40,
    "berth:sessions.profiles.brief": {"image": "echo", "port": 8080, "idle_timeout_seconds": 6},
}
FAST_TASK_START = 4
FAST_ENV = {
    "BERTH_LOCAL_SCHEDULE_SECONDS": "1",
    "BERTH_LOCAL_TASK_START_SECONDS": str(FAST_TASK_START),
}
"""A sandbox whose schedules run every second, whose tasks take 4 s to start (a minute on
AWS), with short worker leases and a session profile idle after 6 s (settings an operator
could choose)."""


class Sandboxes:
    """Sandboxes of this test process, one per configuration, shared by every module that
    asks for the same one (starting one costs ~20 s); each stops, by Ctrl-C, at the end."""

    def __init__(self) -> None:
        self.running: dict[str, Launched] = {}

    def get(self, context: dict[str, Any], extra_env: dict[str, str]) -> Sandbox:
        key = json.dumps([context, extra_env], sort_keys=True)
        if key not in self.running:
            try:
                self.running[key] = launch(context, extra_env)
            except LaunchFailed as error:
                pytest.fail(str(error))
        return Sandbox.of(self.running[key])

    def stop_all(self) -> None:
        """Ctrl-C must stop each cleanly, promptly and quietly; they stop side by side (each
        waits for its own processes, not for the others')."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, len(self.running))) as pool:
            stopped = list(pool.map(lambda up: up.stop(), self.running.values()))
        assert [failure for failures in stopped for failure in failures] == []


@pytest.fixture(scope="session")
def sandboxes() -> Iterator[Sandboxes]:
    started = Sandboxes()
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def sandbox(request: pytest.FixtureRequest, sandboxes: Sandboxes) -> Sandbox:
    """``make local`` in its own process. A test module may set ``SANDBOX_CONTEXT`` (settings
    overrides, e.g. short leases) and ``SANDBOX_ENV`` (the sandbox's own options); modules
    with the same ones share a sandbox, so each uses users of its own."""
    return sandboxes.get(
        getattr(request.module, "SANDBOX_CONTEXT", {}), getattr(request.module, "SANDBOX_ENV", {})
    )
