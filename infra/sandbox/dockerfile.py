"""Reads what an image runs from its Dockerfile (the sandbox runs images' Python without Docker)."""

from __future__ import annotations

import json
import re
from pathlib import Path


def exec_form(dockerfile: Path, target: str | None, instruction: str) -> list[str] | None:
    """The exec-form ``CMD``/``ENTRYPOINT`` of ``target``'s stage (last stage if no target)."""
    stage: str | None = None
    found: dict[str | None, list[str]] = {}
    pattern = re.compile(rf"\s*{instruction}\s+(\[.*\])\s*$", re.IGNORECASE)
    for line in dockerfile.read_text().splitlines():
        if match := re.match(r"\s*FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE):
            stage = match.group(1)
        elif match := pattern.match(line):
            found[stage] = json.loads(match.group(1))
    return found.get(target) if target else next(reversed(found.values()), None)
