"""ZIP archives of results and failures, and where they go."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any


def result_key(job_id: str) -> str:
    return f"results/{job_id}.zip"


def failure_key(job_id: str) -> str:
    return f"failures/{job_id}.zip"


def summary_key(job_id: str) -> str:
    """A failed job's own error, small enough for the API to read on GET."""
    return f"failures/{job_id}.json"


def read_document(archive: bytes, name: str) -> Any:
    """A JSON document of a ZIP, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            return json.loads(opened.read(name))
    except (KeyError, ValueError, zipfile.BadZipFile):
        return None


def zip_directory(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def zip_documents(documents: dict[str, Any], base: bytes | None = None) -> bytes:
    """A ZIP holding ``base``'s entries (if any) plus each document (str, bytes or JSON)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if base:
            with zipfile.ZipFile(io.BytesIO(base)) as existing:
                for info in existing.infolist():
                    if info.filename not in documents:
                        archive.writestr(info, existing.read(info))
        for name, document in documents.items():
            if isinstance(document, bytes | str):
                archive.writestr(name, document)
            else:
                archive.writestr(name, json.dumps(document, indent=2, default=str))
    return buffer.getvalue()
