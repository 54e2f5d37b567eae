"""Workspace commands against make local, as a user would run them — the happy path and the
faults: a burst into one project, a worker killed mid-command, a hostile file name, a dead
letter, a long command beside another user's short one, cancels, what a command can see, a
fork loop left behind, workers that each serve one user, and a follow-up finding its
user's worker.

Leases, timeouts and schedules are shortened by settings for this sandbox, as an operator
could; nothing else differs from the default deployment.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from infra.settings import WorkersSettings
from tests.e2e.conftest import FAST_CONTEXT, FAST_ENV, FAST_LEASE, FAST_TASK_START, Sandbox

pytestmark = pytest.mark.e2e

LEASE = FAST_LEASE
SANDBOX_CONTEXT = FAST_CONTEXT
SANDBOX_ENV = FAST_ENV
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}
DEFAULTS = WorkersSettings()


def run(
    sandbox: Sandbox, user: str, project: str, command: str, terminal: str = "t1"
) -> dict[str, Any]:
    code, queued = sandbox.request(
        "POST",
        f"/workspaces/{project}/commands",
        {"command": command, "terminal": terminal},
        user=user,
    )
    assert code == 202, queued
    return dict(queued)


def get(sandbox: Sandbox, user: str, project: str, command_id: str) -> dict[str, Any]:
    code, shown = sandbox.request("GET", f"/workspaces/{project}/commands/{command_id}", user=user)
    assert code == 200, shown
    return dict(shown)


def wait_for(
    sandbox: Sandbox,
    user: str,
    project: str,
    command_id: str,
    statuses: set[str] = ENDED,
    timeout: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = get(sandbox, user, project, command_id)
        if shown["status"] in statuses:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{command_id} is still {shown['status']} after {timeout} s")


def output_of(sandbox: Sandbox, user: str, project: str, command: str) -> str:
    queued = run(sandbox, user, project, command)
    done = wait_for(sandbox, user, project, queued["id"])
    assert done["status"] == "SUCCEEDED", done
    return str(done["output_tail"])


def drain(socket: Any) -> list[dict[str, Any]]:
    """What the socket already holds (nothing more is waited for)."""
    held = []
    while True:
        try:
            held.append(json.loads(socket.recv(timeout=0.1)))
        except TimeoutError:
            return held


def frames_until_done(
    socket: Any, command_id: str, timeout: float = 60, keep_all: bool = False
) -> list[dict[str, Any]]:
    """Frames of ``command_id`` until its final status (``keep_all``: every message heard)."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = json.loads(socket.recv(timeout=5))
        except TimeoutError:
            continue
        if frame.get("command_id") != command_id:
            if keep_all:
                frames.append(frame)
            continue
        frames.append(frame)
        if frame["type"] == "status" and frame["data"]["status"] in ENDED:
            return frames
    raise AssertionError(f"no final status for {command_id}: {frames}")


# --- the happy path ---------------------------------------------------------------------------


def test_output_streams_to_the_subscribed_terminal_and_files_persist(sandbox: Sandbox) -> None:
    run(sandbox, "jim", "jims", "true")  # jim owns the project from now on
    with sandbox.socket("jim") as socket:
        socket.send(json.dumps({"action": "subscribe", "topic": "terminal:jims:t1"}))
        assert json.loads(socket.recv(timeout=10)) == {"subscribed": "terminal:jims:t1"}
        queued = run(
            sandbox,
            "jim",
            "jims",
            "for i in 1 2 3; do echo line $i; sleep 0.2; done >out.txt; cat out.txt",
        )
        frames = frames_until_done(socket, queued["id"])
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # increasing, no gaps
    assert frames[-1]["data"] == {"status": "SUCCEEDED", "exit_code": 0}
    assert "".join(f["data"] for f in frames if f["type"] == "output") == "line 1\nline 2\nline 3\n"
    # the next command sees the file the last one wrote (synced back to the bucket and down)
    assert output_of(sandbox, "jim", "jims", "wc -l < out.txt").strip() == "3"


