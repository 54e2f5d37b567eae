"""Runs berth's Python containers locally, since no Docker runs here.

When a task whose image starts Python (job runners, workers, the echo session server)
reaches RUNNING in the emulator, that entrypoint runs as a local process from the image's
laid-out files, with the container's environment and the task's overrides. When it exits,
its exit code becomes the container's and the task stops — which is what a state machine's
``.sync`` waits for and how a worker scales itself in; when the task is stopped (a session
ends), the process is. A session server listens on a free local port instead of its
container port, and ``address_of`` maps the task's private address to it (the local router
forwards there). Images that start something else (Chroma) are left to the emulator's
bookkeeping: address only.

Like a container, a task is a world of its own: its entrypoint starts a new session, every
process left in that session dies with it (as a container's processes die when it stops),
a container's scratch directory (``BERTH_WORKDIR``) is a fresh directory per task under the
sandbox's own state folder — never shared with another task or another sandbox — and a
worker's command uids (``BERTH_RUN_AS_UID`` on) are a block of its own. A session's volume
(an EFS access point its task definition mounts, named by ``BERTH_STORAGE_PATH``) is the
access point's root directory under the sandbox's ``efs/`` folder: the same user and profile
get the same folder back, a wiped volume's successor a new one, another user never theirs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.sandbox.dockerfile import assemble, exec_form
from infra.sandbox.emulator import REGION, Emulator
from infra.sandbox.moto_bridges import record_exit_code
from sessions.storage import STORAGE_PATH_ENV

log = logging.getLogger("berth.sandbox")

STEP_FUNCTIONS = "AWS Step Functions"
LOG_SHIP_SECONDS = 0.25
"""How often a session server's new output lines are put into its log stream."""
UIDS_PER_TASK = 16
"""A local worker's command uids (a fresh one per command, as in its container)."""


@dataclass(frozen=True)
class Image:
    workdir: Path
    """A local directory laid out like the image's WORKDIR (its COPY lines applied)."""
    entrypoint: list[str]


def images_of(assembly: Path, stack_name: str, into: Path) -> dict[str, Image]:
    """Each container image asset (by hash) whose entrypoint is Python, laid out in ``into``."""
    manifest = json.loads((assembly / f"{stack_name}.assets.json").read_text())
    images = {}
    for asset_hash, asset in manifest.get("dockerImages", {}).items():
        source = asset["source"]
        context = assembly / source["directory"]
        dockerfile = context / source.get("dockerFile", "Dockerfile")
        target = source.get("dockerBuildTarget")
        entrypoint = exec_form(dockerfile, target, "ENTRYPOINT") or exec_form(
            dockerfile, target, "CMD"
        )
        if entrypoint and Path(entrypoint[0]).name.startswith("python"):
            workdir = assemble(context, dockerfile, target, into / asset_hash[:16])
            images[asset_hash] = Image(workdir, [sys.executable, *entrypoint[1:]])
    return images


