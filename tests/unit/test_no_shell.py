"""No path where user input becomes part of a shell command on berth's control plane.

Only the worker runs user commands, and only as the single argument of ``bash -c`` in a
list (no ``shell=True``). The sandbox starts image entrypoints it read from Dockerfiles.
"""

from __future__ import annotations

import re
from pathlib import Path

from infra.settings import ROOT

SHELL_CALLS = re.compile(
    r"\bsubprocess\b|\bos\.system\b|\bos\.popen\b|\bos\.exec|shell=True|\bpty\b"
)


def python_files(*roots: str) -> list[Path]:
    return [p for root in roots for p in (ROOT / root).rglob("*.py")]


def test_the_control_plane_runs_no_processes() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files("functions", "containers/jobs", "infra")
        if "sandbox" not in path.parts and SHELL_CALLS.search(path.read_text())
    ]
    # make deploy's preflight runs on the operator's machine, before a deploy: one fixed
    # `docker info`, no input
    assert offenders == ["infra/preflight.py"]
    preflight = (ROOT / "infra" / "preflight.py").read_text()
    assert re.findall(r"subprocess\.\w+\(", preflight) == ["subprocess.run("]
    assert '[docker, "info", "--format", "{{.ServerVersion}}"]' in preflight


def test_the_worker_runs_the_command_only_as_bash_c_argument() -> None:
    users = [p for p in python_files("containers/worker") if SHELL_CALLS.search(p.read_text())]
    assert sorted(p.name for p in users) == ["isolation.py", "stream.py"]
    by_name = {p.name: p.read_text() for p in users}
    source = by_name["stream.py"]
    assert '[*prefix, "bash", "-c", command]' in source  # prefix: setpriv --pdeathsig
    # isolation.py runs one fixed tool on numbers it read from /proc, after the command
    cleanup = by_name["isolation.py"]
    assert re.findall(r"subprocess\.\w+\(", cleanup) == ["subprocess.run("]
    assert "[ipcrm, flag, str(ipc_id)]" in cleanup
    assert "shell=True" not in source + cleanup