def test_only_the_owner_may_subscribe_or_run(sandbox: Sandbox) -> None:
    run(sandbox, "kate", "kates", "true")
    code, error = sandbox.request(
        "POST", "/workspaces/kates/commands", {"command": "id"}, user="leo"
    )
    assert (code, error["error"]["code"]) == (404, "not_found")
    with sandbox.socket("leo") as socket:
        socket.send(json.dumps({"action": "subscribe", "topic": "terminal:kates:t1"}))
        assert json.loads(socket.recv(timeout=10))["error"]["code"] == "not_found"


def test_a_websocket_without_a_good_ticket_is_refused_at_the_handshake(sandbox: Sandbox) -> None:
    from websockets.exceptions import InvalidStatus

    ticket = sandbox.ticket("jim")
    forged = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    for url in (sandbox.websocket, f"{sandbox.websocket}/?ticket=", forged):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=30)
        assert refused.value.response.status_code == 403, url


def test_a_terminal_connect_url_hears_its_terminal_once_and_nothing_else(
    sandbox: Sandbox,
) -> None:
    """What a product's page gets: one terminal's output, no AWS keys, no other rights."""
    from websockets.exceptions import InvalidStatus

    first = run(sandbox, "nia", "nias", "true")  # nia owns the project
    wait_for(sandbox, "nia", "nias", first["id"])
    code, link = sandbox.request("POST", "/workspaces/nias/terminals/t1/connect", user="nia")
    assert code == 200, link
    assert link["topic"] == "terminal:nias:t1"
    code, error = sandbox.request("POST", "/workspaces/nias/terminals/t1/connect", user="leo")
    assert (code, error["error"]["code"]) == (404, "not_found")  # not leo's project
    with connect(link["url"], open_timeout=30) as browser:
        for hostile in (
            {"action": "subscribe", "topic": "terminal:nias:t2"},
            {"action": "sendCommand", "command": "id"},
        ):
            browser.send(json.dumps(hostile))
            refused = json.loads(browser.recv(timeout=10))
            assert refused["error"]["code"] == "listen_only", hostile
        other = run(sandbox, "nia", "nias", "echo other", terminal="t2")
        mine = run(sandbox, "nia", "nias", "echo mine")  # runs after other: one project, in order
        heard = frames_until_done(browser, mine["id"], keep_all=True)
        with sandbox.socket("nia") as owner:
            code, session = sandbox.request("POST", "/sessions", {"profile": "default"}, user="nia")
            assert code == 201
            pushed = owner.recv(timeout=30)  # the owner hears their session's status...
            assert json.loads(pushed)["type"] == "session"
        heard += drain(browser)  # ...by then the browser would have too
    assert "".join(f["data"] for f in heard if f.get("type") == "output") == "mine\n"
    assert {f.get("command_id") for f in heard} == {mine["id"]}  # nothing of terminal t2
    assert wait_for(sandbox, "nia", "nias", other["id"])["status"] == "SUCCEEDED"
    sandbox.request("DELETE", f"/sessions/{session['id']}", user="nia")
    with pytest.raises(InvalidStatus) as again:
        connect(link["url"], open_timeout=30)
    assert again.value.response.status_code == 403  # single use


def test_session_status_is_pushed_to_the_owner(sandbox: Sandbox) -> None:
    with sandbox.socket("mia") as socket:
        code, created = sandbox.request("POST", "/sessions", {"profile": "default"}, user="mia")
        assert code == 201
        statuses = []
        deadline = time.monotonic() + 30
        while "RUNNING" not in statuses and time.monotonic() < deadline:
            try:
                message = json.loads(socket.recv(timeout=5))
            except TimeoutError:
                continue
            if message.get("type") == "session" and message["session"]["id"] == created["id"]:
                statuses.append(message["session"]["status"])
        assert "RUNNING" in statuses


# --- bursts and faults ------------------------------------------------------------------------


