"""Runs one command with ``bash -c`` and streams its output in frames.

A frame is sent when 100 ms have passed since its first byte or it holds 32 KB, whichever
comes first. Output is read in chunks, not lines, so output without newlines streams too;
the full output goes to a log file, never into memory. When the command must stop
(cancelled, timed out, worker stopping) its process group gets SIGTERM, then SIGKILL after
``grace`` seconds. When bash exits, whatever it left running in its group is killed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from berth_worker.isolation import Isolation

FRAME_SECONDS = 0.1
FRAME_BYTES = 32 * 1024
DRAIN_SECONDS = 2.0


class Stop(StrEnum):
    """Why a command was stopped before it ended by itself."""

    TIMEOUT = "timeout"
    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    LOST = "lost"


@dataclass
class Outcome:
    exit_code: int
    stopped: Stop | None


def argv(command: str) -> list[str]:
    """``bash -c command`` — where ``setpriv`` exists, bash dies with the worker
    (``--pdeathsig``) instead of running on as an orphan."""
    prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    return [*prefix, "bash", "-c", command]


def run(
    command: str,
    cwd: Path,
    *,
    timeout: float,
    emit: Callable[[bytes], None],
    log: BinaryIO,
    isolation: Isolation,
    env: dict[str, str],
    should_stop: Callable[[], Stop | None] = lambda: None,
    grace: float = 10.0,
) -> Outcome:
    process = subprocess.Popen(  # noqa: S603 - the user's command, as one bash -c argument
        argv(command),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        **isolation.popen_arguments(),
    )
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=256)
    stdout = process.stdout
    if stdout is None:  # cannot happen with stdout=PIPE; keeps the type honest
        raise RuntimeError("the command has no output pipe")

    def pump() -> None:
        while chunk := stdout.read1(FRAME_BYTES):  # type: ignore[attr-defined]
            chunks.put(chunk)
        chunks.put(None)

    threading.Thread(target=pump, daemon=True).start()
    frame = bytearray()
    frame_started = 0.0
    deadline = time.monotonic() + timeout
    stopped: Stop | None = None
    term_sent_at: float | None = None
    exited_at: float | None = None
    eof = False
    while not eof:
        try:
            chunk = chunks.get(timeout=FRAME_SECONDS / 4)
        except queue.Empty:
            chunk = b""
        if chunk is None:
            eof = True
        elif chunk:
            if not frame:
                frame_started = time.monotonic()
            frame += chunk
            log.write(chunk)
        full = len(frame) >= FRAME_BYTES
        due = frame and time.monotonic() - frame_started >= FRAME_SECONDS
        if frame and (full or due or eof):
            while frame:
                emit(bytes(frame[:FRAME_BYTES]))
                del frame[:FRAME_BYTES]
        if eof:
            break
        now = time.monotonic()
        if process.poll() is not None:
            # bash is gone; anything it left in its group holds the pipe open: end it
            exited_at = exited_at or now
            _signal_group(process.pid, signal.SIGKILL)
            if now - exited_at > DRAIN_SECONDS:
                break
            continue
        if stopped is None:
            reason = Stop.TIMEOUT if now > deadline else should_stop()
            if reason is not None:
                stopped, term_sent_at = reason, now
                _signal_group(process.pid, signal.SIGTERM)
        elif term_sent_at is not None and now - term_sent_at >= grace:
            _signal_group(process.pid, signal.SIGKILL)
            term_sent_at = None
    if frame:
        emit(bytes(frame))
    code = process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    log.flush()
    # killed by a signal: the shell's convention, 128 + the signal's number
    return Outcome(exit_code=128 - code if code < 0 else code, stopped=stopped)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
