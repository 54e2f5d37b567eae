"""The Python client: SigV4 on every request, retries only where they are safe, typed
results, waiting for a status."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from berth_client.client import ApiError, BerthClient, Settings
from berth_client.models import Output
from tests.fake_api import BODY, serving
from workers.service import whole_characters

SESSION = {
    "id": "ses_" + "1" * 28, "user": "arn:x", "profile": "default", "status": "PENDING",
    "private_ip": None, "port": 8080, "task_arn": None, "created_at": "2026-11-28T00:00:00Z",
    "updated_at": "2026-11-28T00:00:00Z", "expires_at": "2026-11-28T01:00:00Z",
    "last_heartbeat_at": "2026-11-28T00:00:00Z", "idle_expires_at": "2026-11-28T00:30:00Z",
    "error": None,
}  # fmt: skip
COMMAND = {
    "id": "cmd_" + "2" * 28, "project": "demo", "terminal": "t1", "command": "make deploy",
    "status": "QUEUED", "sequence": "1", "exit_code": None, "created_at": "2026-11-28T00:00:00Z",
    "started_at": None, "finished_at": None, "duration_seconds": None, "cancel_requested": False,
    "error": None, "output_tail": "", "log_url": None,
}  # fmt: skip


class Script:
    """What the fake API answers, in order; and what it was asked."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def respond(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        self.requests.append((method, path, headers))
        return self.answers.pop(0)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Script, BerthClient, list[float]]]:
    script = Script()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    slept: list[float] = []
    with serving(script.respond) as url:
        yield script, BerthClient(Settings(api_url=url), sleep=slept.append), slept


