"""Keeps a project's local directory and ``s3://<bucket>/workspaces/<project>/`` in step.

Down: the local directory becomes an exact copy of the bucket's files — only objects that
changed since the last sync are fetched, and anything else found locally (files a command
made that never reached the bucket, symbolic links, empty directories) is removed. Up: new
and changed regular files are uploaded and removed ones deleted. The manifest of what was
synced lives outside the workspace, written atomically.

Anything the bucket cannot hold is skipped with a warning, never an exception: names that are
not valid UTF-8 or longer than S3's key limit, symbolic links, sockets and pipes. Keys that
would land outside the directory (``..``) are skipped on the way down.

The worker syncs as root, so on the way down it never follows a name it meets: each file is
created through directory handles opened one component at a time with ``O_NOFOLLOW``
(``open_beneath``), so a symbolic link swapped in for a directory or a file mid-download is
refused (the file is skipped with a warning), never written through.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAX_KEY_BYTES = 1024
SMALL_FILE_BYTES = 8 * 1024 * 1024
MAX_WARNINGS = 20


@dataclass
class SyncReport:
    fetched: int = 0
    uploaded: int = 0
    deleted: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.skipped += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("berth: more files were skipped (see above for why)")


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - S3's ETag of a single-part upload, not security
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _shown(relative: str) -> str:
    """A name as the user would type it, whatever bytes it holds."""
    return os.fsencode(relative).decode("utf-8", "backslashreplace")


def _stamp(info: os.stat_result) -> dict[str, int]:
    """What changes when a file's content may have (ctime cannot be set back by a user)."""
    return {"size": info.st_size, "mtime": info.st_mtime_ns, "ctime": info.st_ctime_ns}


DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path, parts: list[str]) -> BinaryIO:
    """``root/parts...`` opened for writing (made, with its directories, if missing) without
    following a symbolic link anywhere below ``root``: ``OSError`` (ELOOP, ENOTDIR) instead.
    A file already there is replaced, never written through (it may be a hard link)."""
    fd = os.open(root, DIRECTORY_FLAGS)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            inner = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        with contextlib.suppress(FileNotFoundError):
            os.unlink(parts[-1], dir_fd=fd)
        file_fd = os.open(parts[-1], FILE_FLAGS, 0o644, dir_fd=fd)
    finally:
        os.close(fd)
    return os.fdopen(file_fd, "wb")


