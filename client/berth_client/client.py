"""A Python client for berth's API: SigV4 from the standard credential chain, retries with
backoff and jitter, typed results (the API's own response models), waiting for a status,
and WebSocket subscriptions with a signed handshake.

    client = BerthClient(Settings.load())
    session = client.wait_for(lambda: client.session(client.start_session().id), {"RUNNING"})
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError
from botocore.session import Session as BotocoreSession
from pydantic import BaseModel

from berth_client.models import (
    AdminUsageOut,
    BudgetOut,
    CommandOut,
    FileOut,
    FileTransfer,
    InstanceLogOut,
    InstanceOut,
    JobOut,
    JobRunnerOut,
    LogPage,
    Output,
    ProfileOut,
    SessionOut,
    TicketOut,
    UsageOut,
    VolumeOut,
)

CONFIG_ENV = "BERTH_CONFIG"
DEFAULT_CONFIG = Path("~/.config/berth/config.json")
LOCAL_STATE = Path(".sandbox") / "local.json"
"""What a running ``make local`` writes in its checkout: its URLs and credential files."""
LOCAL_KEYS = ("api_url", "websocket_url", "region", "config_file", "credentials_file")


def find_sandbox(start: Path) -> Path | None:
    """The state file of the ``make local`` sandbox running in ``start`` or a folder above."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / LOCAL_STATE).is_file():
            return folder / LOCAL_STATE
    return None


def read_sandbox(state: Path) -> dict[str, str]:
    """Where the sandbox that wrote ``state`` answers (``LOCAL_KEYS``)."""
    try:
        sandbox = json.loads(state.read_text())
    except (OSError, ValueError):
        raise ApiError(
            0,
            "no_sandbox",
            f"no make local sandbox is running for {state.parent.parent}: "
            "start one there with `make local`",
        ) from None
    return {key: sandbox[key] for key in LOCAL_KEYS if key in sandbox}


def local_users(config_file: str) -> list[str]:
    """The users a sandbox issued profiles for (``berth-local-<user>``)."""
    parser = configparser.ConfigParser()
    parser.read(config_file)
    prefix = "profile berth-local-"
    return [s[len(prefix) :] for s in parser.sections() if s.startswith(prefix)]


def checked_url(url: str, what: str = "the API URL") -> str:
    """``url`` if it is an absolute http(s) URL; an ApiError saying what is wrong if not."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https", "ws", "wss"} or not parts.netloc:
        raise ApiError(
            0,
            "bad_url",
            f"{what} {url!r} is not a URL: give it with its scheme, "
            "e.g. https://abc123.execute-api.eu-west-1.amazonaws.com/prod or "
            "http://127.0.0.1:8080",
        )
    return url


def segment(value: str, what: str) -> str:
    """``value`` as one path segment: refused (before any request) if it could not be one."""
    if not value or "/" in value or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ApiError(
            0,
            "invalid_request",
            f"{what} {value!r} cannot be a name: no '/', control characters or empty names",
        )
    return quote(value, safe="")


def botocore_session(
    profile: str | None, config_file: str | None = None, credentials_file: str | None = None
) -> BotocoreSession:
    """A botocore session for the standard credential chain, or ``profile`` (read from the
    given AWS config/credentials files, if any: make local writes its own)."""
    session = BotocoreSession()
    for name, value in (
        ("config_file", config_file),
        ("credentials_file", credentials_file),
        ("profile", profile),
    ):
        if value:
            session.set_config_variable(name, value)
    return session


RETRY_STATUSES = {429, 503}
"""Retried for every method: nothing was done."""
FINAL_CODES = {"budget_exceeded"}
"""429s no retry within seconds can change (a budget resets next month)."""
IDEMPOTENT = {"GET", "DELETE", "HEAD"}
"""Also retried on other 5xx and connection failures."""

Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """An answer in berth's error shape (or a failure to get one)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Answered:
    """One answer of the API, as ``BerthClient.on_answer`` hears it."""

    method: str
    path: str
    status: int
    code: str
    """The error's code; empty for a 2xx."""
    retry_after: str | None


