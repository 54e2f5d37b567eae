"""Cold-start import cost of every Python handler, as a ratio to a bare ``import boto3``.

Target: each at most 1.5x. A handler imports what every request needs (the resolver, its
models); the service, its AWS clients and boto3 load on the first request (they cost the
same either way, once per cold start, but a ``GET /health`` or an idle schedule pays
nothing for them). A test checks this list against the synthesized template's handlers.

Usage: ``.venv/bin/python bench/cold_import.py [rounds]`` (default 7). Each figure is a whole
fresh interpreter (what a Lambda cold start pays before the first event), run A B A B ...
against the baseline so machine drift hits both alike.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import paired, report, time_process  # noqa: E402

HANDLERS = (
    "health.handler",
    "openapi.handler",
    "sessions.handler",
    "sessions.on_task_event",
    "sessions.reaper",
    "jobs.handler",
    "jobs.on_execution_end",
    "instances.handler",
    "instances.step",
    "instances.on_state_change",
    "workers.handler",
    "workers.scaler",
    "workers.reconciler",
    "workers.credential_handler",
    "workers.on_task_stopped",
    "usage.handler",
    "live.handler",
    "live.authorizer",
    "live.api",
)
BASELINE = "import boto3"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    functions = str(ROOT / "functions")
    for module in HANDLERS:
        code = f"import sys; sys.path.insert(0, {functions!r}); import {module}"
        a, b = paired(
            partial(time_process, [sys.executable, "-c", code]),
            partial(time_process, [sys.executable, "-c", BASELINE]),
            rounds,
        )
        print(report(f"import {module}", a, BASELINE, b))
        print()


if __name__ == "__main__":
    main()
