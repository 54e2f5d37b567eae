"""What a user's command can touch: a uid of its own, a minimal environment, its project only.

The worker itself runs as root inside its container and holds its credentials; each command
runs as a *fresh* unprivileged uid (one of ``uids``, never one that any process still has) so
it can read neither the worker's environment (``/proc/<worker>/environ``) nor its memory, nor
anything an earlier command left, with an environment that names no AWS or ECS variable, a
cap on its processes (``RLIMIT_NPROC``), in a process group of its own, inside its project's
directory only — every other project's directory is root's, mode 0700.

After the command, ``leave`` ends everything of that uid without a race: a helper running as
that uid sends ``kill(-1, SIGKILL)`` — every process the uid can signal, which the kernel
delivers atomically against ``fork`` — again until ``/proc`` shows none (a double-forked,
``setsid``, fork-looping process included), then removes what the uid left in shared temp
directories, ``/run/lock`` and SysV IPC, and hands the *whole* project tree back to root. Only
then — no process of the user alive, nothing of the tree theirs — does root touch the tree
by path again (sync, the next ``enter``).

When the worker is not root (``make local`` run by an ordinary user), commands run as the
worker's own user and none of this fencing applies; the worker says so when it starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("berth.worker")

SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # noqa: S108 - cleaned, not used
MAX_PROCESSES = 512
"""``RLIMIT_NPROC`` of a command's uid (a fork loop stops there)."""
KILL_ROUNDS = 200
IPC_KINDS = {"shm": "-m", "sem": "-s", "msg": "-q"}


class LeftoversSurvive(RuntimeError):
    """Processes of a command's uid outlived every kill: the uid is never used again."""


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


@dataclass
class Isolation:
    uids: range | None
    """The uids commands run as, a fresh one each; None: the worker's own (no fencing)."""
    max_processes: int = MAX_PROCESSES
    uid: int | None = field(default=None, init=False)
    """The uid of the command running now (or last run)."""
    _next: int = field(default=0, init=False)
    _spent: set[int] = field(default_factory=set, init=False)

    @classmethod
    def for_worker(cls, first_uid: int, count: int) -> Isolation:
        if os.geteuid() != 0:
            log.warning(
                "the worker is not root: commands run as its own user (uid %s) and can read "
                "its environment; run it as root to fence them",
                os.geteuid(),
            )
            return cls(None)
        return cls(range(first_uid, first_uid + count))

    @property
    def fenced(self) -> bool:
        return self.uids is not None

    def popen_arguments(self) -> dict[str, Any]:
        """Popen keyword arguments: its own process group and, when fenced, the command's
        uid with no supplementary groups and a cap on its processes."""
        arguments: dict[str, Any] = {"process_group": 0}
        if self.uid is not None:
            limit = self.max_processes
            arguments |= {
                "user": self.uid,
                "group": self.uid,
                "extra_groups": [],
                # runs in the child after it took the uid: lowering a limit needs no privilege
                "preexec_fn": lambda: resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit)),
            }
        return arguments

    def prepare_root(self, root: Path) -> None:
        """The directory that holds every project: root's, traversable, not listable."""
        root.mkdir(parents=True, exist_ok=True)
        if self.fenced:
            os.chown(root, 0, 0)
            root.chmod(0o711)

    def fresh_uid(self) -> int:
        """The next uid of ``uids`` that no process has (nor ever outlived a kill)."""
        if self.uids is None:
            raise RuntimeError("commands are not fenced")
        busy = _uids_with_processes()
        for _ in range(len(self.uids)):
            candidate = self.uids[self._next % len(self.uids)]
            self._next += 1
            if candidate not in busy and candidate not in self._spent:
                return candidate
        raise LeftoversSurvive("every command uid of this worker still has processes")

    def enter(self, directory: Path) -> None:
        """Give the project's directory (and only it) to a fresh uid for the next command.
        Nothing of any command user runs now and the tree is root's: walking it is safe."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.uids is None:
            return
        self.uid = self.fresh_uid()
        _chown_tree(directory, self.uid)
        directory.chmod(0o700)

    def leave(self, directory: Path) -> None:
        """After a command: nothing of its uid runs on, and its whole project is root's."""
        self.end_leftovers()
        if self.uid is not None and directory.exists():
            _chown_tree(directory, 0)
            directory.chmod(0o700)

    def end_leftovers(self) -> None:
        """Kill every process of the command's uid, race-free, and remove what it left in
        shared temp dirs, ``/run/lock`` and SysV IPC."""
        if self.uid is None:
            return
        try:
            kill_everything_of(self.uid)
        except LeftoversSurvive:
            self._spent.add(self.uid)  # never hand this uid to another command
            raise
        finally:
            for temp in SHARED_TEMP_DIRS:
                _remove_owned(Path(temp), self.uid)
            remove_ipc_of(self.uid)


def kill_everything_of(uid: int, rounds: int = KILL_ROUNDS) -> None:
    """``kill(-1, SIGKILL)`` from a helper running as ``uid``, until ``/proc`` shows no live
    process of it. ``kill(-1)`` reaches every process the uid may signal — all of its own —
    and a ``fork`` racing it is cancelled by the pending SIGKILL, so a fork loop cannot
    outrun it; repeating covers what the kernel had not torn down yet."""
    for _ in range(rounds):
        if not _live_processes_of(uid):
            return
        helper = os.fork()
        if helper == 0:  # pragma: no cover - the child: raw syscalls only, then gone
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(helper, 0)
        time.sleep(0.005)
    if _live_processes_of(uid):
        raise LeftoversSurvive(f"processes of uid {uid} survived {rounds} kills")


def remove_ipc_of(uid: int) -> None:
    """Shared memory segments, semaphore sets and message queues ``uid`` owns."""
    ipcrm = shutil.which("ipcrm")
    if ipcrm is None:
        return
    for kind, flag in IPC_KINDS.items():
        for ipc_id in _ipc_owned_by(kind, uid):
            subprocess.run(  # noqa: S603 - a fixed tool, numeric ids read from /proc
                [ipcrm, flag, str(ipc_id)], check=False, capture_output=True
            )


def _ipc_owned_by(kind: str, uid: int) -> list[int]:
    try:
        lines = Path("/proc/sysvipc", kind).read_text().splitlines()
    except OSError:
        return []
    if not lines:
        return []
    header = lines[0].split()
    at_id, at_uid = 1, header.index("uid")
    found = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > at_uid and int(fields[at_uid]) == uid:
            found.append(int(fields[at_id]))
    return found


def _chown_tree(directory: Path, uid: int) -> None:
    for path in _tree(directory):
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if info.st_uid != uid or info.st_gid != uid:
                os.chown(path, uid, uid, follow_symlinks=False)


def _tree(directory: Path) -> Iterator[Path]:
    """``directory`` and everything under it, without following symbolic links."""
    yield directory
    for parent, dirs, files in os.walk(directory, followlinks=False):
        for name in (*dirs, *files):
            yield Path(parent, name)


def _process_owners() -> Iterator[tuple[int, int, str]]:
    """(pid, uid, state) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            owner = entry.stat().st_uid
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        yield int(entry.name), owner, state


def _live_processes_of(uid: int) -> list[int]:
    """Processes of ``uid`` that can still act (a zombie only waits to be reaped)."""
    return [pid for pid, owner, state in _process_owners() if owner == uid and state != "Z"]


def _uids_with_processes() -> set[int]:
    return {owner for _, owner, _ in _process_owners()}


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
