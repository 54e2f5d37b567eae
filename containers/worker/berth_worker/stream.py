"""Runs one command with ``bash -c`` and streams its output in frames.

A frame is sent when 100 ms have passed since its first byte or it holds 32 KB, whichever
comes first; every frame carries an increasing ``seq`` so a client can see a gap.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FRAME_SECONDS = 0.1
FRAME_BYTES = 32 * 1024


@dataclass
class Outcome:
    exit_code: int
    timed_out: bool
    log: bytes


def run(
    command: str,
    cwd: Path,
    *,
    timeout: float,
    emit: Callable[[bytes], None],
    should_stop: Callable[[], bool] = lambda: False,
    env: dict[str, str] | None = None,
) -> Outcome:
    process = subprocess.Popen(  # noqa: S603 - the user's command, as one bash -c argument
        ["bash", "-c", command],  # noqa: S607
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    chunks: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            chunks.put(line)
        chunks.put(None)

    threading.Thread(target=pump, daemon=True).start()
    log = bytearray()
    frame = bytearray()
    frame_started = 0.0
    deadline = time.monotonic() + timeout
    timed_out = False
    finished = False
    while not finished:
        try:
            chunk = chunks.get(timeout=FRAME_SECONDS / 4)
        except queue.Empty:
            chunk = b""
        if chunk is None:
            finished = True
        elif chunk:
            if not frame:
                frame_started = time.monotonic()
            frame += chunk
            log += chunk
        full = len(frame) >= FRAME_BYTES
        due = frame and time.monotonic() - frame_started >= FRAME_SECONDS
        if frame and (full or due or finished):
            while frame:
                emit(bytes(frame[:FRAME_BYTES]))
                del frame[:FRAME_BYTES]
        if not finished and (time.monotonic() > deadline or should_stop()):
            timed_out = time.monotonic() > deadline
            os.killpg(process.pid, signal.SIGKILL)
    code = process.wait()
    return Outcome(exit_code=code, timed_out=timed_out, log=bytes(log))
