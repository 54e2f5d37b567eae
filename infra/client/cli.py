"""``berth``: the command line over berth's API (SigV4 everywhere, make local included).

Exit codes: 0 ok, 1 the resource ended in a failed state (or the command's own non-zero
exit code for ``berth run``), 2 usage, 3 authentication, 4 not found, 5 another API error,
130 interrupted.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from infra.client.client import ApiError, BerthClient, Settings, running_sandbox
from sessions.models import SessionOut

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_API, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130

app = typer.Typer(
    help="berth: per-user compute on demand — sessions, jobs, workspace commands, instances.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sessions_app = typer.Typer(help="Per-user containers (Fargate tasks).", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs run on Lambda or Fargate by name.", no_args_is_help=True)
commands_app = typer.Typer(help="Commands run in a project's workspace.", no_args_is_help=True)
instances_app = typer.Typer(help="EC2 instances that fetch a blob.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.add_typer(jobs_app, name="jobs")
app.add_typer(commands_app, name="commands")
app.add_typer(instances_app, name="instances")

err = Console(stderr=True)
out = Console()
state: dict[str, Any] = {"json": False, "profile": None, "api_url": None}

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
WaitOption = Annotated[bool, typer.Option("--wait", help="Wait for a final state.")]


@app.callback()
def main(
    profile: Annotated[
        str | None, typer.Option(help="AWS profile to sign with (default: the standard chain).")
    ] = None,
    api_url: Annotated[str | None, typer.Option(help="The API's base URL.")] = None,
    json_output: JsonOption = False,
) -> None:
    state.update(profile=profile, api_url=api_url, json=json_output)


def client() -> BerthClient:
    return BerthClient(Settings.load(profile=state["profile"], api_url=state["api_url"]))


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
        out.print(human, highlight=False)


def run(action: Callable[[], int | None]) -> None:
    """Runs a command; maps API errors to exit codes (and one line on stderr)."""
    try:
        code = action()
    except ApiError as error:
        err.print(f"[red]error[/red] {error.code}: {error.message}", highlight=False)
        if error.code in {"not_configured", "no_credentials"} or error.status in {401, 403}:
            raise typer.Exit(EXIT_AUTH) from None
        raise typer.Exit(EXIT_NOT_FOUND if error.status == 404 else EXIT_API) from None
    except TimeoutError as error:
        err.print(f"[red]timed out[/red]: {error}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code or 0)


def progress(label: str) -> Callable[[Any], None]:
    """A status line on stderr each time the status moves (stdout stays the result)."""

    def on_change(resource: Any) -> None:
        err.print(f"{label} {resource.id}: {resource.status}", highlight=False)

    return on_change


# --- configuration ----------------------------------------------------------------------------


@app.command("config")
def configure(
    stack: Annotated[
        str | None, typer.Option(help="Read ApiUrl/WebSocketUrl from this CloudFormation stack.")
    ] = None,
    local: Annotated[bool, typer.Option(help="Use the running `make local` sandbox.")] = False,
    region: Annotated[str | None, typer.Option(help="The stack's region.")] = None,
    user: Annotated[str, typer.Option(help="With --local: the local user to sign as.")] = "alice",
) -> None:
    """Save where the API is (and how to sign) for later commands."""

    def action() -> None:
        if local == bool(stack):
            raise typer.BadParameter("give --stack NAME or --local")
        if local:
            sandbox = running_sandbox()
            if sandbox is None:
                raise ApiError(0, "not_configured", "no running sandbox found: run `make local`")
            settings = Settings(
                **sandbox,
                profile=f"berth-local-{user}",
                local=True,  # later commands follow the sandbox running then
            )
        else:
            import boto3

            cloudformation = boto3.client("cloudformation", region_name=region)
            (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
            settings = Settings(
                api_url=outputs["ApiUrl"],
                websocket_url=outputs.get("WebSocketUrl"),
                region=cloudformation.meta.region_name,
                profile=state["profile"],
            )
        path = settings.save()
        show({"saved": str(path), "api_url": settings.api_url}, f"saved {path}")

    run(action)


# --- sessions ---------------------------------------------------------------------------------


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
        address = f"{session.private_ip}:{session.port}" if session.private_ip else "-"
        show(session, f"{session.id} {session.status} {address}{reach(session)}")
        return EXIT_FAILED if session.status == "FAILED" else 0

    run(action)


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
    """Your sessions, newest first."""
    run(lambda: _list(client().sessions(), lambda s: f"{s.id} {s.profile} {s.status}"))


@sessions_app.command("get")
def sessions_get(session_id: str) -> None:
    """One session."""
    run(lambda: show(s := client().session(session_id), f"{s.id} {s.status}"))


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


# --- jobs -------------------------------------------------------------------------------------


def _input(value: str) -> dict[str, Any]:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        parsed = json.loads(text)
    except ValueError:
        raise typer.BadParameter("--input must be JSON (or @file with JSON)") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("--input must be a JSON object")
    return parsed


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
    payload = _input(input_)

    def action() -> int:
        api = client()
        job = api.run_job(name, payload, key)
        if wait or download:
            job = api.wait_for(
                lambda: api.job(job.id), {"SUCCEEDED", "FAILED"}, on_change=progress("job")
            )
        if download and job.status in {"SUCCEEDED", "FAILED"}:
            url = job.result_url or (job.error.failure_url if job.error else None)
            if url:
                with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - presigned
                    zipfile.ZipFile(io.BytesIO(response.read())).extractall(download)
        human = f"{job.id} {job.name} {job.status}"
        if job.error:
            human += f" {job.error.code}: {job.error.message}"
        show(job, human)
        return EXIT_FAILED if job.status == "FAILED" else 0

    run(action)


@jobs_app.command("ls")
def jobs_ls() -> None:
    """Your jobs, newest first."""
    run(lambda: _list(client().jobs(), lambda j: f"{j.id} {j.name} {j.status}"))


@jobs_app.command("get")
def jobs_get(job_id: str) -> None:
    """One job, with its result URL or error."""
    run(lambda: show(j := client().job(job_id), f"{j.id} {j.name} {j.status}"))


# --- workspace commands -----------------------------------------------------------------------


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_command(
    context: typer.Context,
    project: Annotated[str, typer.Option("--project", "-P", help="The project (workspace).")],
    terminal: Annotated[str, typer.Option("--terminal", "-t", help="The terminal.")] = "t1",
) -> None:
    """Run a command in a project's workspace: its output streams here, and berth exits with
    the command's exit code (Ctrl-C cancels it: 130).  berth run -P demo -- make test"""
    text = " ".join(context.args)
    if not text:
        raise typer.BadParameter("give the command after --")

    def action() -> int:
        return stream_command(client(), project, terminal, text)

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
            err.print(f"[red]could not cancel[/red] {error.code}: {error.message}")

    def on_interrupt(*_: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # the second Ctrl-C: stop waiting
        interrupted.set()
        err.print(f"cancelling {queued.id} (Ctrl-C again to stop waiting)", highlight=False)
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
                        data = frame["data"].encode()
                        start = int(frame.get("offset", printed))
                        if start > printed:  # output from before we listened: from the log
                            printed = _catch_up(api, project, queued.id, printed, start)
                        _write(data[max(0, printed - start) :])
                        printed = max(printed, start + len(data))
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
        err.print(f"[red]{final.error.code}[/red]: {final.error.message}", highlight=False)
        return EXIT_FAILED
    return int(final.exit_code or 0)


ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _follow(api: BerthClient, project: str, command_id: str, printed: int) -> Any:
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


def _read_saved(api: BerthClient, project: str, command_id: str, offset: int) -> tuple[int, bool]:
    """Prints what the saved log holds past ``offset`` (one read); returns where it stopped
    and whether that is the end of an ended command's log."""
    piece = api.output(project, command_id, offset)
    data = piece["data"].encode()
    _write(data)
    return offset + len(data), bool(piece["complete"])


def _catch_up(api: BerthClient, project: str, command_id: str, offset: int, until: int) -> int:
    """Prints the saved log from ``offset`` to ``until``, waiting for it to be saved that far
    (a live frame said where it starts); returns where it stopped."""
    while offset < until:
        piece = api.output(project, command_id, offset)
        data = piece["data"].encode()[: until - offset]
        _write(data)
        offset += len(data)
        if piece["complete"]:
            return offset
        if not data:
            api.sleep(0.5)  # the worker saves its log about every second
    return offset


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@commands_app.command("ls")
def commands_ls(project: Annotated[str, typer.Option("--project", "-P")]) -> None:
    """A project's commands, newest first."""
    run(
        lambda: _list(
            client().commands(project), lambda c: f"{c.id} {c.status} {c.exit_code} {c.command}"
        )
    )


@commands_app.command("get")
def commands_get(command_id: str, project: Annotated[str, typer.Option("--project", "-P")]) -> None:
    """One command."""
    run(lambda: show(c := client().command(project, command_id), f"{c.id} {c.status}"))


@commands_app.command("logs")
def commands_logs(
    command_id: str, project: Annotated[str, typer.Option("--project", "-P")]
) -> None:
    """A command's output so far (its saved log), from the start."""

    def action() -> None:
        api = client()
        offset = 0
        while True:
            piece = api.output(project, command_id, offset)
            sys.stdout.write(piece["data"])
            if piece["next_offset"] == offset:
                break
            offset = piece["next_offset"]
        sys.stdout.flush()

    run(action)


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
    run(lambda: _list(client().instances(), lambda i: f"{i.id} {i.name} {i.status}"))


@instances_app.command("get")
def instances_get(instance_id: str) -> None:
    """One instance."""
    run(lambda: show(i := client().instance(instance_id), f"{i.id} {i.status}"))


@instances_app.command("rm")
def instances_rm(instance_id: str) -> None:
    """Terminate an instance."""
    run(lambda: show(i := client().delete_instance(instance_id), f"{i.id} {i.status}"))


def _list(items: list[Any], line: Callable[[Any], str]) -> None:
    if state["json"]:
        show(items)
    else:
        for item in items:
            out.print(line(item), highlight=False)


if __name__ == "__main__":
    app()
