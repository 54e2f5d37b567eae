"""What a user's command can touch: its own user, a minimal environment, its project only.

The worker itself runs as root inside its container and holds berth's credentials; a command
runs as an unprivileged user (``run_as_uid``, created by the image) so it can read neither the
worker's environment (``/proc/<worker>/environ``) nor its memory, with an environment that
names no AWS or ECS variable, in a process group of its own, and inside its project's
directory only — every other project's directory is root's, mode 0700. Before the next
command, every process and temporary file that user left behind is removed.

When the worker is not root (``make local`` run by an ordinary user), commands run as the
worker's own user and none of this fencing applies; the worker says so when it starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("berth.worker")

SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - cleaned, not used


def command_environment(home: Path, project: str, command_id: str) -> dict[str, str]:
    """All a command sees of the worker's world: no ``AWS_*``/``ECS_*``, no credentials."""
    return {
        "PATH": SEARCH_PATH,
        "HOME": str(home),
        "PWD": str(home),
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "BERTH_PROJECT": project,
        "BERTH_COMMAND_ID": command_id,
    }


@dataclass(frozen=True)
class Isolation:
    uid: int | None
    """The user commands run as; None: the worker's own (no fencing possible)."""

    @classmethod
    def for_worker(cls, run_as_uid: int) -> Isolation:
        if os.geteuid() != 0:
            log.warning(
                "the worker is not root: commands run as its own user (uid %s) and can read "
                "its environment; run it as root to fence them",
                os.geteuid(),
            )
            return cls(None)
        return cls(run_as_uid)

    @property
    def fenced(self) -> bool:
        return self.uid is not None

    def popen_arguments(self) -> dict[str, Any]:
        """Popen keyword arguments: its own process group and, when fenced, its own user
        with no supplementary groups."""
        arguments: dict[str, Any] = {"process_group": 0}
        if self.uid is not None:
            arguments |= {"user": self.uid, "group": self.uid, "extra_groups": []}
        return arguments

    def prepare_root(self, root: Path) -> None:
        """The directory that holds every project: root's, traversable, not listable."""
        root.mkdir(parents=True, exist_ok=True)
        if self.fenced:
            os.chown(root, 0, 0)
            root.chmod(0o711)

    def enter(self, directory: Path) -> None:
        """Give the project's directory (and only it) to the command's user."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.uid is None:
            return
        for path in _tree(directory):
            info = path.lstat()
            if info.st_uid != self.uid or info.st_gid != self.uid:
                os.chown(path, self.uid, self.uid, follow_symlinks=False)
        directory.chmod(0o700)

    def leave(self, directory: Path) -> None:
        """After a command: nothing of its user runs on, and its project is root's again."""
        self.end_leftovers()
        if self.uid is not None and directory.exists():
            os.chown(directory, 0, 0, follow_symlinks=False)
            directory.chmod(0o700)

    def end_leftovers(self) -> None:
        """Kill every process of the command user and remove its files in shared temp dirs."""
        if self.uid is None:
            return
        for pid in _processes_of(self.uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for temp in SHARED_TEMP_DIRS:
            _remove_owned(Path(temp), self.uid)


def _tree(directory: Path) -> Iterator[Path]:
    """``directory`` and everything under it, without following symbolic links."""
    yield directory
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in (*dirs, *files):
            yield Path(parent, name)


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _remove_owned(directory: Path, uid: int) -> None:
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.lstat()
        except OSError:
            continue
        if info.st_uid != uid:
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