def test_a_burst_of_30_appends_into_one_project_runs_each_once_in_acceptance_order(
    sandbox: Sandbox,
) -> None:
    with ThreadPoolExecutor(max_workers=30) as pool:
        accepted = list(
            pool.map(
                lambda n: run(sandbox, "nina", "counter", f"echo {n} >> counter.txt"), range(1, 31)
            )
        )
    ended = [wait_for(sandbox, "nina", "counter", c["id"], timeout=120) for c in accepted]
    assert {(c["status"], c["exit_code"]) for c in ended} == {("SUCCEEDED", 0)}
    by_acceptance = sorted(accepted, key=lambda c: int(c["sequence"]))
    expected = [c["command"].split()[1] for c in by_acceptance]
    assert sorted(expected, key=int) == [str(n) for n in range(1, 31)]
    assert output_of(sandbox, "nina", "counter", "cat counter.txt").split() == expected


def worker_running(marker: str) -> int:
    """The pid of the worker process whose command carries ``marker``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if marker.encode() in cmdline and b"bash" in cmdline:
                return int(stat.rsplit(")", 1)[1].split()[1])  # its parent: the worker
        time.sleep(0.1)
    raise AssertionError(f"no command with {marker} started")


def test_a_worker_killed_mid_command_ends_it_worker_lost_and_never_reruns_it(
    sandbox: Sandbox,
) -> None:
    marker = uuid.uuid4().hex
    doomed = run(sandbox, "otto", "killed", f"sleep 5; date >> ran.txt # {marker}")
    after = run(sandbox, "otto", "killed", "cat ran.txt 2>/dev/null || echo no-ran-txt")
    os.kill(worker_running(marker), signal.SIGKILL)
    killed_at = time.monotonic()

    lost = wait_for(sandbox, "otto", "killed", doomed["id"], timeout=4 * LEASE)
    assert time.monotonic() - killed_at <= 2 * LEASE + 1
    assert (lost["status"], lost["error"]["code"]) == ("FAILED", "worker_lost")
    assert lost["exit_code"] is None
    nxt = wait_for(sandbox, "otto", "killed", after["id"])
    assert (nxt["status"], nxt["output_tail"]) == ("SUCCEEDED", "no-ran-txt\n")
    time.sleep(6)  # long after the sleep would have ended: it did not run again anywhere
    assert output_of(sandbox, "otto", "killed", "ls").strip() == ""


def test_a_file_name_s3_cannot_hold_is_skipped_with_a_warning(sandbox: Sandbox) -> None:
    queued = run(sandbox, "pia", "names", "touch $'bad\\xffname.txt' fine.txt")
    done = wait_for(sandbox, "pia", "names", queued["id"])
    assert done["status"] == "SUCCEEDED"
    assert "berth: skipped bad\\xffname.txt: the name is not valid UTF-8" in done["output_tail"]
    assert output_of(sandbox, "pia", "names", "ls") == "fine.txt\n"


def test_a_dead_letter_ends_its_command_undeliverable(sandbox: Sandbox) -> None:
    blocker = run(sandbox, "quinn", "dlq", "sleep 120")
    wait_for(sandbox, "quinn", "dlq", blocker["id"], {"RUNNING"})
    stuck = run(sandbox, "quinn", "dlq", "echo never")
    sqs = sandbox.aws("sqs")
    (dlq,) = [u for u in sqs.list_queues()["QueueUrls"] if u.endswith("commands-dlq.fifo")]
    sqs.send_message(  # as SQS does after max_receive_count deliveries
        QueueUrl=dlq,
        MessageBody=json.dumps({"command_id": stuck["id"], "project": "dlq"}),
        MessageGroupId="dlq",
        MessageDeduplicationId=stuck["id"],
    )
    ended = wait_for(sandbox, "quinn", "dlq", stuck["id"], timeout=45)  # the next reconcile
    assert (ended["status"], ended["error"]["code"]) == ("FAILED", "undeliverable")
    assert ended["started_at"] is None
    sandbox.request("DELETE", f"/workspaces/dlq/commands/{blocker['id']}", user="quinn")


def test_a_long_command_does_not_hold_back_another_users_short_one(sandbox: Sandbox) -> None:
    long = run(sandbox, "rosa", "long", "sleep 300")
    started = wait_for(sandbox, "rosa", "long", long["id"], {"RUNNING"})
    # what starting a worker costs here (the cold start the long command just paid)
    start_delay = time.mktime(time.strptime(started["started_at"], "%Y-%m-%dT%H:%M:%SZ")) - (
        time.mktime(time.strptime(started["created_at"], "%Y-%m-%dT%H:%M:%SZ"))
    )
    # sam's worker is his own: a reserve worker bound to him, or — if rosa took the last
    # one — a boot (the sandbox's task start, plus the worker's own start)
    cold_start = max(start_delay, FAST_TASK_START + 2)
    accepted = time.monotonic()
    short = run(sandbox, "sam", "short", "echo hi; exit 3")
    done = wait_for(sandbox, "sam", "short", short["id"], timeout=60)
    assert time.monotonic() - accepted <= cold_start + 5 + 1
    assert (done["status"], done["exit_code"], done["output_tail"]) == ("FAILED", 3, "hi\n")
    still = get(sandbox, "rosa", "long", long["id"])
    assert still["status"] == "RUNNING", (still["error"], still["output_tail"])
    sandbox.request("DELETE", f"/workspaces/long/commands/{long['id']}", user="rosa")


def test_cancel_a_queued_and_a_running_command(sandbox: Sandbox) -> None:
    running = run(sandbox, "tess", "cancel", "echo kept > kept.txt; sleep 60")
    wait_for(sandbox, "tess", "cancel", running["id"], {"RUNNING"})
    queued = run(sandbox, "tess", "cancel", "echo ran > ran.txt")  # waits behind the sleep

    code, cancelled = sandbox.request(
        "DELETE", f"/workspaces/cancel/commands/{queued['id']}", user="tess"
    )
    assert (code, cancelled["status"]) == (200, "CANCELLED")
    code, asked = sandbox.request(
        "DELETE", f"/workspaces/cancel/commands/{running['id']}", user="tess"
    )
    assert (code, asked["status"], asked["cancel_requested"]) == (202, "RUNNING", True)
    stopped = wait_for(sandbox, "tess", "cancel", running["id"], timeout=15)
    assert (stopped["status"], stopped["error"]["code"]) == ("CANCELLED", "cancelled")
    assert output_of(sandbox, "tess", "cancel", "ls") == "kept.txt\n"  # changes kept, no ran.txt
    code, listed = sandbox.request("GET", "/workspaces/cancel/commands", user="tess")
    assert code == 200
    assert [c["status"] for c in listed["items"]] == ["SUCCEEDED", "CANCELLED", "CANCELLED"]


# --- tenant isolation -------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="make local fences commands only when root")
def test_a_command_sees_no_credentials_and_no_other_project(sandbox: Sandbox) -> None:
    output_of(sandbox, "uma", "private", "echo s3cr3t > key.txt")
    shown = output_of(
        sandbox,
        "uma",
        "snoop",
        "env; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f 2>/dev/null; done;"
        " cat ~/.aws/credentials 2>&1; cat ../private/key.txt 2>&1; ls .. 2>&1;"
        " echo mine > mine.txt && cat mine.txt",
    )
    for secret in ("AWS_", "ECS_", "=sandbox", "s3cr3t"):
        assert secret not in shown, secret
    assert "Permission denied" in shown
    assert shown.endswith("mine\n")  # its own project: readable and writable


PLANTER = (
    # double-forks, leaves the session and keeps forking while the worker cleans up; each
    # copy plants a file in /tmp
    "( setsid bash -c 'while :; do ( exec -a planted-$BERTH_COMMAND_ID sleep 300 & );"
    " touch /tmp/planted-$BERTH_COMMAND_ID-$RANDOM 2>/dev/null; done' & ) ; echo planted"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="make local fences commands only when root")
def test_a_fork_loop_left_behind_is_gone_before_any_next_command(sandbox: Sandbox) -> None:
    planted = run(sandbox, "vic", "hostile", PLANTER)
    done = wait_for(sandbox, "vic", "hostile", planted["id"])
    assert done["status"] == "SUCCEEDED", done
    look = (
        f"ps -e -o stat=,args= | awk '$1 !~ /^Z/ && $2 == \"planted-{planted['id']}\"' | wc -l;"
        f" ls /tmp | grep -c planted-{planted['id']}; exit 0"  # grep -c exits 1 on none
    )
    # the same user's next command (on the same worker) and another user's (on their own)
    for user, project in (("vic", "next"), ("wes", "elsewhere")):
        assert output_of(sandbox, user, project, look).split() == ["0", "0"], user


def test_a_user_gets_no_worker_credentials(sandbox: Sandbox) -> None:
    """Only a worker task's own role session may ask; to anyone else the route is not there."""
    run(sandbox, "ivy", "mine", "true")
    for body in ({}, {"command_id": "cmd_" + "0" * 28}):
        code, error = sandbox.request("POST", "/workers/credentials", body, user="ivy")
        assert (code, error["error"]["code"]) == (404, "not_found"), error


