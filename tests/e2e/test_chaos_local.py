"""A short chaos run: make local with 10% of every AWS call failing (throttled or 5xx, fixed
seed), a small mixed workload through the berth client, and what a caller relies on still
holds: every answer is 2xx or 503 with Retry-After, every accepted command ends SUCCEEDED
with exactly its output, every job ends SUCCEEDED with its result ZIP, the session runs and
stops — and faults really were injected."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from berth_client import ApiError, BerthClient, Settings
from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e

SANDBOX_ENV = {"BERTH_LOCAL_FAULTS": "all=0.1,seed=1", "BERTH_LOCAL_SCHEDULE_SECONDS": "2"}
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}
T = TypeVar("T")


class Caller:
    """The berth client, retrying 503s itself (as any client should), counting answers."""

    def __init__(self, sandbox: Sandbox, user: str) -> None:
        self.api = BerthClient(
            Settings(
                api_url=sandbox.url,
                profile=f"berth-local-{user}",
                config_file=sandbox.aws_config,
                credentials_file=sandbox.aws_credentials,
            ),
            retries=0,
        )
        self.answers: Counter[str] = Counter()

    def __call__(self, action: Callable[[], T]) -> T:
        for _ in range(20):
            try:
                result = action()
            except ApiError as error:
                self.answers[f"{error.status} {error.code}"] += 1
                if (error.status, error.code) != (503, "unavailable"):
                    raise  # anything else breaks the promise: the test fails on it
                continue
            self.answers["2xx"] += 1
            return result
        raise AssertionError("still 503 after 20 tries")


def test_a_mixed_workload_under_ten_percent_faults_keeps_every_promise(sandbox: Sandbox) -> None:
    call = Caller(sandbox, "alice")
    commands = [
        (project, call(lambda p=project, n=n: call.api.run_command(p, f"echo {p} {n}")))  # type: ignore[misc]
        for project in ("chaos-a", "chaos-b")
        for n in range(5)
    ]
    jobs = [call(lambda i=i: call.api.run_job("checksum", {"text": f"t{i}"})) for i in range(3)]  # type: ignore[misc]
    session = call(lambda: call.api.start_session("default"))
    for project, queued in commands:
        ended = call.api.wait_for(
            lambda p=project, q=queued: call(lambda: call.api.command(p, q.id)),  # type: ignore[misc]
            ENDED,
            timeout=180,
        )
        assert (ended.status, ended.exit_code) == ("SUCCEEDED", 0), ended
        output = call(lambda p=project, q=queued: call.api.output(p, q.id))  # type: ignore[misc]
        assert output.data == queued.command.removeprefix("echo ") + "\n"
    for i, job in enumerate(jobs):
        done = call.api.wait_for(
            lambda j=job: call(lambda: call.api.job(j.id)),  # type: ignore[misc]
            {"SUCCEEDED", "FAILED"},
            timeout=180,
        )
        assert done.status == "SUCCEEDED", done.error
        assert done.result_url
        with urllib.request.urlopen(done.result_url, timeout=60) as response:  # noqa: S310
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        expected = hashlib.sha256(f"t{i}".encode()).hexdigest()
        assert expected in archive.read("checksums.json").decode()
    running = call.api.wait_for(
        lambda: call(lambda: call.api.session(session.id)), {"RUNNING", "FAILED"}, timeout=180
    )
    assert running.status == "RUNNING", running.error
    call(lambda: call.api.stop_session(session.id))
    stopped = call.api.wait_for(
        lambda: call(lambda: call.api.session(session.id)), {"STOPPED", "FAILED"}, timeout=180
    )
    assert stopped.status == "STOPPED"
    injected: list[dict[str, Any]] = [
        json.loads(line) for line in Path(sandbox.fault_log).read_text().splitlines()
    ]
    print(f"answers {dict(call.answers)}; faults injected {len(injected)}: "
          f"{dict(Counter(f['code'] for f in injected))}")  # fmt: skip
    assert len(injected) >= 10  # the run did meet faults
    assert set(call.answers) <= {"2xx", "503 unavailable"}
