"""A project's files: what its commands find in their working directory, kept in
``s3://<workspaces bucket>/workspaces/<project>/``. Callers list them and get presigned URLs
to read or write one; ownership is the commands' (a project is its first user's). A file
written while a command runs is seen by the next command (a command that writes the same
path wins: its worker uploads after it ends). Raises domain errors only; no HTTP here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from shared.errors import Invalid, NotFound
from shared.records import iso
from workers.config import WorkersConfig
from workers.models import FileOut, FileTransfer, workspace_prefix

MAX_KEY_BYTES = 1024
"""S3's limit on a key, prefix included."""


def file_path(project: str, path: str) -> str:
    """The object key of ``path`` in the project, or Invalid: the same rules the workers'
    sync keeps (a path S3 and every worker can hold, inside the workspace)."""
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise Invalid(
            f"{path!r} is not a path inside the workspace: relative, no empty, '.' or '..' parts",
            code="invalid_path",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise Invalid("a path may not hold control characters", code="invalid_path")
    key = workspace_prefix(project) + path
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise Invalid(
            f"the path is too long (S3 keys hold {MAX_KEY_BYTES} bytes)", code="invalid_path"
        )
    return key


class WorkspaceFiles:
    def __init__(
        self,
        *,
        config: WorkersConfig,
        s3: Any,
        owner: Callable[[str, str], None],
        claim: Callable[[str, str], None],
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.s3 = s3
        self.owner = owner
        """Raises NotFound unless the project is the caller's."""
        self.claim = claim
        """Makes an unused project the caller's; raises NotFound if it is another's."""
        self.clock = clock

    def list(
        self, user: str, project: str, prefix: str, limit: int, token: str | None
    ) -> tuple[list[FileOut], str | None]:
        self.owner(user, project)
        base = workspace_prefix(project)
        query: dict[str, Any] = {
            "Bucket": self.config.workspaces_bucket,
            "Prefix": base + prefix,
            "MaxKeys": limit,
        }
        if token:
            query["ContinuationToken"] = token
        try:
            page = self.s3.list_objects_v2(**query)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"InvalidArgument", "InvalidToken"}:
                raise Invalid(
                    "next_token is not one this list gave", code="invalid_token"
                ) from None
            raise
        files = [
            FileOut(
                path=item["Key"][len(base) :],
                size=int(item["Size"]),
                modified_at=iso(item["LastModified"].timestamp()) or "",
            )
            for item in page.get("Contents", [])
        ]
        return files, page.get("NextContinuationToken")

    def download(self, user: str, project: str, path: str) -> FileTransfer:
        self.owner(user, project)
        key = file_path(project, path)
        try:
            self.s3.head_object(Bucket=self.config.workspaces_bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise NotFound("file") from None
            raise
        url = self.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.config.workspaces_bucket, "Key": key},
            ExpiresIn=self.config.log_url_seconds,
        )
        return FileTransfer(path=path, method="GET", url=url, fields=None, expires_at=self._until())

    def upload(self, user: str, project: str, path: str, size: int) -> FileTransfer:
        if size > self.config.max_file_bytes:
            raise Invalid(
                f"a file may be at most {self.config.max_file_bytes} bytes", code="file_too_large"
            )
        key = file_path(project, path)
        self.claim(user, project)
        form = self.s3.generate_presigned_post(
            Bucket=self.config.workspaces_bucket,
            Key=key,
            Conditions=[["content-length-range", 0, size]],
            ExpiresIn=self.config.log_url_seconds,
        )
        return FileTransfer(
            path=path,
            method="POST",
            url=form["url"],
            fields={k: str(v) for k, v in form["fields"].items()},
            expires_at=self._until(),
        )

    def _until(self) -> str:
        return iso(self.clock() + self.config.log_url_seconds) or ""