def error(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": "m"}}


def test_requests_are_sigv4_signed_and_results_typed(api: Any) -> None:
    script, client, _ = api
    script.answers = [(201, SESSION)]
    session = client.start_session("default", 60)
    assert (session.id, session.status) == (SESSION["id"], "PENDING")
    (method, path, headers) = script.requests[0]
    assert (method, path) == ("POST", "/sessions")
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/execute-api/aws4_request" in headers["Authorization"]


def test_throttling_and_unavailable_are_retried_with_growing_jittered_waits(api: Any) -> None:
    script, client, slept = api
    script.answers = [(429, error("throttled")), (503, error("unavailable")), (201, SESSION)]
    assert client.start_session().id == SESSION["id"]
    assert len(slept) == 2 and 0 <= slept[0] <= 0.25 and 0 <= slept[1] <= 0.5


def test_a_post_is_not_retried_after_a_server_error(api: Any) -> None:
    script, client, slept = api
    script.answers = [(500, error("internal_error")), (201, SESSION)]
    with pytest.raises(ApiError) as raised:
        client.create_instance("blob-1")  # it may have been launched: never twice
    assert (raised.value.status, raised.value.code) == (500, "internal_error")
    assert len(script.requests) == 1 and slept == []


def test_a_command_is_retried_under_one_idempotency_key(api: Any) -> None:
    """run_command names each call: a retry after a server error or a lost answer sends the
    same key, so the API hands back the command the first attempt queued."""
    script, client, slept = api
    script.answers = [(500, error("internal_error")), (502, error("bad_gateway")), (200, COMMAND)]
    assert client.run_command("demo", "make deploy").id == COMMAND["id"]
    keys = [json.loads(headers[BODY])["idempotency_key"] for _, _, headers in script.requests]
    assert len(keys) == 3 and len(set(keys)) == 1 and len(slept) == 2
    script.answers = [(202, COMMAND)]
    client.run_command("demo", "make deploy")  # a new call: a new command
    assert json.loads(script.requests[-1][2][BODY])["idempotency_key"] != keys[0]
    script.answers = [(202, COMMAND)]
    client.run_command("demo", "make deploy", idempotency_key="build-7")
    assert json.loads(script.requests[-1][2][BODY])["idempotency_key"] == "build-7"


def test_a_get_is_retried_after_a_server_error_until_the_budget_is_spent(api: Any) -> None:
    script, client, slept = api
    script.answers = [(502, error("bad_gateway"))] * 5
    with pytest.raises(ApiError):
        client.session(SESSION["id"])
    assert len(script.requests) == 5 and len(slept) == 4


def test_wait_for_reports_each_status_once(api: Any) -> None:
    script, client, _ = api
    script.answers = [
        (200, SESSION), (200, SESSION), (200, {**SESSION, "status": "STARTING"}),
        (200, {**SESSION, "status": "RUNNING", "private_ip": "10.0.0.9"}),
    ]  # fmt: skip
    seen: list[str] = []
    final = client.wait_for(
        lambda: client.session(SESSION["id"]),
        {"RUNNING"},
        on_change=lambda s: seen.append(s.status),
    )
    assert (final.status, final.private_ip) == ("RUNNING", "10.0.0.9")
    assert seen == ["PENDING", "STARTING", "RUNNING"]


def test_errors_keep_the_apis_code(api: Any) -> None:
    script, client, _ = api
    script.answers = [(404, error("not_found"))]
    with pytest.raises(ApiError) as raised:
        client.job("job_" + "0" * 32)
    assert (raised.value.status, raised.value.code) == (404, "not_found")


def piece(offset: int, data: str, complete: bool) -> Output:
    return Output(data=data, offset=offset, next_offset=offset + len(data), complete=complete)


class LostSocketApi:
    """A client whose WebSocket closes before any frame (an idle timeout): the command's
    output must still reach the terminal, from its saved log."""

    def __init__(self) -> None:
        self.log = "line 1\nline 2\n" * 3
        self.reads = 0
        self.slept: list[float] = []

    def run_command(self, project: str, text: str, terminal: str) -> Any:
        return type("Queued", (), {"id": "cmd_1"})()

    def cancel_command(self, project: str, command_id: str) -> None:
        raise AssertionError("nothing cancels it")

    @contextlib.contextmanager
    def subscribe(self, *topics: str, quiet: float) -> Iterator[Iterator[dict[str, Any]]]:
        from websockets.exceptions import ConnectionClosed

        raise ConnectionClosed(None, None)
        yield iter(())  # pragma: no cover

    def command(self, project: str, command_id: str) -> Any:
        self.reads += 1  # RUNNING twice, then it ends with exit code 3
        ended = self.reads > 2
        return type(
            "Shown",
            (),
            {"status": "FAILED" if ended else "RUNNING", "exit_code": 3, "error": None},
        )()

    def output(self, project: str, command_id: str, offset: int) -> Output:
        saved = self.log[: 7 * (self.reads + 1)]  # the worker saves a little more each time
        chunk = saved[offset : offset + 10]  # and the API gives 10 bytes a read
        complete = self.reads > 2 and offset + len(chunk) >= len(saved)
        return piece(offset, chunk, complete)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_run_follows_the_saved_log_when_the_socket_is_gone(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    from berth_client.cli import stream_command

    lost = LostSocketApi()
    assert stream_command(lost, "demo", "t1", "make test") == 3  # type: ignore[arg-type]
    assert capsysbinary.readouterr().out.decode() == lost.log[: 7 * 4]
    assert lost.slept  # it waited between reads, not in a busy loop


class QuietSocketApi:
    """A command whose only output came before the subscription took hold, then silence:
    the socket hears nothing until the command ends at quiet tick ``ends_at``."""

    def __init__(self, ends_at: int = 6, interrupt_at: tuple[int, ...] = ()) -> None:
        self.ticks = 0
        self.ends_at = ends_at
        self.interrupt_at = interrupt_at
        self.shown_at: int | None = None
        self.cancels: list[str] = []

    def run_command(self, project: str, text: str, terminal: str) -> Any:
        return type("Queued", (), {"id": "cmd_1"})()

    def cancel_command(self, project: str, command_id: str) -> None:
        self.cancels.append(threading.current_thread().name)
        self.ends_at = min(self.ends_at, self.ticks + 1)  # its worker stops it

    @contextlib.contextmanager
    def subscribe(self, *topics: str, quiet: float | None = None) -> Iterator[Iterator[None]]:
        assert quiet is not None  # without it, a silent command would show nothing

        def silence() -> Iterator[None]:
            while self.ticks < 50:  # then the socket closes
                self.ticks += 1
                if self.ticks in self.interrupt_at:
                    signal.raise_signal(signal.SIGINT)  # Ctrl-C
                yield None

        yield silence()

    def command(self, project: str, command_id: str) -> Any:
        ended = self.ticks >= self.ends_at
        status = ("CANCELLED" if self.cancels else "SUCCEEDED") if ended else "RUNNING"
        return type("Shown", (), {"status": status, "exit_code": 0, "error": None})()

    def output(self, project: str, command_id: str, offset: int) -> Output:
        saved = "started\n" if self.ticks >= 1 else ""  # saved just after the subscription
        if saved[offset:] and self.shown_at is None:
            self.shown_at = self.ticks
        return piece(offset, saved[offset:], self.ticks >= self.ends_at)

    def sleep(self, seconds: float) -> None:
        self.ticks += 1


def test_run_shows_output_sent_before_it_listened_while_the_command_still_runs(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    from berth_client.cli import stream_command

    quiet = QuietSocketApi(ends_at=6)
    assert stream_command(quiet, "demo", "t1", "echo started; sleep 60") == 0  # type: ignore[arg-type]
    assert capsysbinary.readouterr().out == b"started\n"  # once
    assert quiet.shown_at == 1  # at the first quiet second, not when the command ended


def test_ctrl_c_cancels_from_a_thread_and_waits_for_the_end(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    from berth_client.cli import stream_command

    quiet = QuietSocketApi(ends_at=1000, interrupt_at=(2,))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        assert stream_command(quiet, "demo", "t1", "sleep 60") == 130  # type: ignore[arg-type]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    assert quiet.cancels == ["cancel"]  # once, from its thread: no HTTP in a signal handler
    assert quiet.ticks < 10  # it ended soon after the cancel, and berth saw it end


def test_a_second_ctrl_c_stops_waiting() -> None:
    from berth_client.cli import stream_command

    class Stubborn(QuietSocketApi):
        def cancel_command(self, project: str, command_id: str) -> None:
            self.cancels.append("asked")  # the worker takes its time

    stubborn = Stubborn(ends_at=1000, interrupt_at=(2, 4))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):  # berth's run() maps it to exit code 130
            stream_command(stubborn, "demo", "t1", "sleep 600")  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGINT, before)


LOG = b"\xff\xfehello\n" + "\u20acuro\n".encode()
FRAMES = [(0, 2), (2, 8), (8, len(LOG))]  # the bytes of the log each output frame decodes


class FramedApi:
    """A command whose output has bytes that are not UTF-8 (two U+FFFD, six bytes of text
    for two of the log): the saved log holds ``saved[n]`` bytes at the n-th read, and the
    socket brings the output frames ``heard`` (by index), then the end."""

    def __init__(self, saved: list[int], heard: list[int]) -> None:
        self.saved = saved
        self.heard = heard
        self.reads = 0

    def run_command(self, project: str, text: str, terminal: str) -> Any:
        return type("Queued", (), {"id": "cmd_1"})()

    @contextlib.contextmanager
    def subscribe(self, *topics: str, quiet: float) -> Iterator[Iterator[dict[str, Any]]]:
        def frames() -> Iterator[dict[str, Any]]:
            for n in self.heard:
                start, end = FRAMES[n]
                text = LOG[start:end].decode("utf-8", "replace")
                yield {"type": "output", "command_id": "cmd_1", "seq": n + 2, "data": text,
                       "offset": start, "next_offset": end}  # fmt: skip
            yield {"type": "status", "command_id": "cmd_1", "data": {"status": "SUCCEEDED"}}

        yield frames()

    def command(self, project: str, command_id: str) -> Any:
        return type("Shown", (), {"status": "SUCCEEDED", "exit_code": 0, "error": None})()

    def output(self, project: str, command_id: str, offset: int) -> Output:
        """As the API reads it: by the log's bytes, in whole characters until the end."""
        saved = self.saved[min(self.reads, len(self.saved) - 1)]
        self.reads += 1
        chunk = LOG[offset:saved]
        if saved < len(LOG):
            chunk = whole_characters(chunk)
        return Output(
            offset=offset,
            data=chunk.decode("utf-8", "replace"),
            next_offset=offset + len(chunk),
            complete=saved == len(LOG) and offset + len(chunk) == len(LOG),
        )

    def sleep(self, seconds: float) -> None:
        pass


@pytest.mark.parametrize(
    ("saved", "heard"),
    [
        ([0], [0, 1, 2]),  # listening before any output: every frame live
        ([8], [1, 2]),  # joined late: the log up to a frame, then a replayed frame and the rest
        ([5, 15], [1, 2]),  # the log was saved to inside a frame: the rest of it from the log
        ([0, 2, 15], [2]),  # two frames lost: read from the log before the next one
    ],
)
def test_run_prints_output_that_is_not_utf8_once_and_in_order(
    saved: list[int], heard: list[int], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    from berth_client.cli import stream_command

    api = FramedApi(saved, heard)
    assert stream_command(api, "demo", "t1", "cat data.bin") == 0  # type: ignore[arg-type]
    assert capsysbinary.readouterr().out.decode() == LOG.decode("utf-8", "replace")


def test_a_saved_local_configuration_follows_the_sandbox_running_now(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each make local writes new credential files; `berth config --local` from an earlier
    run must not point later commands at files that are gone."""
    running = tmp_path / "local.json"
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({
        "api_url": "http://127.0.0.1:8080", "profile": "berth-local-alice", "local": str(running),
        "config_file": "/gone/aws-config", "credentials_file": "/gone/aws-credentials",
    }))  # fmt: skip
    running.write_text(json.dumps({
        "api_url": "http://127.0.0.1:9090", "websocket_url": "ws://127.0.0.1:9091",
        "region": "us-east-1", "config_file": "/now/aws-config",
        "credentials_file": "/now/aws-credentials", "state": "/now",
    }))  # fmt: skip
    monkeypatch.setenv("BERTH_CONFIG", str(saved))
    for name in ("BERTH_API_URL", "BERTH_WEBSOCKET_URL", "BERTH_PROFILE", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    settings = Settings.load()
    assert (settings.api_url, settings.config_file) == ("http://127.0.0.1:9090", "/now/aws-config")
    assert settings.profile == "berth-local-alice"  # whom to sign as stays saved
    # what the banner exports wins over anything saved
    monkeypatch.setenv("AWS_CONFIG_FILE", "/exported/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/exported/aws-credentials")
    exported = Settings.load()
    assert (exported.config_file, exported.credentials_file) == (
        "/exported/aws-config",
        "/exported/aws-credentials",
    )

    # and once that sandbox stops, one line says so (not "profile not found")
    running.unlink()
    monkeypatch.delenv("AWS_CONFIG_FILE")
    with pytest.raises(ApiError) as stopped:
        Settings.load()
    assert stopped.value.code == "no_sandbox"
    assert "start one there with `make local`" in stopped.value.message
