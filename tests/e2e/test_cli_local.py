"""The berth CLI against make local, as a user runs it: a subprocess signing with SigV4 from
the sandbox's local credentials (never X-Berth-User)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e

BERTH = Path(sys.executable).parent / "berth"


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BERTH_CONFIG": str(tmp_path / "config.json"),  # none: everything from the environment
        "BERTH_API_URL": sandbox.url,
        "BERTH_WEBSOCKET_URL": sandbox.websocket,
        "BERTH_PROFILE": "berth-local-cli",
        "AWS_CONFIG_FILE": sandbox.aws_config,
        "AWS_SHARED_CREDENTIALS_FILE": sandbox.aws_credentials,
        "AWS_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }


def berth(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BERTH), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_start_a_session_and_wait_for_it(env: dict[str, str]) -> None:
    result = berth(env, "--json", "sessions", "start", "--wait")
    assert result.returncode == 0, result.stderr
    session = json.loads(result.stdout)
    assert session["status"] == "RUNNING" and session["private_ip"]
    assert session["user"].endswith("/berth-client/cli")  # the signature's caller
    assert "RUNNING" in result.stderr  # the live status line
    listed = json.loads(berth(env, "--json", "sessions", "ls").stdout)
    assert session["id"] in [s["id"] for s in listed]
    rotated = berth(env, "sessions", "token", session["id"])  # its url, with a new token
    assert rotated.returncode == 0, rotated.stderr
    assert session["url"] in rotated.stdout and session["token"] not in rotated.stdout
    stopped = berth(env, "--json", "sessions", "stop", session["id"], "--wait")
    assert json.loads(stopped.stdout)["status"] == "STOPPED"


def test_run_the_checksum_job_and_download_its_result(env: dict[str, str], tmp_path: Path) -> None:
    result = berth(
        env, "jobs", "run", "checksum", "--input", '{"text": "hi"}', "--download", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "SUCCEEDED" in result.stdout
    assert f"wrote 1 file to {tmp_path}: checksums.json" in result.stderr  # says what it wrote
    checksums = json.loads((tmp_path / "checksums.json").read_text())
    assert checksums["sha256"] == hashlib.sha256(b"hi").hexdigest()


def test_a_failing_job_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    result = berth(env, "jobs", "run", "render", "--input", '{"width": 0}', "--wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "JobInputError" in result.stdout


@pytest.mark.parametrize("code", [0, 3])
def test_run_streams_output_as_it_comes_and_exits_with_the_commands_code(
    env: dict[str, str], code: int
) -> None:
    process = subprocess.Popen(
        [str(BERTH), "run", "-P", f"cli-{code}", "--",
         f"for i in 1 2 3 4 5; do echo line $i; sleep 0.6; done; exit {code}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    arrivals = []
    for line in process.stdout:
        arrivals.append((time.monotonic(), line.strip()))
    ended = time.monotonic()
    assert process.wait(timeout=60) == code, process.stderr.read() if process.stderr else ""
    assert [text for _, text in arrivals] == [f"line {n}" for n in range(1, 6)]
    assert ended - arrivals[0][0] >= 2  # the first line came ~3 s before the command ended


def test_ctrl_c_cancels_the_command_and_exits_130(env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [str(BERTH), "run", "-P", "cli-cancel", "--", "echo started; sleep 60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    listed = json.loads(berth(env, "--json", "commands", "ls", "-P", "cli-cancel").stdout)
    assert listed[0]["status"] == "CANCELLED"


def test_errors_map_to_exit_codes(env: dict[str, str]) -> None:
    assert berth(env, "sessions", "get", "ses_" + "0" * 28).returncode == 4
    unsigned = {**env, "BERTH_PROFILE": "no-such-profile"}
    assert berth(unsigned, "sessions", "ls").returncode == 3
    assert berth(env, "jobs", "run", "checksum", "--input", "not json").returncode == 2


def test_profiles_and_the_job_catalogue_list_what_can_be_started(env: dict[str, str]) -> None:
    profiles = berth(env, "profiles")
    assert profiles.returncode == 0, profiles.stderr
    assert any(line.split()[0] == "default" for line in profiles.stdout.splitlines())
    catalogue = berth(env, "jobs", "catalogue")
    assert "checksum  lambda" in catalogue.stdout.splitlines()


def test_sessions_ls_shows_age_and_address(env: dict[str, str]) -> None:
    started = json.loads(berth(env, "--json", "sessions", "start", "--wait").stdout)
    listed = berth(env, "sessions", "ls")
    (row,) = [line.split() for line in listed.stdout.splitlines() if started["id"] in line]
    assert row[:3] == [started["id"], "default", "RUNNING"]
    assert row[3].endswith(("s", "m"))  # its age
    assert row[4] == f"{started['private_ip']}:{started['port']}"
    berth(env, "sessions", "stop", started["id"])


def test_files_put_ls_get_round_trip_through_a_command(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("from my laptop\n")
    put = berth(env, "files", "put", str(source), "-P", "cli-files", "--path", "docs/notes.txt")
    assert put.returncode == 0, put.stderr
    assert put.stderr == "uploaded 15 bytes to cli-files:docs/notes.txt\n"
    ran = berth(env, "run", "-P", "cli-files", "--", "tr a-z A-Z < docs/notes.txt > LOUD.txt")
    assert ran.returncode == 0, ran.stderr
    listed = berth(env, "files", "ls", "-P", "cli-files")
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["LOUD.txt", "15"], ["docs/notes.txt", "15"],
    ]  # fmt: skip
    got = berth(env, "files", "get", "LOUD.txt", "-P", "cli-files", "-o", str(tmp_path / "l"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "l").read_text() == "FROM MY LAPTOP\n"
    assert got.stderr == f"wrote 15 bytes to {tmp_path / 'l'}\n"
    other = {**env, "BERTH_PROFILE": "berth-local-bob"}
    taken = berth(other, "files", "ls", "-P", "cli-files")  # bob: not his, and told why
    assert taken.returncode == 4
    assert "project names are shared by every user" in taken.stderr


def test_commands_cancel_and_get_show_how_it_ended(env: dict[str, str]) -> None:
    ran = berth(env, "run", "-P", "cli-get", "--", "exit 7")
    assert ran.returncode == 7
    listed = json.loads(berth(env, "--json", "commands", "ls", "-P", "cli-get").stdout)
    shown = berth(env, "commands", "get", listed[0]["id"], "-P", "cli-get")
    assert shown.stdout.split()[:4] == [listed[0]["id"], "FAILED", "exit", "7"]
    assert shown.returncode == 1
    process = subprocess.Popen(
        [str(BERTH), "run", "-P", "cli-get", "--", "echo up; sleep 60"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "up"
    running = json.loads(berth(env, "--json", "commands", "ls", "-P", "cli-get").stdout)[0]
    cancelled = berth(env, "commands", "cancel", running["id"], "-P", "cli-get", "--wait")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.split()[:2] == [running["id"], "CANCELLED"]
    assert process.wait(timeout=60) == 130


def test_sessions_logs_shows_what_the_container_printed(env: dict[str, str]) -> None:
    started = berth(env, "--json", "sessions", "start", "--wait")
    assert started.returncode == 0, started.stderr
    session = json.loads(started.stdout)
    deadline = time.monotonic() + 30
    while True:  # the container's first line reaches its log stream within a moment
        shown = berth(env, "sessions", "logs", session["id"])
        assert shown.returncode == 0, shown.stderr
        if "berth-echo listening on port" in shown.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "berth-echo listening on port" in shown.stdout
    listed = json.loads(berth(env, "--json", "sessions", "logs", session["id"]).stdout)
    assert any("listening" in line["message"] for line in listed)
    assert berth(env, "sessions", "stop", session["id"]).returncode == 0