def worker_of(sandbox: Sandbox, command_id: str) -> str:
    record = sandbox.aws("dynamodb").get_item(
        TableName=table_named(sandbox, "WorkersTable"), Key={"pk": {"S": f"CMD#{command_id}"}}
    )["Item"]
    return str(record["worker"]["S"])


def test_every_worker_runs_the_commands_of_exactly_one_user(sandbox: Sandbox) -> None:
    """Three users, two projects each, commands in waves with idle gaps between them."""
    users = ("xena", "yuri", "zoe")
    commands: list[tuple[str, str, str]] = []
    for wave in range(3):
        jobs = [(u, f"{u}-{p}", f"echo {wave} >> waves.txt") for u in users for p in "ab"]
        with ThreadPoolExecutor(max_workers=12) as pool:
            queued = list(
                pool.map(lambda job: (job[0], job[1], run(sandbox, *job)["id"]), jobs * 2)
            )
        for user, project, command_id in queued:
            assert wait_for(sandbox, user, project, command_id, timeout=90)["status"] == (
                "SUCCEEDED"
            )
        commands += queued
        time.sleep(2 + wave)  # people reading
    served: dict[str, set[str]] = {}
    for user, _, command_id in commands:
        served.setdefault(worker_of(sandbox, command_id), set()).add(user)
    assert served and all(len(users_of) == 1 for users_of in served.values()), served
    for user in users:  # every append landed, in order, in each project
        for project in (f"{user}-a", f"{user}-b"):
            lines = output_of(sandbox, user, project, "cat waves.txt").split()
            assert lines == ["0", "0", "1", "1", "2", "2"], (project, lines)


