"""Runs berth's Lambda handlers locally, the way Lambda runs them.

Each function gets its own worker processes (execution environments): a worker imports the
handler module once with the function's environment (cold start), then serves one event at
a time. Concurrent requests go to different workers, so module-level state is never shared
between two in-flight invocations — as on Lambda.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from infra.sandbox.account import ACCOUNT, REGION
from infra.settings import ROOT

FUNCTIONS_DIR = ROOT / "functions"

_handler: Any = None
_function_name = ""
_timeout_seconds = 29.0


@dataclass
class LocalContext:
    """The parts of Lambda's context object that berth's handlers read."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = ""

    deadline: float = 0.0
    """time.monotonic() when the function's timeout runs out."""

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _cold_start(
    handler: str,
    environment: dict[str, str],
    name: str,
    code_path: str | None,
    timeout_seconds: float,
) -> None:
    global _handler, _function_name, _timeout_seconds
    # Ctrl-C in the terminal reaches the whole process group: the sandbox stops its
    # execution environments itself (no traceback from each of them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _timeout_seconds = timeout_seconds
    os.environ.update(environment)
    # Powertools warns when an invocation published no metric; locally that is only noise.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    path = code_path or str(FUNCTIONS_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    module_name, function = handler.rsplit(".", 1)
    _handler = getattr(importlib.import_module(module_name), function)
    _function_name = name


def _invoke(event: dict[str, Any]) -> Any:
    context = LocalContext(
        function_name=_function_name,
        aws_request_id=str(uuid.uuid4()),
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{_function_name}",
        deadline=time.monotonic() + _timeout_seconds,
    )
    return _handler(event, context)


class LocalFunction:
    def __init__(
        self,
        name: str,
        handler: str,
        environment: dict[str, str],
        concurrency: int = 4,
        code_path: str | None = None,
        timeout_seconds: float = 29,
    ) -> None:
        """``code_path``: where the handler's package lives (default: functions/);
        ``timeout_seconds``: the function's own timeout (what its context reports)."""
        self.name = name
        self.handler = handler
        self.timeout_seconds = timeout_seconds
        self._pool = ProcessPoolExecutor(
            max_workers=concurrency,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_cold_start,
            initargs=(handler, environment, name, code_path, timeout_seconds),
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        # a little over the function's timeout: the handler's own deadline comes first
        return self._pool.submit(_invoke, event).result(timeout=self.timeout_seconds + 30)

    def warm(self) -> None:
        """Starts one execution environment now, so the first request is not a cold start."""
        self._pool.submit(int).result(timeout=120)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
