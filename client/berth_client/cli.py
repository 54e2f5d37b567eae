"""``berth``: the command line over berth's API (SigV4 everywhere, make local included).

Global options (``--json``, ``--aws-profile``, ``--api-url``) go before or after the
subcommand. Output is plain text, never wrapped or marked up; ``--json`` prints the API's
answer. Every failure is one line on stderr, and the exit code says which kind:
0 ok, 1 the resource ended in a failed state (or the command's own non-zero exit code for
``berth run``), 2 usage (a bad flag, value or file), 3 not configured or not signed in,
4 not found, 5 another API error or the API unreachable, 130 interrupted.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from berth_client.client import (
    ApiError,
    BerthClient,
    Settings,
    find_sandbox,
    local_users,
    read_sandbox,
)
from berth_client.models import CommandOut, SessionOut, UsageOut

try:  # typer 0.2x carries its own copy of click; older ones use click itself
    from typer._click import exceptions as click_errors
    from typer._click.utils import echo
except ImportError:  # pragma: no cover - depends on the typer installed
    from click import echo  # type: ignore[no-redef,unused-ignore]
    from click import exceptions as click_errors  # type: ignore[no-redef,unused-ignore]

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_API, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130

app = typer.Typer(
    help="berth: per-user compute on demand — sessions, jobs, workspace commands, instances.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sessions_app = typer.Typer(help="Per-user containers (Fargate tasks).", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs run on Lambda or Fargate by name.", no_args_is_help=True)
commands_app = typer.Typer(help="Commands run in a project's workspace.", no_args_is_help=True)
files_app = typer.Typer(help="A project's files (its commands' working directory).",
                        no_args_is_help=True)  # fmt: skip
instances_app = typer.Typer(help="EC2 instances that fetch a blob.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(jobs_app, name="jobs")
app.add_typer(commands_app, name="commands")
app.add_typer(files_app, name="files")
app.add_typer(instances_app, name="instances")
admin_app = typer.Typer(help="Operators: every user's usage, budgets.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

# Plain text: no markup (an API message's '[a-z]' is text), no highlighting, no wrapping.
out = Console(markup=False, highlight=False, soft_wrap=True)
err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
state: dict[str, Any] = {"json": False, "profile": None, "api_url": None}

GLOBAL_FLAGS = {"--json"}
GLOBAL_OPTIONS = {"--aws-profile", "--api-url"}

WaitOption = Annotated[bool, typer.Option("--wait", help="Wait for a final state.")]
FOLLOW_SECONDS = 2.0
"""How often ``sessions logs -f`` asks for what came since."""
ProjectOption = Annotated[str, typer.Option("--project", "-P", help="The project (workspace).")]


class Usage(Exception):
    """A mistake in how berth was called: one line, exit 2."""


def hoist(args: Sequence[str]) -> list[str]:
    """The global options moved before the subcommand, wherever they were given (up to a
    ``--``, after which everything is the command's own)."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        name = arg.split("=", 1)[0]
        if arg in GLOBAL_FLAGS or (name in GLOBAL_OPTIONS and "=" in arg):
            front.append(arg)
        elif name in GLOBAL_OPTIONS and index + 1 < len(args):
            front += args[index : index + 2]
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> None:
    """The ``berth`` entry point: click's usage errors as one line, exit codes as documented."""
    args = hoist(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        code = command.main(args, prog_name="berth", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as error:
        echo(error.ctx.get_help() if error.ctx else str(error))
        sys.exit(EXIT_USAGE)
    except click_errors.UsageError as error:
        where = error.ctx.command_path if error.ctx else "berth"
        fail(f"{error.format_message()} (see `{where} --help`)")
        sys.exit(EXIT_USAGE)
    except click_errors.ClickException as error:
        fail(error.format_message())
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


@app.callback()
def root(
    aws_profile: Annotated[
        str | None,
        typer.Option("--aws-profile", help="AWS profile to sign with (default: the chain)."),
    ] = None,
    legacy_profile: Annotated[str | None, typer.Option("--profile", hidden=True)] = None,
    api_url: Annotated[str | None, typer.Option(help="The API's base URL.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
) -> None:
    state.update(profile=aws_profile or legacy_profile, api_url=api_url, json=json_output)


def client() -> BerthClient:
    return BerthClient(Settings.load(profile=state["profile"], api_url=state["api_url"]))


def fail(message: str) -> None:
    err.print(f"error: {message}", style="red")


def note(message: str) -> None:
    """Progress and what was done: on stderr, so stdout stays the result."""
    err.print(message)


def show(value: BaseModel | list[BaseModel] | dict[str, Any], human: str | None = None) -> None:
    if state["json"] or human is None:
        data: Any = (
            [v.model_dump(mode="json") for v in value]
            if isinstance(value, list)
            else value.model_dump(mode="json")
            if isinstance(value, BaseModel)
            else value
        )
        print(json.dumps(data, indent=None if state["json"] else 2))
    else:
        out.print(human)


def run(action: Callable[[], int | None]) -> None:
    """Runs a command; maps failures to one line on stderr and an exit code."""
    try:
        code = action()
    except Usage as error:
        fail(str(error))
        raise typer.Exit(EXIT_USAGE) from None
    except ApiError as error:
        fail(f"{error.code}: {error.message}")
        if error.code in {"bad_url", "invalid_request"} and error.status == 0:
            raise typer.Exit(EXIT_USAGE) from None
        if error.code in {"not_configured", "no_credentials", "no_sandbox"} or error.status in {
            401,
            403,
        }:
            raise typer.Exit(EXIT_AUTH) from None
        raise typer.Exit(EXIT_NOT_FOUND if error.status == 404 else EXIT_API) from None
    except TimeoutError as error:
        fail(f"timed out: {error}")
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code or 0)


def progress(label: str) -> Callable[[Any], None]:
    """A status line on stderr each time the status moves (stdout stays the result)."""

    def on_change(resource: Any) -> None:
        note(f"{label} {resource.id}: {resource.status}")

    return on_change


def table(items: list[Any], what: str, columns: Callable[[Any], list[str]]) -> None:
    """Items as aligned columns (one line each, never wrapped); ``--json``: a JSON list. An
    empty list says so on stderr."""
    if state["json"]:
        show(items)
        return
    if not items:
        note(f"no {what}")
        return
    rows = [columns(item) for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def age(stamp: str | None, now: datetime | None = None) -> str:
    """How long ago an ISO time was, in the largest whole unit (``45s``, ``12m``, ``3h``)."""
    if not stamp:
        return "-"
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- configuration ----------------------------------------------------------------------------


@app.command("config")
def configure(
    stack: Annotated[
        str | None, typer.Option(help="Read ApiUrl/WebSocketUrl from this CloudFormation stack.")
    ] = None,
    local: Annotated[bool, typer.Option(help="Use the running `make local` sandbox.")] = False,
    checkout: Annotated[
        Path | None,
        typer.Option(
            help="With --local: the berth checkout running it (default: found from here)."
        ),
    ] = None,
    region: Annotated[str | None, typer.Option(help="The stack's region.")] = None,
    user: Annotated[str, typer.Option(help="With --local: the local user to sign as.")] = "alice",
) -> None:
    """Save where the API is (and how to sign) for later commands."""

    def action() -> None:
        if local == bool(stack):
            raise Usage("give --stack NAME (a deployed stack) or --local (make local)")
        settings = (
            configure_local(checkout, user) if local else configure_stack(stack or "", region)
        )
        path = settings.save()
        show(
            {"saved": str(path), "api_url": settings.api_url}, f"saved {path} ({settings.api_url})"
        )

    run(action)


def configure_local(checkout: Path | None, user: str) -> Settings:
    found = find_sandbox(checkout or Path.cwd())
    if found is None:
        where = checkout or Path.cwd()
        raise ApiError(
            0,
            "no_sandbox",
            f"no running make local sandbox found in {where} or above: run `make local` in "
            "your berth checkout (or give --checkout PATH)",
        )
    sandbox = read_sandbox(found)
    users = local_users(sandbox["config_file"])
    if user not in users:
        raise Usage(f"make local has no user {user!r}: choose --user from {', '.join(users)}")
    return Settings(**sandbox, profile=f"berth-local-{user}", local=str(found))


def configure_stack(stack: str, region: str | None) -> Settings:
    try:
        return Settings.from_stack(stack, region, state["profile"])
    except ApiError as error:
        if error.code == "no_region":
            raise Usage(error.message) from None
        raise


# --- sessions ---------------------------------------------------------------------------------


@app.command("profiles")
def profiles() -> None:
    """The session profiles you can start (sessions start --profile NAME)."""
    run(
        lambda: table(
            client().profiles(),
            "profiles",
            lambda p: [
                p.name,
                f"port {p.port}",
                f"ttl {p.default_ttl_seconds}s (max {p.max_ttl_seconds}s)",
                f"idle {p.idle_timeout_seconds}s",
                f"warm {p.warm_pool}",
            ],
        )
    )


@sessions_app.command("start")
def sessions_start(
    profile: Annotated[str, typer.Option("--profile", "-p", help="A session profile.")] = "default",
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
    wait: WaitOption = False,
) -> None:
    """Start (or get) your session for a profile; --wait shows it reach RUNNING."""

    def action() -> int:
        api = client()
        session = api.start_session(profile, ttl)
        if wait:
            session = api.wait_for(
                lambda: api.session(session.id),
                {"RUNNING", "FAILED", "STOPPED"},
                on_change=progress("session"),
            )
        show(session, f"{session.id} {session.status} {address(session)}{reach(session)}")
        return EXIT_FAILED if session.status == "FAILED" else 0

    run(action)


def address(session: SessionOut) -> str:
    return f"{session.private_ip}:{session.port}" if session.private_ip else "-"


def reach(session: SessionOut) -> str:
    """How a browser reaches it (routing on): its url and the cookie that carries the token."""
    if not session.url:
        return ""
    cookie = f" (cookie berth-session={session.token})" if session.token else ""
    return f"\n{session.url}{cookie}"


@sessions_app.command("token")
def sessions_token(session_id: str) -> None:
    """A new token for your session's url; the old one stops working at once."""
    run(lambda: show(s := client().rotate_token(session_id), f"{s.id}{reach(s)}"))


@sessions_app.command("ls")
def sessions_ls() -> None:
    """Your sessions, newest first: id, profile, status, age, address, url."""
    run(
        lambda: table(
            client().sessions(),
            "sessions",
            lambda s: [s.id, s.profile, s.status, age(s.created_at), address(s), s.url or "-"],
        )
    )


@sessions_app.command("get")
def sessions_get(session_id: str) -> None:
    """One session."""
    run(lambda: show(s := client().session(session_id), f"{s.id} {s.status} {address(s)}"))


@sessions_app.command("stop")
def sessions_stop(session_id: str, wait: WaitOption = False) -> None:
    """Stop a session; --wait until it is STOPPED."""

    def action() -> None:
        api = client()
        session = api.stop_session(session_id)
        if wait:
            session = api.wait_for(
                lambda: api.session(session_id),
                {"STOPPED", "FAILED"},
                on_change=progress("session"),
            )
        show(session, f"{session.id} {session.status}")

    run(action)


@sessions_app.command("heartbeat")
def sessions_heartbeat(session_id: str) -> None:
    """Keep a session from being reaped as idle."""
    run(lambda: show(s := client().heartbeat(session_id), f"{s.id} {s.status}"))


@sessions_app.command("logs")
def sessions_logs(
    session_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing what it prints until Ctrl-C.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="Only lines from this ISO 8601 time on.")
    ] = None,
) -> None:
    """What a session's container printed, oldest first."""

    def action() -> None:
        api = client()
        token: str | None = None
        while True:
            page = api.session_logs(session_id, since=since, next_token=token)
            if state["json"]:
                show(list[BaseModel](page.items))
            else:
                for line in page.items:
                    out.print(f"{line.at} {line.message}")
            if not follow:
                return
            token = page.next_token or token
            time.sleep(FOLLOW_SECONDS)

    run(action)


@sessions_app.command("storage")
def sessions_storage() -> None:
    """Your persistent volumes: profile, where sessions see it, created, last used."""
    run(
        lambda: table(
            client().volumes(),
            "volumes",
            lambda v: [v.profile, v.path, age(v.created_at), age(v.last_used_at)],
        )
    )


@sessions_app.command("wipe")
def sessions_wipe(profile: str) -> None:
    """Wipe your volume of a profile: its next session starts empty (stop its session first)."""
    run(lambda: show(v := client().wipe_volume(profile), f"wiped {v.profile} ({v.path})"))


# --- jobs -------------------------------------------------------------------------------------


def job_input(value: str) -> dict[str, Any]:
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as error:
            raise Usage(f"cannot read --input file {value[1:]}: {error.strerror}") from None
    else:
        text = value
    try:
        parsed = json.loads(text)
    except ValueError:
        raise Usage("--input must be JSON (or @file with JSON)") from None
    if not isinstance(parsed, dict):
        raise Usage("--input must be a JSON object")
    return parsed


@jobs_app.command("catalogue")
def jobs_catalogue() -> None:
    """The jobs you can run by name, and where each runs (lambda or fargate)."""
    run(lambda: table(client().job_catalogue(), "jobs", lambda r: [r.name, r.runtime]))


@jobs_app.command("run")
def jobs_run(
    name: str,
    input_: Annotated[str, typer.Option("--input", help="JSON, or @file.json")] = "{}",
    key: Annotated[str | None, typer.Option(help="An idempotency key.")] = None,
    wait: WaitOption = False,
    download: Annotated[
        Path | None, typer.Option(help="Unpack the result (or failure) ZIP here; implies --wait.")
    ] = None,
) -> None:
    """Start a job by name; --wait follows it; --download unpacks its ZIP."""

    def action() -> int:
        payload = job_input(input_)
        api = client()
        job = api.run_job(name, payload, key)
        if wait or download:
            job = api.wait_for(
                lambda: api.job(job.id), {"SUCCEEDED", "FAILED"}, on_change=progress("job")
            )
        if download and job.status in {"SUCCEEDED", "FAILED"}:
            url = job.result_url or (job.error.failure_url if job.error else None)
            if url:
                unpack(url, download)
        human = f"{job.id} {job.name} {job.status}"
        if job.error:
            human += f" {job.error.code}: {job.error.message}"
        show(job, human)
        return EXIT_FAILED if job.status == "FAILED" else 0

    run(action)


def unpack(url: str, folder: Path) -> None:
    """Unpacks the ZIP at a presigned URL into ``folder`` and says what it wrote."""
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - presigned https
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    try:
        archive.extractall(folder)
    except OSError as error:
        raise Usage(f"cannot write into {folder}: {error.strerror}") from None
    note(f"wrote {len(names)} file{'s' * (len(names) != 1)} to {folder}: {', '.join(names)}")


@jobs_app.command("ls")
def jobs_ls() -> None:
    """Your jobs, newest first."""
    run(
        lambda: table(
            client().jobs(), "jobs", lambda j: [j.id, j.name, j.status, age(j.created_at)]
        )
    )


@jobs_app.command("get")
def jobs_get(job_id: str) -> None:
    """One job, with its result URL or error."""
    run(lambda: show(j := client().job(job_id), f"{j.id} {j.name} {j.status}"))


# --- workspace commands -----------------------------------------------------------------------


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_command(
    context: typer.Context,
    project: ProjectOption,
    terminal: Annotated[str, typer.Option("--terminal", "-t", help="The terminal.")] = "t1",
) -> None:
    """Run a command in a project's workspace: its output streams here, and berth exits with
    the command's exit code (Ctrl-C cancels it: 130).  berth run -P demo -- make test"""

    def action() -> int:
        text = " ".join(context.args)
        if not text:
            raise Usage("give the command after --, e.g. berth run -P demo -- make test")
        return stream_command(client(), project, terminal, text)

    run(action)


@commands_app.command("connect")
def commands_connect(
    project: ProjectOption,
    terminal: Annotated[str, typer.Option("--terminal", "-t", help="The terminal.")] = "t1",
) -> None:
    """A single-use URL (valid for workers.connect_url_seconds) that lets a browser hear one
    terminal with no AWS credentials: hand it to your page (see the console's terminal.html)."""

    def action() -> None:
        link = client().connect_terminal(project, terminal)
        show(link, f"{link.url}\n(open once before {link.expires_at}; hears {link.topic})")

    run(action)


@app.command("console")
def console(
    port: Annotated[int, typer.Option(help="The local port (0: any free one).")] = 8090,
) -> None:
    """Serve the web console on 127.0.0.1: sessions, jobs, a project's terminal, instances
    and usage, calling the API as you (your credentials never reach the browser)."""

    def action() -> None:
        from berth_client.console import ConsoleServer

        try:
            server = ConsoleServer(client(), port=port)
        except OSError as error:
            raise Usage(f"cannot listen on 127.0.0.1:{port}: {error.strerror}") from None
        note(f"berth console on {server.url} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        finally:
            server.stop()

    run(action)


QUIET_SECONDS = 1.0
"""Silence on the socket after which ``berth run`` reads the saved log: output the worker
sent before the subscription took hold shows within ~1 s even if no frame follows it."""
HEARD_QUIET_SECONDS = 5.0
"""Once live frames flow, the saved log is read only after this much silence (a lost frame
shows as a gap at the next one; this covers a lost last frame and a lost end)."""


def stream_command(api: BerthClient, project: str, terminal: str, text: str) -> int:
    """Queues the command, then follows it: the saved log from the start, joined without gap
    or repeat by the live frames (each says at which byte of the log it starts). Ctrl-C asks
    the API to cancel it (from a thread, not the signal handler) and waits for its end; a
    second Ctrl-C stops waiting."""
    queued = api.run_command(project, text, terminal)  # also makes the caller the owner
    interrupted = threading.Event()

    def cancel() -> None:
        try:
            api.cancel_command(project, queued.id)
        except ApiError as error:
            fail(f"could not cancel {error.code}: {error.message}")

    def on_interrupt(*_: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # the second Ctrl-C: stop waiting
        interrupted.set()
        note(f"cancelling {queued.id} (Ctrl-C again to stop waiting)")
        threading.Thread(target=cancel, name="cancel", daemon=True).start()

    from websockets.exceptions import ConnectionClosed

    previous = signal.signal(signal.SIGINT, on_interrupt)
    printed = 0
    try:
        try:
            topic = f"terminal:{project}:{terminal}"
            with api.subscribe(topic, quiet=QUIET_SECONDS) as frames:
                printed, ended = _read_saved(api, project, queued.id, 0)
                heard, last_read = False, time.monotonic()
                for frame in frames if not ended else ():
                    if frame is None:  # quiet: whatever was saved meanwhile
                        if heard and time.monotonic() - last_read < HEARD_QUIET_SECONDS:
                            continue
                        printed, ended = _read_saved(api, project, queued.id, printed)
                        last_read = time.monotonic()
                        if ended:
                            break
                        continue
                    if frame.get("command_id") != queued.id:
                        continue
                    heard = True
                    if frame["type"] == "output":
                        printed = _show(api, project, queued.id, frame, printed)
                    elif frame["data"]["status"] in ENDED:
                        break
        except ConnectionClosed:
            pass  # the socket went away (an idle timeout, a network change): read the log
        final = _follow(api, project, queued.id, printed)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set() or final.status == "CANCELLED":
        return EXIT_INTERRUPTED
    if final.error and final.exit_code is None:
        fail(f"{final.error.code}: {final.error.message}")
        return EXIT_FAILED
    return int(final.exit_code or 0)


ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _follow(api: BerthClient, project: str, command_id: str, printed: int) -> CommandOut:
    """Until the command ends, prints its saved log past ``printed`` (what live frames did
    not bring); then the rest of it. Returns the ended command."""
    while True:
        command = api.command(project, command_id)
        if command.status in ENDED:
            while True:  # the rest of its log, however long
                before = printed
                printed, complete = _read_saved(api, project, command_id, printed)
                if complete or printed == before:
                    return command
        printed, _ = _read_saved(api, project, command_id, printed)
        api.sleep(1)


def _show(
    api: BerthClient, project: str, command_id: str, frame: dict[str, Any], printed: int
) -> int:
    """Prints an output frame's part past ``printed`` (a byte of the log); returns where the
    output now stands. What lies before the frame (said before we listened, or a lost frame)
    comes from the saved log; so does a frame that overlaps what was printed, as its text
    cannot be cut at a byte (bytes that are not UTF-8 are U+FFFD in it)."""
    data = frame["data"].encode()
    start = int(frame.get("offset", printed))
    end = int(frame.get("next_offset", start + len(data)))  # older workers sent no next_offset
    if start > printed:
        printed = _catch_up(api, project, command_id, printed, start)
    if printed == start:
        _write(data)
        return end
    return _catch_up(api, project, command_id, printed, end)


def _read_saved(api: BerthClient, project: str, command_id: str, offset: int) -> tuple[int, bool]:
    """Prints what the saved log holds past ``offset`` (one read); returns where it stopped
    and whether that is the end of an ended command's log."""
    piece = api.output(project, command_id, offset)
    _write(piece.data.encode())
    return piece.next_offset, piece.complete


def _catch_up(api: BerthClient, project: str, command_id: str, offset: int, until: int) -> int:
    """Prints the saved log from ``offset`` until it reaches ``until`` (a live frame said where
    its bytes are), waiting for it to be saved that far; returns where it stopped, which may
    be past ``until``."""
    while offset < until:
        before = offset
        offset, complete = _read_saved(api, project, command_id, offset)
        if complete:
            return offset
        if offset == before:
            api.sleep(0.5)  # the worker saves its log about every second
    return offset


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@commands_app.command("ls")
def commands_ls(project: ProjectOption) -> None:
    """A project's commands, newest first: id, status, exit code, age, command."""
    run(
        lambda: table(
            client().commands(project),
            "commands",
            lambda c: [c.id, c.status, exit_text(c), age(c.created_at), c.command],
        )
    )


def exit_text(command: CommandOut) -> str:
    return "-" if command.exit_code is None else f"exit {command.exit_code}"


def command_text(command: CommandOut) -> str:
    """A command's status line, and its error on a line of its own."""
    took = f" {command.duration_seconds:.1f}s" if command.duration_seconds is not None else ""
    line = f"{command.id} {command.status} {exit_text(command)}{took}"
    if command.error:
        line += f"\nerror {command.error.code}: {command.error.message}"
    return line


@commands_app.command("get")
def commands_get(command_id: str, project: ProjectOption) -> None:
    """One command: its status, exit code, duration and error."""

    def action() -> int:
        command = client().command(project, command_id)
        show(command, command_text(command))
        return EXIT_FAILED if command.status == "FAILED" else 0

    run(action)


@commands_app.command("cancel")
def commands_cancel(command_id: str, project: ProjectOption, wait: WaitOption = False) -> None:
    """Cancel a queued command, or stop a running one; --wait until it has ended."""

    def action() -> None:
        api = client()
        command = api.cancel_command(project, command_id)
        if wait:
            command = api.wait_for(
                lambda: api.command(project, command_id), ENDED, on_change=progress("command")
            )
        show(command, command_text(command))

    run(action)


@commands_app.command("logs")
def commands_logs(command_id: str, project: ProjectOption) -> None:
    """A command's output so far (its saved log), from the start."""

    def action() -> None:
        api = client()
        offset = 0
        while True:
            piece = api.output(project, command_id, offset)
            _write(piece.data.encode())
            if piece.next_offset == offset:
                break
            offset = piece.next_offset

    run(action)


# --- workspace files --------------------------------------------------------------------------


@files_app.command("ls")
def files_ls(
    project: ProjectOption,
    prefix: Annotated[str | None, typer.Option(help="Only paths that start with this.")] = None,
) -> None:
    """The project's files: path, size in bytes, last change."""
    run(
        lambda: table(
            client().files(project, prefix),
            "files",
            lambda f: [f.path, str(f.size), f.modified_at],
        )
    )


@files_app.command("get")
def files_get(
    path: str,
    project: ProjectOption,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write it ('-': stdout).")
    ] = None,
) -> None:
    """Download one of the project's files (to its name here, unless --output)."""

    def action() -> None:
        link = client().download_file(project, path)
        with urllib.request.urlopen(link.url, timeout=300) as response:  # noqa: S310 - presigned
            data = response.read()
        if output == Path("-"):
            _write(data)
            return
        target = output or Path(Path(path).name)
        try:
            target.write_bytes(data)
        except OSError as error:
            raise Usage(f"cannot write {target}: {error.strerror}") from None
        note(f"wrote {len(data)} bytes to {target}")

    run(action)


@files_app.command("put")
def files_put(
    local: Annotated[Path, typer.Argument(help="The file to upload.")],
    project: ProjectOption,
    path: Annotated[
        str | None, typer.Option("--path", help="Its path in the project (default: its name).")
    ] = None,
) -> None:
    """Upload a file into the project (the next command sees it)."""

    def action() -> None:
        try:
            data = local.read_bytes()
        except OSError as error:
            raise Usage(f"cannot read {local}: {error.strerror}") from None
        target = path or local.name
        form = client().upload_file(project, target, len(data))
        post_form(form.url, form.fields or {}, data)
        note(f"uploaded {len(data)} bytes to {project}:{target}")

    run(action)


def post_form(url: str, fields: dict[str, str], data: bytes) -> None:
    """A presigned S3 POST: the form's fields, then the file."""
    from urllib3 import encode_multipart_formdata

    body, content_type = encode_multipart_formdata([*fields.items(), ("file", ("file", data))])
    request = urllib.request.Request(  # noqa: S310 - the presigned URL the API gave
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=300):  # noqa: S310
            return
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode("utf-8", "replace")
        raise ApiError(
            error.code, "upload_refused", f"storage refused the upload: {detail}"
        ) from None


# --- instances --------------------------------------------------------------------------------


@instances_app.command("create")
def instances_create(
    blob_id: Annotated[str, typer.Option("--blob-id", help="The blob's id.")],
    wait: WaitOption = False,
) -> None:
    """Launch an instance that fetches the blob and runs its script; --wait until ready."""

    def action() -> int:
        api = client()
        instance = api.create_instance(blob_id)
        if wait:
            instance = api.wait_for(
                lambda: api.instance(instance.id),
                {"ready", "failed", "terminated"},
                on_change=progress("instance"),
            )
        show(instance, f"{instance.id} {instance.name} {instance.status}")
        return EXIT_FAILED if instance.status == "failed" else 0

    run(action)


@instances_app.command("ls")
def instances_ls() -> None:
    """Your instances with live EC2 data."""
    run(
        lambda: table(
            client().instances(),
            "instances",
            lambda i: [i.id, i.name, i.status, age(i.created_at), i.private_ip or "-"],
        )
    )


@instances_app.command("get")
def instances_get(instance_id: str) -> None:
    """One instance."""
    run(lambda: show(i := client().instance(instance_id), f"{i.id} {i.status}"))


@instances_app.command("logs")
def instances_logs(instance_id: str) -> None:
    """What the instance's script printed (stdout here, stderr on stderr) and its exit code."""

    def action() -> int:
        log = client().instance_logs(instance_id)
        if state["json"]:
            show(log)
        else:
            _write(log.stdout.encode())
            sys.stderr.write(log.stderr)
            ended = "" if log.exit_code is None else f", exit {log.exit_code}"
            note(f"{log.id} {log.status}: script {log.script_status or 'not started'}{ended}")
        return EXIT_FAILED if log.exit_code not in (None, 0) else 0

    run(action)


@instances_app.command("rm")
def instances_rm(instance_id: str) -> None:
    """Terminate an instance."""
    run(lambda: show(i := client().delete_instance(instance_id), f"{i.id} {i.status}"))


if __name__ == "__main__":
    main()


# --- usage and budgets ------------------------------------------------------------------------

GroupOption = Annotated[str, typer.Option("--by", help="Group by capability, day or resource.")]
FromOption = Annotated[
    str | None, typer.Option("--from", help="Start: a date or ISO time (default: this month).")
]
ToOption = Annotated[str | None, typer.Option("--to", help="End, exclusive (default: now).")]


def usage_text(usage: UsageOut) -> str:
    """The groups as aligned lines, then the total and the budget."""
    rows = [
        [g.key, g.capability or "", str(g.count), f"{g.seconds:.0f}s", f"${g.dollars:.4f}"]
        for g in usage.groups
    ]
    total = usage.total
    rows.append(["total", "", str(total.count), f"{total.seconds:.0f}s", f"${total.dollars:.4f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    budget = usage.budget
    limit = "no budget" if budget.monthly_budget_usd is None else (
        f"budget ${budget.monthly_budget_usd:.2f}"
        + (" — over: new compute is refused" if budget.over_budget else "")
    )  # fmt: skip
    lines.append(
        f"this month ${budget.spent_this_month_usd:.4f}, {limit} (resets {budget.resets_at})"
    )
    return f"{usage.start} to {usage.end} by {usage.group_by}\n" + "\n".join(lines)


@app.command("usage")
def usage(by: GroupOption = "capability", start: FromOption = None, end: ToOption = None) -> None:
    """Your usage (this month by capability unless asked) with a total and your budget."""
    run(lambda: show(u := client().usage(start, end, by), usage_text(u)))


@admin_app.command("usage")
def admin_usage(
    user: Annotated[str | None, typer.Argument(help="One user (their ARN); none: all.")] = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM (default: this month).")] = None,
    by: GroupOption = "capability",
) -> None:
    """Every user's spend this month, most first (or one user's usage, as they see it)."""

    def action() -> None:
        api = client()
        if user:
            shown = api.user_usage(user, group_by=by)
            show(shown, usage_text(shown))
            return
        listing = api.all_usage(month)
        if state["json"]:
            show(listing)
            return
        table(
            listing.users,
            "users with usage",
            lambda u: [f"${u.dollars:.4f}", f"{u.seconds:.0f}s", str(u.count), u.user],
        )
        note(f"{listing.month}: ${listing.total_dollars:.4f} in all")

    run(action)


@admin_app.command("budget")
def admin_budget(
    user: Annotated[str, typer.Argument(help="The user (their ARN).")],
    dollars: Annotated[str, typer.Argument(help="Monthly budget in dollars, or 'default'.")],
) -> None:
    """Set one user's monthly budget ('default': back to the deployment's)."""

    def action() -> None:
        try:
            amount = None if dollars == "default" else float(dollars)
        except ValueError:
            raise Usage(
                f"budget must be a number of dollars or 'default' (got {dollars!r})"
            ) from None
        budget = client().set_budget(user, amount)
        limit = "none" if budget.monthly_budget_usd is None else f"${budget.monthly_budget_usd:.2f}"
        show(budget, f"budget {limit}; spent ${budget.spent_this_month_usd:.4f} this month")

    run(action)
