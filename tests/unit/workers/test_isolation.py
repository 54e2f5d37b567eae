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
from tests.unit.workers.conftest import ALICE, BUCKET, Frames, MakeWorker, queue
from workers.models import CommandStatus
from workers.service import CommandService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="fencing commands needs root")


@pytest.fixture
def fenced(make_worker: MakeWorker, tmp_path: Path) -> MakeWorker:
    tmp_path.chmod(0o755)  # the run user must be able to pass through to the workspaces
    uid = command_uid()
    assert uid is not None

    def make(**overrides: Any) -> Worker:
        return make_worker(isolation=Isolation(range(uid, uid + 16)), **overrides)

    return make


def test_a_command_runs_as_another_user_without_the_workers_credentials(
    service: CommandService,
    fenced: MakeWorker,
    frames: Frames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/secret-id")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/secret")
    queued = queue(
        service,
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
    queue(service, ALICE, "secret", "t1", "cat key.txt")  # leaves its copy on this worker
    snoop = queue(
        service, ALICE, "snoop", "t1", "cat ../secret/key.txt; ls ../secret; ls .. ; exit 0"
    )
    fenced().run_forever()
    output = frames.output(snoop.id)
    assert "s3cr3t" not in output
    assert "Permission denied" in output


def test_nothing_a_command_leaves_running_or_in_tmp_outlives_it(
    service: CommandService, fenced: MakeWorker, frames: Frames
) -> None:
    first = queue(
        service,
        ALICE,
        "one",
        "t1",
        "setsid sleep 300 & echo secret > /tmp/left-behind-$BERTH_COMMAND_ID; echo started",
    )
    second = queue(
        service,  # live processes of that user (a killed one may linger unreaped)
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


FORK_BOMB_SURVIVOR = (
    # double-forks, leaves the session, and keeps forking while the worker cleans up
    "( setsid bash -c 'while :; do ( sleep 300 & ) ; done' & ) ; echo planted"
)


def live_processes_of(uid: int) -> list[int]:
    from berth_worker.isolation import _live_processes_of

    return _live_processes_of(uid)


def test_each_command_runs_as_a_fresh_uid(
    service: CommandService, fenced: MakeWorker, frames: Frames
) -> None:
    commands = [queue(service, ALICE, "demo", "t1", "id -u") for _ in range(3)]
    fenced().run_forever()
    uids = [frames.output(c.id).strip() for c in commands]
    assert len(set(uids)) == 3, uids


def test_a_double_forked_setsid_fork_loop_is_gone_before_the_next_command(
    service: CommandService, fenced: MakeWorker, frames: Frames
) -> None:
    worker = fenced()
    assert worker.isolation.uids is not None
    first, last = worker.isolation.uids[0], worker.isolation.uids[-1]
    planted = queue(service, ALICE, "one", "t1", FORK_BOMB_SURVIVOR)
    looked = queue(
        service,  # any live process of any of this worker's command uids?
        ALICE,
        "two",
        "t1",
        f"ps -e -o uid=,stat= | awk '$1 >= {first} && $1 <= {last} && $2 !~ /^Z/' | wc -l",
    )
    worker.run_forever()
    assert frames.output(planted.id).startswith("planted\n")  # then fork retries (NPROC)
    assert service.get(ALICE, "two", looked.id).status == CommandStatus.SUCCEEDED
    # the looking command's own ps, awk, wc and shell: nothing else
    assert int(frames.output(looked.id).strip()) <= 4
    assert not [uid for uid in worker.isolation.uids if live_processes_of(uid)]


def test_the_kill_ends_a_fork_loop_started_outside_any_command(tmp_path: Path) -> None:
    import subprocess

    from berth_worker.isolation import kill_everything_of

    uid = command_uid()
    assert uid is not None
    subprocess.Popen(
        ["bash", "-c", "( setsid bash -c 'while :; do ( sleep 300 & ) ; done' & )"],
        user=uid + 15,
        group=uid + 15,
        extra_groups=[],
        cwd="/",
        start_new_session=True,
    ).wait()
    assert live_processes_of(uid + 15)  # it runs on after its parent exited
    kill_everything_of(uid + 15)
    assert live_processes_of(uid + 15) == []


def test_ipc_and_run_lock_left_by_a_command_are_removed(
    service: CommandService, fenced: MakeWorker, frames: Frames
) -> None:
    import shutil

    if shutil.which("ipcmk") is None:
        pytest.skip("ipcmk (util-linux) is not installed")
    left = queue(
        service,
        ALICE,
        "demo",
        "t1",
        "ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null; ipcmk -S 1 >/dev/null;"
        " touch /run/lock/left-$BERTH_COMMAND_ID 2>/dev/null; id -u",
    )
    fenced().run_forever()
    uid = int(frames.output(left.id).split()[-1])
    from berth_worker.isolation import _ipc_owned_by

    assert all(_ipc_owned_by(kind, uid) == [] for kind in ("shm", "sem", "msg"))
    assert not list(Path("/run/lock").glob(f"left-{left.id}"))


def test_leaving_hands_the_whole_tree_back_to_root(
    service: CommandService, fenced: MakeWorker
) -> None:
    queue(service, ALICE, "demo", "t1", "mkdir -p a/b/c && echo x > a/b/c/f && ln -s / a/root")
    worker = fenced()
    worker.run_forever()
    tree = worker.workdir / "demo"
    owners = {path.lstat().st_uid for path in [tree, *tree.rglob("*")]}
    assert owners == {0}
