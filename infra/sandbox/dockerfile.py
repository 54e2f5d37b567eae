"""Reads what an image runs from its Dockerfile, and lays out its files without Docker.

The sandbox runs images' Python directly: ``exec_form`` finds a stage's ``CMD`` or
``ENTRYPOINT``; ``assemble`` applies the stage's ``COPY`` lines to a local directory that
stands in for the image's filesystem, and returns its ``WORKDIR``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

FROM = re.compile(r"\s*FROM\s+\S+(?:\s+AS\s+(\S+))?", re.IGNORECASE)


def _stage_lines(dockerfile: Path, target: str | None) -> list[str]:
    stages: dict[str | None, list[str]] = {}
    current: list[str] = []
    for line in dockerfile.read_text().splitlines():
        if match := FROM.match(line):
            current = []
            stages[match.group(1)] = current
        elif not line.lstrip().startswith("#"):
            current.append(line.strip())
    if target is not None:
        return stages.get(target, [])
    return next(reversed(stages.values()), [])


def exec_form(dockerfile: Path, target: str | None, instruction: str) -> list[str] | None:
    """The exec-form ``CMD``/``ENTRYPOINT`` of ``target``'s stage (last stage if no target)."""
    pattern = re.compile(rf"{instruction}\s+(\[.*\])\s*$", re.IGNORECASE)
    found = None
    for line in _stage_lines(dockerfile, target):
        if match := pattern.match(line):
            found = json.loads(match.group(1))
    return found


def assemble(context: Path, dockerfile: Path, target: str | None, into: Path) -> Path:
    """Copies what the stage's ``COPY`` lines put under its ``WORKDIR`` into ``into``."""
    workdir = "/"
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    for line in _stage_lines(dockerfile, target):
        parts = line.split()
        if not parts:
            continue
        if parts[0].upper() == "WORKDIR":
            workdir = parts[1]
        elif parts[0].upper() == "COPY" and not any(p.startswith("--") for p in parts[1:]):
            *sources, destination = parts[1:]
            if "$" in destination:
                continue  # a build variable this sandbox does not know
            # a relative destination is under the WORKDIR, as Docker has it
            base = into if destination.startswith("/") else into / workdir.lstrip("/")
            target_path = base / destination.lstrip("/")
            into_directory = destination.endswith("/") or destination in (".", "./")
            for source in sources:
                origin = context / source
                if origin.is_dir():
                    shutil.copytree(origin, target_path, dirs_exist_ok=True)
                else:
                    place = target_path / origin.name if into_directory else target_path
                    place.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, place)
    (into / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return into / workdir.lstrip("/")