class LocalTaskRunner:
    def __init__(
        self,
        emulator: Emulator,
        images: dict[str, Image],
        state: Path,
        overrides: dict[str, str] | None = None,
        timeout: float = 900,
        command_uids: range | None = None,
        aws_env: dict[str, str] | None = None,
        task_identity: Callable[[str], dict[str, str]] | None = None,
    ):
        self.emulator = emulator
        self.images = images
        self.state = state
        self.overrides = overrides or {}
        self.timeout = timeout
        self.command_uids = command_uids
        self.aws_env = aws_env or {}
        self.task_identity = task_identity
        """A worker task's own credentials (its task role's session, named by its id)."""
        self._launched = 0
        self._started: set[str] = set()
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._addresses: dict[tuple[str, int], tuple[str, int]] = {}
        self.closed = False
        """Set first when the sandbox stops: no thread calls the emulator after that."""

    def close(self, grace_seconds: float = 5) -> None:
        """The sandbox stops: every container still running gets SIGTERM (as StopTask does),
        then SIGKILL after ``grace_seconds`` — none outlives the sandbox."""
        with self._lock:
            self.closed = True
            running = [p for p in self._processes.values() if p.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

    def address_of(self, private_ip: str, port: int) -> tuple[str, int] | None:
        """Where a session task's server listens here, from its address in the VPC."""
        with self._lock:
            return self._addresses.get((private_ip, port))

    def __call__(self, task: dict[str, Any]) -> None:
        """A task's status changed (called by the ECS watcher)."""
        if task.get("lastStatus") == "STOPPED" or task.get("desiredStatus") == "STOPPED":
            with self._lock:
                process = self._processes.get(task["taskArn"])
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)  # what StopTask does to a container
            return
        if task.get("lastStatus") != "RUNNING":
            return
        with self._lock:
            if task["taskArn"] in self._started:
                return
            self._started.add(task["taskArn"])
        threading.Thread(target=self._run, args=(task,), daemon=True).start()

    def _run(self, task: dict[str, Any]) -> None:
        if self.closed:
            return
        ecs = self.emulator.client("ecs")
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
        (container,) = definition["taskDefinition"]["containerDefinitions"][:1]
        image = next(
            (i for h, i in self.images.items() if container.get("image", "").endswith(h)), None
        )
        if image is None:
            if task.get("startedBy") == STEP_FUNCTIONS:  # a job would wait forever
                self._finish(task, 1, "the sandbox cannot run this image")
            return
        environment = {e["name"]: e["value"] for e in container.get("environment", [])}
        for override in (task.get("overrides") or {}).get("containerOverrides", []):
            if override.get("name") in (None, container["name"]):
                environment.update({e["name"]: e["value"] for e in override.get("environment", [])})
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        if "BERTH_WORKDIR" in environment:
            environment["BERTH_WORKDIR"] = str(self.state / "tasks" / task_id)
        if STORAGE_PATH_ENV in environment:
            environment[STORAGE_PATH_ENV] = str(self._volume(definition["taskDefinition"]))
        identity: dict[str, str] = {}
        if "BERTH_USER_QUEUE_PREFIX" in environment:
            environment["BERTH_TASK_ID"] = task_id  # what ECS's metadata endpoint says on AWS
            if self.task_identity is not None:
                identity = self.task_identity(task_id)
        if "BERTH_RUN_AS_UID" in environment and self.command_uids is not None:
            # Each Fargate task is a machine of its own; here tasks share one, so each gets
            # uids of its own (what one worker kills and cleans up must not touch another's).
            with self._lock:
                blocks = len(self.command_uids) // UIDS_PER_TASK
                first = self.command_uids[(self._launched % blocks) * UIDS_PER_TASK]
                self._launched += 1
            environment["BERTH_RUN_AS_UID"] = str(first)
            environment["BERTH_RUN_AS_UIDS"] = str(UIDS_PER_TASK)
        served = self._serve(task, container, environment)
        env = {
            **os.environ,
            **environment,
            **{k: v for k, v in self.overrides.items() if k in environment},
            "AWS_ENDPOINT_URL": self.emulator.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            **self.aws_env,
            **identity,
            "PYTHONPATH": str(image.workdir),
        }
        output = self.state / "tasks" / f"{task_id}.log"
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("wb") as sink:
            process = subprocess.Popen(  # noqa: S603 - the image's own entrypoint, no shell
                image.entrypoint,
                cwd=image.workdir,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with self._lock:
                self._processes[task["taskArn"]] = process
                closing = self.closed  # started as the sandbox stopped: close() missed it
            if closing:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            if served is not None:  # a session server: its output goes where awslogs puts it
                self._ship_logs(container, task_id, output, process)
            try:
                code, reason = process.wait(timeout=self.timeout), "Essential container exited"
            except subprocess.TimeoutExpired:
                process.kill()
                code, reason = 137, "Task stopped: timeout"
                process.wait()
            end_session(process.pid)
        with self._lock:
            self._processes.pop(task["taskArn"], None)
            if served is not None:
                self._addresses.pop(served, None)
        try:
            if self.closed:
                return  # the sandbox (and its emulator) stopped under the task
            if task.get("desiredStatus") == "STOPPED" or self._stopped(task):
                return  # stopped from outside (a session's end): ECS has recorded it already
            if code:
                log.info("task %s exited %s (log: %s)", task["taskArn"], code, output)
            self._finish(task, 128 - code if code < 0 else code, reason)
        except Exception:
            if not self.closed:
                raise
            # the sandbox stopped while this task's end was being recorded: nothing to record

    def _ship_logs(
        self,
        container: dict[str, Any],
        task_id: str,
        output: Path,
        process: subprocess.Popen[bytes],
    ) -> None:
        """What the awslogs driver does for a container: each line it prints, as an event in
        ``<stream prefix>/<container>/<task id>`` of its log group (in the emulator)."""
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        if not group or not prefix:
            return
        stream = f"{prefix}/{container['name']}/{task_id}"

        def ship() -> None:
            logs = self.emulator.client("logs")
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
            shipped = 0
            with output.open("rb") as printed:
                while not self.closed:
                    ended = process.poll() is not None
                    printed.seek(shipped)
                    text = printed.read()  # only what came since the last look
                    complete = text[: text.rfind(b"\n") + 1] if not ended else text
                    if complete:
                        shipped += len(complete)
                        now = int(time.time() * 1000)
                        events = [
                            {"timestamp": now, "message": line}
                            for line in complete.decode("utf-8", "replace").splitlines()
                        ]
                        logs.put_log_events(
                            logGroupName=group, logStreamName=stream, logEvents=events
                        )
                    if ended:
                        return
                    time.sleep(LOG_SHIP_SECONDS)

        def guarded() -> None:
            try:
                ship()
            except Exception:
                if not self.closed:
                    log.exception("shipping the output of task %s failed", task_id)

        threading.Thread(target=guarded, name=f"awslogs-{task_id}", daemon=True).start()

    def _volume(self, definition: dict[str, Any]) -> Path:
        """The local folder of the EFS access point the task definition mounts (its root
        directory on that file system), made as EFS makes it: on first use, mode 0700."""
        (efs,) = [
            v["efsVolumeConfiguration"]
            for v in definition.get("volumes", [])
            if "efsVolumeConfiguration" in v
        ]
        point = efs["authorizationConfig"]["accessPointId"]
        (described,) = self.emulator.client("efs").describe_access_points(AccessPointId=point)[
            "AccessPoints"
        ]
        root = str(described["RootDirectory"]["Path"]).strip("/")
        folder: Path = self.state / "efs" / str(efs["fileSystemId"]) / root
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def _serve(
        self, task: dict[str, Any], container: dict[str, Any], environment: dict[str, str]
    ) -> tuple[str, int] | None:
        """A server's container port becomes a free local port (``PORT``); returns the task's
        address in the VPC that now maps to it."""
        mappings = container.get("portMappings") or []
        if not mappings or "PORT" not in environment:
            return None
        port = int(mappings[0]["containerPort"])
        private_ip = next(
            (
                detail["value"]
                for attachment in task.get("attachments") or []
                for detail in attachment.get("details") or []
                if detail.get("name") == "privateIPv4Address"
            ),
            None,
        )
        if private_ip is None:
            return None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            local = probe.getsockname()[1]
        environment["PORT"] = str(local)
        environment["BIND"] = "127.0.0.1"
        with self._lock:
            self._addresses[(private_ip, port)] = ("127.0.0.1", local)
        return private_ip, port

    def _stopped(self, task: dict[str, Any]) -> bool:
        described = self.emulator.client("ecs").describe_tasks(
            cluster=task["clusterArn"], tasks=[task["taskArn"]]
        )["tasks"]
        return bool(described) and described[0].get("desiredStatus") == "STOPPED"

    def _finish(self, task: dict[str, Any], exit_code: int, reason: str) -> None:
        record_exit_code(task["clusterArn"], task["taskArn"], exit_code)
        self.emulator.client("ecs").stop_task(
            cluster=task["clusterArn"], task=task["taskArn"], reason=reason
        )


def end_session(session_id: int) -> None:
    """Kills every process left in a session: what a stopped container leaves behind."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command name: state, ppid, pgrp, session
        if len(fields) > 3 and int(fields[3]) == session_id:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
