"""The ``berth`` CLI as a user runs it (a subprocess), on the mistakes people make: every one
ends in one line on stderr saying what is wrong and what to do, with the documented exit
code, and never a traceback. A small fake API answers where an answer is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_api import serving

BERTH = Path(sys.executable).parent / "berth"


class FakeApi:
    """Answers every request with ``answer`` (status, body); keeps the paths asked."""

    def __init__(self) -> None:
        self.answer: tuple[int, Any] = (200, {"items": []})
        self.paths: list[str] = []
        self.url = ""

    def respond(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        self.paths.append(path)
        return self.answer


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    with serving(fake.respond) as fake.url:
        yield fake


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A machine with nothing configured: no berth config, no AWS profile or region."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    return {
        **kept,
        "HOME": str(tmp_path),
        "BERTH_CONFIG": str(tmp_path / "berth.json"),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "COLUMNS": "80",
    }


@pytest.fixture
def signed(env: dict[str, str], api: FakeApi) -> dict[str, str]:
    """Configured for the fake API with (fake) keys to sign with."""
    return {
        **env,
        "BERTH_API_URL": api.url,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
    }


def berth(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BERTH), *args], env=env, capture_output=True, text=True, timeout=60, check=False,
        cwd=cwd,
    )  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line; fails on a traceback or anything more."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_a_missing_input_file_is_named(signed: dict[str, str], tmp_path: Path) -> None:
    result = berth(signed, "jobs", "run", "checksum", "--input", "@missing.json", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result) == (
        "error: cannot read --input file missing.json: No such file or directory"
    )


def test_an_api_url_without_a_scheme_says_how_to_write_it(env: dict[str, str]) -> None:
    result = berth(env, "--api-url", "127.0.0.1:9580", "sessions", "ls")
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("error: bad_url: the API URL '127.0.0.1:9580' is not a URL")
    assert "http://127.0.0.1:8080" in line


def test_a_project_that_cannot_be_a_path_segment_is_refused_before_any_request(
    signed: dict[str, str], api: FakeApi
) -> None:
    for project in ("a/b", ""):
        result = berth(signed, "commands", "ls", "-P", project)
        assert result.returncode == 2, result.stderr
        assert f"project {project!r} cannot be a name" in one_line(result)
    assert api.paths == []


def test_a_project_with_a_space_reaches_the_api_quoted_and_its_answer_is_shown(
    signed: dict[str, str], api: FakeApi
) -> None:
    api.answer = (400, {"error": {"code": "invalid_request", "message": "bad"}})
    result = berth(signed, "run", "--project", "my project", "--", "ls")
    assert api.paths == ["/workspaces/my%20project/commands"]
    assert (result.returncode, one_line(result)) == (5, "error: invalid_request: bad")


def test_no_configuration_says_how_to_configure(env: dict[str, str]) -> None:
    result = berth(env, "sessions", "ls")
    assert result.returncode == 3
    assert "run `berth config --stack NAME`" in one_line(result)


def test_config_stack_without_a_region_asks_for_one(env: dict[str, str]) -> None:
    result = berth(env, "config", "--stack", "berth")
    assert result.returncode == 2
    assert one_line(result) == (
        "error: which region is the stack in? give --region (or set AWS_REGION)"
    )


def test_config_stack_without_credentials_says_to_sign_in(env: dict[str, str]) -> None:
    result = berth(env, "config", "--stack", "berth", "--region", "eu-west-1")
    assert result.returncode == 3
    assert one_line(result).startswith("error: no_credentials: no AWS credentials")


def test_config_needs_a_stack_or_local(env: dict[str, str]) -> None:
    result = berth(env, "config")
    assert result.returncode == 2
    assert one_line(result) == "error: give --stack NAME (a deployed stack) or --local (make local)"


def test_config_local_without_a_running_sandbox_says_to_start_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = berth(env, "config", "--local", cwd=tmp_path)
    assert result.returncode == 3
    assert "no running make local sandbox found in" in one_line(result)
    assert "run `make local`" in result.stderr


def test_config_local_refuses_a_user_the_sandbox_does_not_have(
    env: dict[str, str], tmp_path: Path
) -> None:
    checkout = tmp_path / "berth"
    (checkout / ".sandbox").mkdir(parents=True)
    (checkout / "aws-config").write_text("[profile berth-local-alice]\n[profile berth-local-bob]\n")
    (checkout / ".sandbox" / "local.json").write_text(json.dumps({
        "api_url": "http://127.0.0.1:9", "websocket_url": "ws://127.0.0.1:10",
        "region": "us-east-1", "config_file": str(checkout / "aws-config"),
        "credentials_file": str(checkout / "aws-credentials"),
    }))  # fmt: skip
    (checkout / "src").mkdir()
    result = berth(env, "config", "--local", "--user", "mallory", cwd=checkout / "src")
    assert result.returncode == 2
    assert (
        one_line(result) == "error: make local has no user 'mallory': choose --user from alice, bob"
    )
    saved = berth(env, "config", "--local", "--user", "bob", cwd=checkout / "src")
    assert saved.returncode == 0, saved.stderr
    stored = json.loads(Path(env["BERTH_CONFIG"]).read_text())
    assert stored == {
        "region": "us-east-1", "profile": "berth-local-bob",
        "local": str(checkout / ".sandbox" / "local.json"),
    }  # fmt: skip


def test_an_apis_message_is_printed_as_it_is_never_as_markup(
    signed: dict[str, str], api: FakeApi
) -> None:
    message = "project: String should match pattern '^[a-z0-9-]{1,63}$' [bold]x[/bold]"
    api.answer = (400, {"error": {"code": "invalid_request", "message": message}})
    result = berth(signed, "commands", "ls", "-P", "Demo")
    assert result.returncode == 5
    assert one_line(result) == f"error: invalid_request: {message}"


def test_global_options_go_after_the_subcommand_too(signed: dict[str, str], api: FakeApi) -> None:
    session = {
        "id": "ses_1", "user": "u", "profile": "default", "status": "RUNNING",
        "private_ip": "10.0.0.5", "port": 8080, "task_arn": None,
        "created_at": "2026-12-04T10:00:00Z", "updated_at": "2026-12-04T10:00:00Z",
        "expires_at": "2026-12-04T11:00:00Z", "last_heartbeat_at": "2026-12-04T10:00:00Z",
        "last_active_at": "2026-12-04T10:00:01Z",
        "idle_expires_at": "2026-12-04T10:30:01Z", "error": None, "stop_reason": None,
        "url": "https://" + "s" * 120 + ".example.com/",
    }  # fmt: skip
    api.answer = (200, {"items": [session]})
    before = berth(signed, "--json", "sessions", "ls")
    after = berth(signed, "sessions", "ls", "--json")
    assert before.returncode == after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout) == [session | {"token": None}]
    elsewhere = berth({**signed, "BERTH_API_URL": "http://127.0.0.1:9"}, "sessions", "ls",
                      "--api-url", api.url)  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stderr


def test_lists_are_columns_never_wrapped_when_piped(signed: dict[str, str], api: FakeApi) -> None:
    url = "https://" + "s" * 120 + ".example.com/"
    session = {
        "id": "ses_1", "user": "u", "profile": "default", "status": "RUNNING",
        "private_ip": "10.0.0.5", "port": 8080, "task_arn": None,
        "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
        "expires_at": "2020-01-01T01:00:00Z", "last_heartbeat_at": "2020-01-01T00:00:00Z",
        "idle_expires_at": "2020-01-01T00:30:00Z", "error": None, "url": url,
    }  # fmt: skip
    api.answer = (200, {"items": [session]})
    result = berth(signed, "sessions", "ls")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()  # one line, though far wider than COLUMNS=80
    assert line.split() == ["ses_1", "default", "RUNNING", line.split()[3], "10.0.0.5:8080", url]
    assert line.split()[3].endswith("d")  # its age, in days


def test_an_empty_list_says_so(signed: dict[str, str], api: FakeApi) -> None:
    api.answer = (200, {"items": []})
    result = berth(signed, "sessions", "ls")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "no sessions\n")
    as_json = berth(signed, "sessions", "ls", "--json")
    assert (as_json.stdout, as_json.stderr) == ("[]\n", "")


def test_an_unknown_option_is_one_line_pointing_at_help(signed: dict[str, str]) -> None:
    result = berth(signed, "sessions", "ls", "--bogus")
    assert result.returncode == 2
    assert one_line(result) == "error: No such option: --bogus (see `berth sessions ls --help`)"


def test_an_unreachable_api_is_named(signed: dict[str, str]) -> None:
    result = berth({**signed, "BERTH_API_URL": "http://127.0.0.1:9"}, "jobs", "ls")
    assert result.returncode == 5
    assert one_line(result).startswith("error: unreachable: cannot reach http://127.0.0.1:9/jobs")


def test_help_lists_every_command_and_group() -> None:
    shown = subprocess.run([str(BERTH), "--help"], capture_output=True, text=True, check=True)
    for command in ("config", "profiles", "run", "sessions", "jobs", "commands", "files",
                    "instances"):  # fmt: skip
        assert f"  {command} " in shown.stdout


def test_the_cli_page_names_every_command() -> None:
    """docs/cli.md's table is the reference: a command added without a line there fails.
    A row names ``berth GROUP COMMAND ...`` and may go on with ``/ COMMAND ...`` of the same
    group."""
    import typer

    from berth_client.cli import app
    from infra.settings import ROOT

    readme = (ROOT / "docs" / "cli.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `berth ")]
    listed: set[str] = set()
    for row in rows:
        first, *more = [piece.strip(" `") for piece in row.split("|")[1].split(" / ")]
        words = first.split()
        listed |= {words[1], " ".join(words[1:3])}
        listed |= {f"{words[1]} {piece.split()[0]}" for piece in more}
    root = typer.main.get_command(app)
    named: list[str] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        named += [f"{name} {sub}" for sub in subcommands] if subcommands else [name]
    assert len(named) > 20
    missing = [command for command in named if command not in listed]
    assert missing == [], f"missing from docs/cli.md's table: {missing}"


def test_a_make_local_profile_without_its_sandbox_says_to_start_it(
    env: dict[str, str], api: FakeApi
) -> None:
    gone = {**env, "BERTH_API_URL": api.url, "BERTH_PROFILE": "berth-local-alice"}
    result = berth(gone, "sessions", "ls")
    assert result.returncode == 3
    assert "is make local running? start it, then `berth config --local`" in one_line(result)
    assert api.paths == []


def group(key: str, count: int, seconds: float, units: float, dollars: float) -> dict[str, Any]:
    """A group as ``GET /usage`` answers it."""
    return {"key": key, "capability": None, "count": count, "seconds": seconds, "units": units,
            "dollars": dollars}  # fmt: skip


USAGE: dict[str, Any] = {
    "user": "arn:aws:sts::123456789012:assumed-role/berth-client/alice",
    "start": "2026-12-01T00:00:00Z",
    "end": "2026-12-05T12:00:00Z",
    "group_by": "capability",
    "groups": [group("jobs", 3, 12.5, 6.25, 0.000105), group("sessions", 2, 7200, 1800, 0.0247)],
    "total": group("total", 5, 7212.5, 1806.25, 0.024805),
    "budget": {"monthly_budget_usd": 10.0, "spent_this_month_usd": 0.024805,
               "resets_at": "2027-01-01T00:00:00Z", "over_budget": False},
}  # fmt: skip


def test_usage_shows_this_month_by_capability_with_a_total_and_the_budget(
    signed: dict[str, str], api: FakeApi
) -> None:
    api.answer = (200, USAGE)
    result = berth(signed, "usage")
    assert result.returncode == 0, result.stderr
    assert api.paths == ["/usage?group_by=capability"]
    lines = result.stdout.splitlines()
    assert lines[0] == "2026-12-01T00:00:00Z to 2026-12-05T12:00:00Z by capability"
    assert lines[1].split() == ["jobs", "3", "12s", "$0.0001"]  # 12.5 s shows as 12s
    assert lines[2].split() == ["sessions", "2", "7200s", "$0.0247"]
    assert lines[3].split() == ["total", "5", "7212s", "$0.0248"]
    assert lines[4] == ("this month $0.0248, budget $10.00 (resets 2027-01-01T00:00:00Z)")
    scripted = berth(signed, "usage", "--json", "--by", "day", "--from", "2026-11-01")
    assert json.loads(scripted.stdout) == USAGE
    assert api.paths[-1] == "/usage?from=2026-11-01&group_by=day"


def test_over_budget_is_one_line_at_once_not_retried(signed: dict[str, str], api: FakeApi) -> None:
    said = "this month's spend $1.0000 has reached the budget $1.0000; new compute is refused"
    api.answer = (429, {"error": {"code": "budget_exceeded", "message": said}})
    result = berth(signed, "jobs", "run", "checksum")
    assert (result.returncode, one_line(result)) == (5, f"error: budget_exceeded: {said}")
    assert api.paths == ["/jobs"]  # a budget resets next month: no retry in the meantime


def test_admin_budget_takes_dollars_or_default(signed: dict[str, str], api: FakeApi) -> None:
    user = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
    result = berth(signed, "admin", "budget", user, "lots")
    assert result.returncode == 2
    assert one_line(result) == "error: budget must be a number of dollars or 'default' (got 'lots')"
    api.answer = (200, {**USAGE["budget"], "monthly_budget_usd": None})
    result = berth(signed, "admin", "budget", user, "default")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "budget none; spent $0.0248 this month"
    assert api.paths == [
        "/admin/users/YXJuOmF3czpzdHM6OjEyMzQ1Njc4OTAxMjphc3N1bWVkLXJvbGUvYmVydGgtY2xpZW50L2FsaWNl/budget"
    ]


def test_commands_connect_prints_the_url_for_that_terminal(
    signed: dict[str, str], api: FakeApi
) -> None:
    url = "wss://ws.example/prod?ticket=" + "a" * 43
    api.answer = (
        200,
        {"url": url, "expires_at": "2026-12-05T12:01:00Z", "topic": "terminal:demo:t2"},
    )
    result = berth(signed, "commands", "connect", "-P", "demo", "-t", "t2")
    assert result.returncode == 0, result.stderr
    assert api.paths == ["/workspaces/demo/terminals/t2/connect"]
    assert result.stdout.splitlines()[0] == url


def test_console_on_a_port_in_use_says_so_in_one_line(signed: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = berth(signed, "console", "--port", str(port))
    assert result.returncode == 2
    assert one_line(result).startswith(f"error: cannot listen on 127.0.0.1:{port}")
