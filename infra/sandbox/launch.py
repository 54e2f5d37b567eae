"""``make local`` started as a process of its own, and stopped by Ctrl-C: what the end-to-end
tests and the chaos run (``make chaos``) drive, exactly as a user would run it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.settings import ROOT

BANNER = {
    "url": r"ready in [\d.]+ s: (http://\S+)",
    "emulator": r"emulator \(moto\): (http://\S+)",
    "websocket": r"websocket: +(ws://\S+)",
    "router": r"sessions router: +(http://\S+)",
    "aws_config": r"export AWS_CONFIG_FILE=(\S+)",
    "aws_credentials": r"export AWS_SHARED_CREDENTIALS_FILE=(\S+)",
}
"""What the banner says, and where (each must be found before the sandbox counts as up)."""
FAULT_LOG = r"faults: .*; log (\S+)"


class LaunchFailed(RuntimeError):
    """The sandbox exited or did not say it was ready in time; the message ends with what it
    printed last."""


def processes_under(folder: Path) -> list[int]:
    """Processes whose working directory is in ``folder`` (a sandbox's state: its local
    containers run from its images there), deleted since or not."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd").startswith(f"{folder}{os.sep}"):
                found.append(int(entry.name))
    return found


@dataclass
class Launched:
    """A running sandbox: where it serves, and its process."""

    url: str
    emulator: str
    websocket: str
    router: str
    aws_config: str
    aws_credentials: str
    """The files with the local users' SigV4 profiles (``berth-local-<user>``)."""
    fault_log: str
    """Where injected faults are logged (``BERTH_LOCAL_FAULTS``; empty without)."""
    process: subprocess.Popen[str]
    printed: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self, timeout: float = 30) -> list[str]:
        """Ctrl-C to the whole process group (the CDK's Node.js helper included), as a user
        stops make local in a terminal; returns what went wrong (nothing, when it stopped
        cleanly, promptly and quietly)."""
        failures = []
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            if self.process.wait(timeout=timeout) != 0:
                failures.append("the sandbox did not exit cleanly on Ctrl-C")
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return [f"the sandbox did not stop within {timeout:.0f} s of Ctrl-C"]
        left = processes_under(Path(self.aws_config).parent)
        if left:
            failures.append(f"{len(left)} local containers still ran after the sandbox stopped")
            for pid in left:  # not left behind for the next run
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.reader is not None:
            self.reader.join(timeout=10)  # it ends when the sandbox's output does
        marker = "berth sandbox: stopping\n"
        said = "".join(self.printed[self.printed.index(marker) :]) if marker in self.printed else ""
        if "Traceback" in said or "Error" in said:
            failures.append(f"the sandbox printed an error as it stopped:\n{said}")
        return failures

    def aws(self, service: str) -> Any:
        """A client of the emulator with the sandbox's own key: never faulted, like the
        sandbox's own calls (what an auditor reads the state with)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.emulator,
            region_name="us-east-1",
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",  # noqa: S106 - the emulator's, not a secret
        )


def launch(context: dict[str, Any], env: dict[str, str], ready_within: float = 180) -> Launched:
    """Starts ``python -m infra.sandbox`` on free ports with settings overrides ``context`` and
    the sandbox's own options ``env`` (``BERTH_LOCAL_*``); returns once its banner is out."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.sandbox"],
        cwd=ROOT,
        env={
            **os.environ,
            "BERTH_LOCAL_PORT": "0",
            "BERTH_LOCAL_WEBSOCKET_PORT": "0",
            "BERTH_LOCAL_ROUTER_PORT": "0",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "PYTHONUNBUFFERED": "1",
            "BERTH_LOCAL_CONTEXT": json.dumps(context),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if process.stdout is None:  # pragma: no cover - stdout=PIPE always gives one
        raise LaunchFailed("no output to read")
    found: dict[str, str] = {}
    fault_log = ""
    printed: list[str] = []
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline and len(found) < len(BANNER):
        line = process.stdout.readline()
        if not line:
            break
        printed.append(line)
        for name, pattern in BANNER.items():
            if match := re.search(pattern, line):
                found[name] = match.group(1)
        if match := re.search(FAULT_LOG, line):
            fault_log = match.group(1)
    if len(found) < len(BANNER):
        process.kill()
        raise LaunchFailed("the sandbox did not start:\n" + "".join(printed[-40:]))
    # keep reading what it prints, so a full pipe never blocks it
    reader = threading.Thread(target=printed.extend, args=(process.stdout,), daemon=True)
    reader.start()
    return Launched(**found, fault_log=fault_log, process=process, printed=printed, reader=reader)
