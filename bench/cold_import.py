"""Cold-start import cost of each HTTP handler, as a ratio to a bare ``import boto3``.

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

HANDLERS = ("health.handler", "sessions.handler", "openapi.handler")
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