def test_a_follow_up_after_a_pause_runs_at_once_on_the_users_own_worker(
    sandbox: Sandbox,
) -> None:
    """After a command ends its person reads and types the next one: their worker, bound to
    them, waits ``keep_warm_seconds`` for it (longer than an unbound one waits)."""
    first = run(sandbox, "rhea", "reading", "ls")
    wait_for(sandbox, "rhea", "reading", first["id"])
    time.sleep(DEFAULTS.idle_seconds + 3)  # reading: longer than an unbound worker waits
    assert DEFAULTS.idle_seconds + 3 < DEFAULTS.keep_warm_seconds
    follow_up = run(sandbox, "rhea", "reading", "echo next")
    done = wait_for(sandbox, "rhea", "reading", follow_up["id"], timeout=10)
    assert (done["status"], done["output_tail"]) == ("SUCCEEDED", "next\n")
    assert worker_of(sandbox, follow_up["id"]) == worker_of(sandbox, first["id"])
    waited = time.mktime(time.strptime(done["started_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(
        time.strptime(done["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    )
    assert waited <= 2  # whole seconds on both sides


def table_named(sandbox: Sandbox, part: str) -> str:
    (table,) = [t for t in sandbox.aws("dynamodb").list_tables()["TableNames"] if part in t]
    return str(table)