class WorkspaceSync:
    def __init__(self, s3: Any, bucket: str, root: Path, state: Path) -> None:
        """``root`` holds the projects' directories; ``state`` the manifests (not readable
        by commands)."""
        self.s3 = s3
        self.bucket = bucket
        self.root = root
        self.state = state

    def directory(self, project: str) -> Path:
        return self.root / project

    def forget(self, project: str) -> None:
        """Drop the local copy (after a command that did not end cleanly)."""
        shutil.rmtree(self.directory(project), ignore_errors=True)
        self._manifest_path(project).unlink(missing_ok=True)

    # --- manifest -----------------------------------------------------------------------------

    def _manifest_path(self, project: str) -> Path:
        return self.state / "manifests" / f"{project}.json"

    def _manifest(self, project: str) -> dict[str, dict[str, Any]]:
        path = self._manifest_path(project)
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, project: str, manifest: dict[str, dict[str, Any]]) -> None:
        path = self._manifest_path(project)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(manifest, sort_keys=True))
        os.replace(partial, path)

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

    # --- down ---------------------------------------------------------------------------------

    def down(self, project: str) -> SyncReport:
        report = SyncReport()
        workdir = self.directory(project)
        workdir.mkdir(parents=True, exist_ok=True)
        manifest, remote = self._manifest(project), self._remote(project)
        wanted: set[str] = set()
        for relative in remote:
            parts = relative.split("/")
            if any(part in ("", ".", "..") for part in parts) or "\x00" in relative:
                report.warn(f"berth: skipped {relative!r}: not a safe path inside the workspace")
                continue
            wanted.add(relative)
        kept = self._prune(workdir, wanted, manifest)
        saved: dict[str, dict[str, Any]] = {}
        for relative in sorted(wanted):
            meta = remote[relative]
            known = manifest.get(relative)
            if relative in kept and known and known.get("etag") == meta["etag"]:
                saved[relative] = known
                continue
            try:
                with open_beneath(workdir, relative.split("/")) as handle:
                    self.s3.download_fileobj(
                        self.bucket, f"workspaces/{project}/{relative}", handle
                    )
                    handle.flush()
                    written = os.fstat(handle.fileno())
            except (OSError, ValueError) as exc:
                report.warn(f"berth: skipped {relative!r}: {exc}")
                continue
            report.fetched += 1
            saved[relative] = {"etag": meta["etag"], "md5": None, **_stamp(written)}
        self._save(project, saved)
        return report

    def _prune(
        self, workdir: Path, wanted: set[str], manifest: dict[str, dict[str, Any]]
    ) -> set[str]:
        """Removes whatever the bucket does not hold; returns the wanted files that are still
        exactly as last synced."""
        intact: set[str] = set()
        for parent, dirs, files in os.walk(workdir, topdown=False, followlinks=False):
            for name in files + [d for d in dirs if Path(parent, d).is_symlink()]:
                path = Path(parent, name)
                relative = path.relative_to(workdir).as_posix()
                info = path.lstat()
                known = manifest.get(relative)
                if (
                    relative in wanted
                    and stat.S_ISREG(info.st_mode)
                    and known
                    and all(known.get(k) == v for k, v in _stamp(info).items())
                ):
                    intact.add(relative)
                elif relative not in wanted or not stat.S_ISREG(info.st_mode):
                    path.unlink()
            for name in dirs:
                path = Path(parent, name)
                if not path.is_symlink() and not any(path.iterdir()):
                    path.rmdir()
        return intact

    # --- up -----------------------------------------------------------------------------------

    def up(self, project: str) -> SyncReport:
        report = SyncReport()
        workdir = self.directory(project)
        manifest = self._manifest(project)
        current: dict[str, dict[str, Any]] = {}
        for parent, dirs, files in os.walk(workdir, followlinks=False):
            for name in sorted(files + [d for d in dirs if Path(parent, d).is_symlink()]):
                path = Path(parent, name)
                relative = path.relative_to(workdir).as_posix()
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a file"
                    report.warn(f"berth: skipped {_shown(relative)}: {kind} (not synced)")
                    continue
                try:
                    key = f"workspaces/{project}/{relative}"
                    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                        report.warn(f"berth: skipped {_shown(relative)}: the name is too long")
                        continue
                except UnicodeEncodeError:
                    report.warn(
                        f"berth: skipped {_shown(relative)}: the name is not valid UTF-8, "
                        "which S3 cannot store"
                    )
                    continue
                current[relative] = self._upload_if_changed(
                    path, key, info, manifest.get(relative), report
                )
        for relative in set(manifest) - set(current):
            self.s3.delete_object(Bucket=self.bucket, Key=f"workspaces/{project}/{relative}")
            report.deleted += 1
        self._save(project, current)
        return report

    def _upload_if_changed(
        self,
        path: Path,
        key: str,
        info: os.stat_result,
        known: dict[str, Any] | None,
        report: SyncReport,
    ) -> dict[str, Any]:
        stamp = _stamp(info)
        if known and all(known.get(k) == v for k, v in stamp.items()):
            return known  # untouched since the last sync
        md5 = _md5(path)
        if known and md5 in (known.get("md5"), known.get("etag")):
            return {**known, "md5": md5, **stamp}  # touched, same bytes
        if info.st_size <= SMALL_FILE_BYTES:
            with path.open("rb") as body:
                etag = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"]
        else:
            self.s3.upload_file(str(path), self.bucket, key)
            etag = self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"]
        report.uploaded += 1
        return {"etag": etag.strip('"'), "md5": md5, **stamp}
