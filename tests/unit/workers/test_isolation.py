"""A user's command holds none of the worker's identity and reaches only its own project.

These run the real thing — a second user, file modes, signals — so they need root (as the
worker has in its container, and as CI has); elsewhere they are skipped, loudly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from berth_worker.isolation import Isolation
from berth_worker.worker import Worker
from infra.sandbox.app import command_uid
from tests.unit.workers.conftest import ALICE, BUCKET, Frames, MakeWorker
from workers.models import CommandStatus
from workers.service import CommandService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="fencing commands needs root")


@pytest.fixture
def fenced(make_worker: MakeWorker, tmp_path: Path) -> MakeWorker:
    tmp_path.chmod(0o755)  # the run user must be able to pass through to the workspaces
    uid = command_uid()
    assert uid is not None

    def make(**overrides: Any) -> Worker:
        return make_worker(isolation=Isolation(uid), **overrides)

    return make


def test_a_command_runs_as_another_user_without_the_workers_credentials(
    service: CommandService,
    fenced: MakeWorker,
    frames: Frames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/secret-id")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/secret")
    queued = service.submit(
        ALICE,
        "demo",
        "t1",
        "id -u; env; for f in /proc/[0-9]*/environ; do cat $f 2>/dev/null | tr '\\0' '\\n'; done;"
        " cat ~/.aws/credentials 2>&1; echo mine > mine.txt; cat mine.txt",
    )
    worker = fenced()
    worker.run_forever()
    output = frames.output(queued.id)
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert output.splitlines()[0] == str(worker.isolation.uid)
    for secret in ("AWS_", "ECS_", "secret-id", "testing", "169.254.170.2"):
        assert secret not in output, secret
    assert "mine\n" in output  # its own project's files: readable and writable


def test_a_command_cannot_read_another_projects_workspace(
    service: CommandService, fenced: MakeWorker, frames: Frames, aws: boto3.session.Session
) -> None:
    aws.client("s3").put_object(Bucket=BUCKET, Key="workspaces/secret/key.txt", Body=b"s3cr3t")
    service.submit(ALICE, "secret", "t1", "cat key.txt")  # leaves its copy on this worker
    snoop = service.submit(
        ALICE, "snoop", "t1", "cat ../secret/key.txt; ls ../secret; ls .. ; exit 0"
    )
    fenced().run_forever()
    output = frames.output(snoop.id)
    assert "s3cr3t" not in output
    assert "Permission denied" in output


def test_nothing_a_command_leaves_running_or_in_tmp_outlives_it(
    service: CommandService, fenced: MakeWorker, frames: Frames
) -> None:
    first = service.submit(
        ALICE,
        "one",
        "t1",
        "setsid sleep 300 & echo secret > /tmp/left-behind-$BERTH_COMMAND_ID; echo started",
    )
    second = service.submit(  # live processes of that user (a killed one may linger unreaped)
        ALICE,
        "two",
        "t1",
        "ps -u $(id -u) -o stat=,comm= | awk '$1 !~ /^Z/ && $2 == \"sleep\"' | wc -l",
    )
    worker = fenced()
    worker.run_forever()
    assert frames.output(first.id) == "started\n"
    assert not list(Path("/tmp").glob(f"left-behind-{first.id}"))
    assert frames.output(second.id).splitlines()[0] == "0"  # no sleep of that user survives