@dataclass(frozen=True)
class Settings:
    """Where the API is and whose credentials sign for it."""

    api_url: str
    websocket_url: str | None = None
    region: str = "us-east-1"
    profile: str | None = None
    """An AWS profile; None: the standard credential chain."""
    config_file: str | None = None
    credentials_file: str | None = None
    """AWS config/credentials files to read the profile from (make local writes its own)."""
    local: str | None = None
    """Saved by ``berth config --local``: the sandbox's state file; URLs and credential files
    are read from it each time, since every ``make local`` makes new ones."""

    def __post_init__(self) -> None:
        checked_url(self.api_url)
        if self.websocket_url:
            checked_url(self.websocket_url, "the WebSocket URL")

    @staticmethod
    def path() -> Path:
        return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()

    @classmethod
    def load(cls, **overrides: str | None) -> Settings:
        """Flags (``overrides``), then ``BERTH_API_URL``/``BERTH_WEBSOCKET_URL``/
        ``BERTH_PROFILE``/``AWS_REGION``, then the config file (``berth config``)."""
        stored: dict[str, Any] = {}
        if cls.path().is_file():
            try:
                stored = json.loads(cls.path().read_text())
            except ValueError:
                raise ApiError(
                    0,
                    "not_configured",
                    f"{cls.path()} is not JSON: run `berth config` again (or delete it)",
                ) from None
        environment = {
            "api_url": os.environ.get("BERTH_API_URL"),
            "websocket_url": os.environ.get("BERTH_WEBSOCKET_URL"),
            "profile": os.environ.get("BERTH_PROFILE"),
            "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            # what make local's banner exports wins over a saved configuration
            "config_file": os.environ.get("AWS_CONFIG_FILE"),
            "credentials_file": os.environ.get("AWS_SHARED_CREDENTIALS_FILE"),
        }
        explicit = {k: v for k, v in environment.items() if v}
        explicit |= {k: v for k, v in overrides.items() if v}
        if stored.get("local") and "api_url" not in explicit:  # the sandbox running now
            stored |= read_sandbox(Path(stored["local"]))
        values = {**stored, **explicit}
        if not values.get("api_url"):
            raise ApiError(
                0,
                "not_configured",
                "no API URL: run `berth config --stack NAME` (or `berth config --local` for "
                "make local), or set BERTH_API_URL",
            )
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_stack(cls, stack: str, region: str | None, profile: str | None = None) -> Settings:
        """Where a deployed stack's API is (its ApiUrl/WebSocketUrl outputs), read with the
        standard credential chain (or ``profile``)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            NoRegionError,
        )

        session = botocore_session(profile)
        try:
            cloudformation = session.create_client("cloudformation", region_name=region)
            (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
        except NoRegionError:
            raise ApiError(
                0, "no_region", "which region is the stack in? give --region (or set AWS_REGION)"
            ) from None
        except NoCredentialsError:
            raise ApiError(
                0,
                "no_credentials",
                f"no AWS credentials to read the stack with: {CREDENTIALS_HINT}",
            ) from None
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message", str(error))
            raise ApiError(404 if "does not exist" in message else 0, "stack", message) from None
        except BotoCoreError as error:
            raise ApiError(0, "no_credentials", f"{error}: {CREDENTIALS_HINT}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        if "ApiUrl" not in outputs:
            raise ApiError(404, "stack", f"stack {stack!r} has no ApiUrl output: is it berth's?")
        return cls(
            api_url=outputs["ApiUrl"],
            websocket_url=outputs.get("WebSocketUrl"),
            region=cloudformation.meta.region_name,
            profile=profile,
        )

    def save(self) -> Path:
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = {k: v for k, v in asdict(self).items() if v}
        if self.local:  # these change with every make local: read from the sandbox each time
            kept = {k: v for k, v in kept.items() if k not in LOCAL_KEYS or k == "region"}
        path.write_text(json.dumps(kept, indent=2))
        return path


CREDENTIALS_HINT = (
    "sign in (aws sso login, AWS_PROFILE or --aws-profile), or `berth config --local` for "
    "make local"
)


@dataclass
class BerthClient:
    settings: Settings
    retries: int = 4
    timeout: float = 30
    sleep: Callable[[float], None] = time.sleep
    on_answer: Callable[[Answered], None] | None = None
    """Called with every answer, retried ones too (to count or log them)."""
    _credentials: Any = field(default=None, init=False, repr=False)

    # --- transport ----------------------------------------------------------------------------

    def credentials(self) -> Any:
        if self._credentials is None:
            session = botocore_session(
                self.settings.profile, self.settings.config_file, self.settings.credentials_file
            )
            try:
                credentials = session.get_credentials()
            except BotoCoreError as exc:  # no such profile, a broken config file, ...
                hint = CREDENTIALS_HINT
                if (self.settings.profile or "").startswith("berth-local-"):
                    hint = "that is a make local profile: is make local running? start it, then "
                    hint += "`berth config --local` (or export the lines its banner prints)"
                raise ApiError(0, "no_credentials", f"{exc}: {hint}") from None
            if credentials is None:
                raise ApiError(0, "no_credentials", f"no AWS credentials: {CREDENTIALS_HINT}")
            self._credentials = credentials
        return self._credentials

    def signed(self, method: str, url: str, body: bytes = b"") -> dict[str, str]:
        """SigV4 headers (execute-api) for a request; WebSocket URLs sign as http(s)."""
        target = url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        request = AWSRequest(
            method=method,
            url=target,
            data=body,
            headers={"Content-Type": "application/json"} if body else {},
        )
        SigV4Auth(self.credentials(), "execute-api", self.settings.region).add_auth(request)
        return dict(request.headers.items())

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        *,
        keyed: bool = False,
    ) -> Any:
        """One API call, signed, retried with backoff and full jitter where that is safe: a
        GET, a DELETE, or a request whose body carries an idempotency key (``keyed``)."""
        safe = method in IDEMPOTENT or keyed
        url = self.settings.api_url.rstrip("/") + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else b""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(  # noqa: S310 - the configured API (http(s))
                url, data=data or None, method=method, headers=self.signed(method, url, data)
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    payload = response.read()
                    self._answered(method, path, response.status, "", response.headers)
                    return json.loads(payload) if payload else None
            except urllib.error.HTTPError as error:
                failure = _api_error(error.code, error.read())
                self._answered(method, path, error.code, failure.code, error.headers)
                retry = (error.code in RETRY_STATUSES and failure.code not in FINAL_CODES) or (
                    error.code >= 500 and safe
                )
            except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException) as error:
                reason = getattr(error, "reason", error)
                failure = ApiError(0, "unreachable", f"cannot reach {url}: {reason}")
                retry = safe
            if not retry or attempt == self.retries:
                raise failure
            self.sleep(random.uniform(0, min(8.0, 0.25 * 2**attempt)))  # noqa: S311 - jitter
        raise AssertionError("unreachable")  # the loop returns or raises

    def _answered(self, method: str, path: str, status: int, code: str, headers: Any) -> None:
        if self.on_answer is not None:
            retry_after = (headers or {}).get("Retry-After")
            self.on_answer(Answered(method, path, status, code, retry_after))

    def _model(self, model: type[Model], payload: Any) -> Model:
        return model.model_validate(payload)

    def _items(self, model: type[Model], path: str) -> list[Model]:
        return [model.model_validate(item) for item in self.request("GET", path)["items"]]

    def _pages(
        self,
        model: type[Model],
        path: str,
        limit: int | None,
        page_size: int = 100,
        **query: str | None,
    ) -> list[Model]:
        """Every item of a paged list (or the first ``limit``), following ``next_token``."""
        items: list[Model] = []
        token = None
        while True:
            asked = {**query, "limit": page_size, "next_token": token}
            page = self.request("GET", path, query=asked)
            items += [model.model_validate(item) for item in page["items"]]
            token = page.get("next_token")
            if not token or (limit is not None and len(items) >= limit):
                return items[:limit] if limit is not None else items

    # --- sessions -----------------------------------------------------------------------------

    def profiles(self) -> list[ProfileOut]:
        """The session profiles this deployment offers."""
        return self._items(ProfileOut, "/profiles")

    def start_session(self, profile: str = "default", ttl_seconds: int | None = None) -> SessionOut:
        body: dict[str, Any] = {"profile": profile}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return self._model(SessionOut, self.request("POST", "/sessions", body))

    def session(self, session_id: str) -> SessionOut:
        return self._model(SessionOut, self.request("GET", _session(session_id)))

    def sessions(self, limit: int | None = None) -> list[SessionOut]:
        return self._pages(SessionOut, "/sessions", limit)

    def rotate_token(self, session_id: str) -> SessionOut:
        """A new token for the session's url (routing on); the old one stops working."""
        return self._model(SessionOut, self.request("POST", f"{_session(session_id)}/token"))

    def stop_session(self, session_id: str) -> SessionOut:
        return self._model(SessionOut, self.request("DELETE", _session(session_id)))

    def heartbeat(self, session_id: str) -> SessionOut:
        return self._model(SessionOut, self.request("POST", f"{_session(session_id)}/heartbeat"))

    def session_logs(
        self,
        session_id: str,
        since: str | None = None,
        next_token: str | None = None,
        limit: int = 100,
    ) -> LogPage:
        """A page of what the session's container printed, oldest first; pass the page's
        ``next_token`` back to follow it."""
        query = {"since": since, "next_token": next_token, "limit": limit}
        return self._model(
            LogPage, self.request("GET", f"{_session(session_id)}/logs", query=query)
        )

    def volumes(self) -> list[VolumeOut]:
        """Your persistent volumes, one per profile that keeps storage."""
        return self._items(VolumeOut, "/sessions/storage")

    def wipe_volume(self, profile: str) -> VolumeOut:
        """Wipes your volume of ``profile``: its next session starts empty."""
        return self._model(
            VolumeOut, self.request("DELETE", f"/sessions/storage/{segment(profile, 'profile')}")
        )

    # --- jobs ---------------------------------------------------------------------------------

    def job_catalogue(self) -> list[JobRunnerOut]:
        """The jobs this deployment runs by name, and where each runs."""
        return self._items(JobRunnerOut, "/jobs/catalogue")

    def run_job(
        self, name: str, payload: dict[str, Any], idempotency_key: str | None = None
    ) -> JobOut:
        body: dict[str, Any] = {"name": name, "input": payload}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        return self._model(
            JobOut, self.request("POST", "/jobs", body, keyed=idempotency_key is not None)
        )

    def job(self, job_id: str) -> JobOut:
        return self._model(JobOut, self.request("GET", f"/jobs/{segment(job_id, 'job')}"))

    def jobs(self, limit: int | None = None) -> list[JobOut]:
        return self._pages(JobOut, "/jobs", limit)

    # --- instances ----------------------------------------------------------------------------

    def create_instance(self, blob_id: str) -> InstanceOut:
        return self._model(InstanceOut, self.request("POST", "/instances", {"blob_id": blob_id}))

    def instance(self, instance_id: str) -> InstanceOut:
        return self._model(InstanceOut, self.request("GET", _instance(instance_id)))

    def instances(self, limit: int | None = None) -> list[InstanceOut]:
        return self._pages(InstanceOut, "/instances", limit)

    def instance_logs(self, instance_id: str) -> InstanceLogOut:
        """The output of the script the instance ran (as far as it got), and its exit code."""
        return self._model(InstanceLogOut, self.request("GET", f"{_instance(instance_id)}/logs"))

    def delete_instance(self, instance_id: str) -> InstanceOut:
        return self._model(InstanceOut, self.request("DELETE", _instance(instance_id)))

    # --- usage and budgets --------------------------------------------------------------------

    def usage(
        self, start: str | None = None, end: str | None = None, group_by: str = "capability"
    ) -> UsageOut:
        """Your usage from ``start`` (default: this month's first day) to ``end`` (default:
        now), grouped by ``day``, ``capability`` or ``resource``, with your budget."""
        query = {"from": start, "to": end, "group_by": group_by}
        return self._model(UsageOut, self.request("GET", "/usage", query=query))

    def all_usage(self, month: str | None = None) -> AdminUsageOut:
        """Operators (``usage.admins``): every user's spend in ``month`` (YYYY-MM)."""
        return self._model(
            AdminUsageOut, self.request("GET", "/admin/usage", query={"month": month})
        )

    def user_usage(
        self,
        user: str,
        start: str | None = None,
        end: str | None = None,
        group_by: str = "capability",
    ) -> UsageOut:
        """Operators: one user's usage, as they see it."""
        query = {"from": start, "to": end, "group_by": group_by}
        return self._model(UsageOut, self.request("GET", f"{_admin_user(user)}/usage", query=query))

    def set_budget(self, user: str, monthly_budget_usd: float | None) -> BudgetOut:
        """Operators: ``user``'s own monthly budget (None: back to the deployment's default)."""
        body = {"monthly_budget_usd": monthly_budget_usd}
        return self._model(BudgetOut, self.request("PUT", f"{_admin_user(user)}/budget", body))

    # --- workspace commands -------------------------------------------------------------------

    def run_command(
        self, project: str, command: str, terminal: str = "t1", idempotency_key: str | None = None
    ) -> CommandOut:
        """Queues one command. The call names it with ``idempotency_key`` (a fresh one if not
        given), so a retry after a lost answer or a timeout gets it back: never queued twice."""
        body = {
            "command": command,
            "terminal": terminal,
            "idempotency_key": idempotency_key or uuid.uuid4().hex,
        }
        return self._model(
            CommandOut, self.request("POST", f"{_workspace(project)}/commands", body, keyed=True)
        )

    def command(self, project: str, command_id: str) -> CommandOut:
        return self._model(CommandOut, self.request("GET", _command(project, command_id)))

    def commands(self, project: str, limit: int | None = None) -> list[CommandOut]:
        return self._pages(CommandOut, f"{_workspace(project)}/commands", limit)

    def cancel_command(self, project: str, command_id: str) -> CommandOut:
        return self._model(CommandOut, self.request("DELETE", _command(project, command_id)))

    def output(self, project: str, command_id: str, offset: int = 0) -> Output:
        """The command's output from byte ``offset`` of its log, as far as it is saved."""
        path = f"{_command(project, command_id)}/output"
        return self._model(Output, self.request("GET", path, query={"offset": offset}))

    # --- workspace files ----------------------------------------------------------------------

    def connect_terminal(self, project: str, terminal: str = "t1") -> TicketOut:
        """A single-use URL that lets a browser hear one terminal (and do nothing else)."""
        path = f"{_workspace(project)}/terminals/{segment(terminal, 'terminal')}/connect"
        return self._model(TicketOut, self.request("POST", path))

    def files(self, project: str, prefix: str | None = None) -> list[FileOut]:
        """The project's files (what its commands see in their working directory)."""
        path = f"{_workspace(project)}/files"
        return self._pages(FileOut, path, None, page_size=1000, prefix=prefix)

    def download_file(self, project: str, path: str) -> FileTransfer:
        """A presigned URL to read one of the project's files."""
        url = f"{_workspace(project)}/files/download"
        return self._model(FileTransfer, self.request("POST", url, {"path": path}))

    def upload_file(self, project: str, path: str, size: int) -> FileTransfer:
        """A presigned form to write one of the project's files (``size`` bytes at most)."""
        url = f"{_workspace(project)}/files/upload"
        return self._model(FileTransfer, self.request("POST", url, {"path": path, "size": size}))

    # --- waiting and listening ----------------------------------------------------------------

    def wait_for(
        self,
        read: Callable[[], Model],
        statuses: set[str],
        *,
        timeout: float = 600,
        interval: float = 1.0,
        on_change: Callable[[Model], None] = lambda _: None,
    ) -> Model:
        """Reads until the resource's ``status`` is one of ``statuses``; calls ``on_change``
        whenever the status moves. Raises TimeoutError with the last status."""
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            current = read()
            status = str(getattr(current, "status", ""))
            if status != last:
                on_change(current)
                last = status
            if status in statuses:
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"still {status} after {timeout:.0f} s")
            self.sleep(interval)

    @contextmanager
    def subscribe(
        self, *topics: str, quiet: float | None = None
    ) -> Iterator[Iterator[dict[str, Any] | None]]:
        """A WebSocket connection (opened with a ticket the API mints for the caller): yields
        the messages it hears (its user's sessions, and each topic asked for, e.g.
        ``terminal:<project>:<terminal>``); with ``quiet``, also ``None`` each time that many
        seconds pass without a message."""
        from websockets.sync.client import connect

        # an unused ticket expires in seconds: minting again on a failure is safe
        ticket = self._model(TicketOut, self.request("POST", "/live/tickets", keyed=True))
        with connect(ticket.url, open_timeout=self.timeout) as socket:
            for topic in topics:
                socket.send(json.dumps({"action": "subscribe", "topic": topic}))
                answer = json.loads(socket.recv(timeout=self.timeout))
                if answer.get("subscribed") != topic:
                    error = answer.get("error") or {}
                    raise ApiError(404, error.get("code", "not_found"), str(error.get("message")))

            def messages() -> Iterator[dict[str, Any] | None]:
                while True:
                    try:
                        yield json.loads(socket.recv(timeout=quiet))
                    except TimeoutError:
                        yield None

            yield messages()


def _api_error(status: int, payload: bytes) -> ApiError:
    try:
        error = json.loads(payload)["error"]
        return ApiError(status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(status, "unexpected", payload[:200].decode("utf-8", "replace"))


def _session(session_id: str) -> str:
    return f"/sessions/{segment(session_id, 'session')}"


def _instance(instance_id: str) -> str:
    return f"/instances/{segment(instance_id, 'instance')}"


def _workspace(project: str) -> str:
    return f"/workspaces/{segment(project, 'project')}"


def _admin_user(user: str) -> str:
    """A user (an ARN) as the admin routes name it: base64url, one path segment."""
    encoded = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
    return f"/admin/users/{encoded}"


def _command(project: str, command_id: str) -> str:
    return f"{_workspace(project)}/commands/{segment(command_id, 'command')}"
