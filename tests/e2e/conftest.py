"""Starts the sandbox exactly as ``make local`` does (a separate process) once per module."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.settings import ROOT


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

    def aws(self, service: str) -> Any:
        """A client of the sandbox's emulator (its own credentials, like the banner says)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.emulator,
            region_name="us-east-1",
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
        )

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
}
FAST_TASK_START = 4
FAST_ENV = {
    "BERTH_LOCAL_SCHEDULE_SECONDS": "1",
    "BERTH_LOCAL_TASK_START_SECONDS": str(FAST_TASK_START),
}
"""A sandbox whose schedules run every second, whose tasks take 4 s to start (a minute on
AWS), with short worker leases (settings an operator could choose)."""


Started = tuple[subprocess.Popen[str], Sandbox, list[str], threading.Thread]
"""A sandbox's process, its handle, what it printed and the thread reading that."""


class Sandboxes:
    """Sandboxes of this test process, one per configuration, shared by every module that
    asks for the same one (starting one costs ~20 s); each stops, by Ctrl-C, at the end."""

    def __init__(self) -> None:
        self.running: dict[str, Started] = {}

    def get(self, context: dict[str, Any], extra_env: dict[str, str]) -> Sandbox:
        key = json.dumps([context, extra_env], sort_keys=True)
        if key not in self.running:
            self.running[key] = start_sandbox(context, extra_env)
        return self.running[key][1]

    def stop_all(self) -> None:
        failures = []
        for process, _, printed, reader in self.running.values():
            # Ctrl-C, as a user stops make local in a terminal (the whole process group, the
            # CDK's Node.js helper included): it must stop cleanly, promptly and quietly.
            os.killpg(process.pid, signal.SIGINT)
            try:
                if process.wait(timeout=30) != 0:
                    failures.append("the sandbox did not exit cleanly on Ctrl-C")
                reader.join(timeout=10)  # it ends when the sandbox's output does
                said = "".join(printed[printed.index("berth sandbox: stopping\n") :])
                if "Traceback" in said or "Error" in said:
                    failures.append(f"the sandbox printed an error as it stopped:\n{said}")
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                failures.append("the sandbox did not stop within 30 s of Ctrl-C")
        assert failures == []


def start_sandbox(context: dict[str, Any], extra_env: dict[str, str]) -> Started:
    env = {
        **os.environ,
        "BERTH_LOCAL_PORT": "0",
        "BERTH_LOCAL_WEBSOCKET_PORT": "0",
        "BERTH_LOCAL_ROUTER_PORT": "0",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "PYTHONUNBUFFERED": "1",
        "BERTH_LOCAL_CONTEXT": json.dumps(context),
        **extra_env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.sandbox"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    url = emulator = websocket = router = None
    fault_log = ""
    files: dict[str, str] = {}
    seen: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (
        url and emulator and websocket and router and len(files) == 2
    ):
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if found := re.search(r"ready in [\d.]+ s: (http://\S+)", line):
            url = found.group(1)
        if found := re.search(r"emulator \(moto\): (http://\S+)", line):
            emulator = found.group(1)
        if found := re.search(r"websocket: +(ws://\S+)", line):
            websocket = found.group(1)
        if found := re.search(r"sessions router: +(http://\S+)", line):
            router = found.group(1)
        if found := re.search(r"export (AWS_CONFIG_FILE|AWS_SHARED_CREDENTIALS_FILE)=(\S+)", line):
            files[found.group(1)] = found.group(2)
        if found := re.search(r"faults: .*; log (\S+)", line):
            fault_log = found.group(1)
    if not (url and emulator and websocket and router and len(files) == 2):
        process.kill()
        pytest.fail("the sandbox did not start:\n" + "".join(seen[-40:]))
    # keep reading what it prints, so a full pipe never blocks it
    reader = threading.Thread(target=seen.extend, args=(process.stdout,), daemon=True)
    reader.start()
    handle = Sandbox(
        url,
        emulator,
        websocket,
        files["AWS_CONFIG_FILE"],
        files["AWS_SHARED_CREDENTIALS_FILE"],
        router,
        fault_log,
    )
    return process, handle, seen, reader


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
