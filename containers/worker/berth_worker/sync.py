"""Keeps ``/tmp/workspaces/<project>`` and ``s3://<bucket>/workspaces/<project>/`` in step.

Down: only objects whose ETag or size changed since the last sync. Up: new and changed files
(by MD5 and size), and removed files are deleted from S3. The manifest of what was synced
lives beside the workspace, not in it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - S3's ETag of a single-part upload, not security
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WorkspaceSync:
    def __init__(self, s3: Any, bucket: str, root: Path) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.root = root

    def directory(self, project: str) -> Path:
        return self.root / project

    def _manifest_path(self, project: str) -> Path:
        return self.root / ".manifests" / f"{project}.json"

    def _manifest(self, project: str) -> dict[str, dict[str, Any]]:
        path = self._manifest_path(project)
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def _save(self, project: str, manifest: dict[str, dict[str, Any]]) -> None:
        path = self._manifest_path(project)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, sort_keys=True))

    def _remote(self, project: str) -> dict[str, dict[str, Any]]:
        prefix = f"workspaces/{project}/"
        found: dict[str, dict[str, Any]] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                if relative and not relative.endswith("/"):
                    found[relative] = {"etag": item["ETag"].strip('"'), "size": item["Size"]}
        return found

    def down(self, project: str) -> int:
        """Downloads what changed remotely; returns how many files were fetched."""
        workdir = self.directory(project)
        workdir.mkdir(parents=True, exist_ok=True)
        manifest, remote = self._manifest(project), self._remote(project)
        fetched = 0
        for relative, meta in remote.items():
            target = _inside(workdir, relative)
            if manifest.get(relative) == meta and target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, f"workspaces/{project}/{relative}", str(target))
            fetched += 1
        for relative in set(manifest) - set(remote):  # deleted elsewhere
            _inside(workdir, relative).unlink(missing_ok=True)
        self._save(project, remote)
        return fetched

    def up(self, project: str) -> tuple[int, int]:
        """Uploads new/changed files and deletes removed ones; returns (uploaded, deleted)."""
        workdir = self.directory(project)
        manifest = self._manifest(project)
        current: dict[str, dict[str, Any]] = {}
        uploaded = deleted = 0
        for path in sorted(p for p in workdir.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = path.relative_to(workdir).as_posix()
            meta = {"etag": _md5(path), "size": path.stat().st_size}
            current[relative] = meta
            if manifest.get(relative) != meta:
                self.s3.upload_file(str(path), self.bucket, f"workspaces/{project}/{relative}")
                uploaded += 1
        for relative in set(manifest) - set(current):
            self.s3.delete_object(Bucket=self.bucket, Key=f"workspaces/{project}/{relative}")
            deleted += 1
        self._save(project, current)
        return uploaded, deleted


def _inside(root: Path, relative: str) -> Path:
    """An object key may not escape the workspace (``../``)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write outside the workspace: {relative}")
    return target
