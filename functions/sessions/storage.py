"""A user's persistent volume per profile: an EFS access point of their own, mounted by a task
definition revision of their own.

ECS fixes a task's volumes in its task definition (RunTask cannot add one), so on a user's
first start of a profile with storage berth

1. creates an EFS access point for (user, profile): its own root directory
   (``/users/<user key>/<profile>/<generation>``, made on first use with mode 0700) and its own
   POSIX uid/gid, which every file operation through it is forced to — so a container can
   neither see above its root nor act as anyone else;
2. registers a revision of a family of its own (``<profile family>-<user key>``) that copies the
   profile's task definition and adds that access point as a volume (TLS in transit, IAM
   authorization) mounted at the profile's ``storage.path``;
3. records both (``STORAGE#<user>#<profile>``) and starts every later session of that profile
   from that revision — registering a new one (same access point, same data) when the
   profile's own task definition changed (a stack update: a new image). The container is never
   told another user's access point, and cannot mount anything itself (Fargate gives it no
   mount capability).

Wiping a volume deletes its access point and its revision and forgets the record: the next
start gets a new generation, an empty directory. Nothing mounts the old one again.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from sessions.config import Profile
from sessions.models import Volume

if TYPE_CHECKING:
    from sessions.repository import SessionRepository

STORAGE_VOLUME = "berth-storage"
STORAGE_PATH_ENV = "BERTH_STORAGE_PATH"
"""Tells the container where its volume is mounted (the sandbox points it at a local folder)."""
USER_KEY_CHARS = 20
FIRST_UID = 100_000
UID_SPAN = 1 << 20
USER_TAG = "berth:user"
PROFILE_TAG = "berth:profile"
FILE_SYSTEM_TAG = "berth:file-system"
"""What the sessions API's right to delete access points is scoped to."""
REGISTERED_FIELDS = (
    "taskRoleArn", "executionRoleArn", "networkMode", "requiresCompatibilities", "cpu",
    "memory", "runtimePlatform", "ephemeralStorage", "pidMode", "ipcMode",
)  # fmt: skip
"""What a user's revision copies from the profile's task definition (besides its
containers and volumes)."""


def user_key(user: str) -> str:
    """A user's name in paths and families: caller identities are ARNs (``/``, ``:``)."""
    return hashlib.sha256(user.encode()).hexdigest()[:USER_KEY_CHARS]


def posix_id(user: str) -> int:
    """The uid and gid a user's files are written as (the root directory confines them; the
    id keeps even a shared mistake from mixing owners)."""
    return FIRST_UID + int(user_key(user), 16) % UID_SPAN


def new_generation(now: float) -> str:
    return f"{int(now * 1000):x}{secrets.token_hex(4)}"


def root_directory(user: str, profile: str, generation: str) -> str:
    return f"/users/{user_key(user)}/{profile}/{generation}"


class Volumes:
    """Makes, finds, lists and wipes users' volumes (``file_system_id``: the one EFS)."""

    def __init__(
        self,
        *,
        efs: Any,
        ecs: Any,
        repository: SessionRepository,
        file_system_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.efs = efs
        self.ecs = ecs
        self.repo = repository
        self.file_system_id = file_system_id
        self.clock = clock

    def get(self, user: str, profile: str) -> Volume | None:
        return self.repo.volume(user, profile)

    def for_start(self, user: str, profile_name: str, profile: Profile) -> Volume:
        """The volume a session of ``profile`` starts with: the user's, made on first use,
        on a revision of the profile's current task definition."""
        now = self.clock()
        found = self.get(user, profile_name)
        if found is None:
            return self._make(user, profile_name, profile, now)
        used = replace(found, last_used_at=now)
        if found.base != profile.task_definition:  # the stack was updated: same data, new image
            used = replace(
                used,
                task_definition=self._register(user, profile_name, profile, found.access_point_id),
                base=profile.task_definition,
            )
        self.repo.save_volume(used)
        if used.task_definition != found.task_definition:
            self._forget(None, found.task_definition)
        return used

    def _make(self, user: str, profile_name: str, profile: Profile, now: float) -> Volume:
        if not profile.storage_path:
            raise ValueError(f"profile {profile_name!r} keeps no storage")
        generation = new_generation(now)
        access_point = self._access_point(user, profile_name, generation)
        task_definition = self._register(user, profile_name, profile, access_point)
        volume = Volume(
            user,
            profile_name,
            generation,
            access_point,
            task_definition,
            profile.task_definition,
            now,
            now,
        )
        made = self.repo.add_volume(volume)
        if made is not volume:  # made meanwhile by another start: use that one
            self._forget(access_point, task_definition)
        return made

    def wipe(self, volume: Volume) -> None:
        """Deletes the access point and the revision, then the record: the next start gets
        a new, empty directory."""
        self._forget(volume.access_point_id, volume.task_definition)
        self.repo.delete_volume(volume)

    def _access_point(self, user: str, profile: str, generation: str) -> str:
        uid = posix_id(user)
        made = self.efs.create_access_point(
            ClientToken=f"{user_key(user)}-{generation}"[:64],
            FileSystemId=self.file_system_id,
            PosixUser={"Uid": uid, "Gid": uid},
            RootDirectory={
                "Path": root_directory(user, profile, generation),
                "CreationInfo": {"OwnerUid": uid, "OwnerGid": uid, "Permissions": "0700"},
            },
            Tags=[
                {"Key": USER_TAG, "Value": user[:256]},
                {"Key": PROFILE_TAG, "Value": profile},
                {"Key": FILE_SYSTEM_TAG, "Value": self.file_system_id},
            ],
        )
        return str(made["AccessPointId"])

    def _register(self, user: str, profile_name: str, profile: Profile, access_point: str) -> str:
        base = self.ecs.describe_task_definition(
            taskDefinition=profile.task_definition, include=["TAGS"]
        )
        definition = base["taskDefinition"]
        containers = [dict(c) for c in definition["containerDefinitions"]]
        for container in containers:
            if container["name"] == profile.container:
                container["mountPoints"] = [
                    *container.get("mountPoints", []),
                    {
                        "sourceVolume": STORAGE_VOLUME,
                        "containerPath": profile.storage_path,
                        "readOnly": False,
                    },
                ]
                container["environment"] = [
                    *container.get("environment", []),
                    {"name": STORAGE_PATH_ENV, "value": profile.storage_path},
                ]
        volume = {
            "name": STORAGE_VOLUME,
            "efsVolumeConfiguration": {
                "fileSystemId": self.file_system_id,
                "transitEncryption": "ENABLED",
                "authorizationConfig": {"accessPointId": access_point, "iam": "ENABLED"},
            },
        }
        # the user's tag goes on each task at RunTask (sessions.tasks), not on the revision
        tags = [*base.get("tags", []), {"key": PROFILE_TAG, "value": profile_name}]
        registered = self.ecs.register_task_definition(
            family=f"{definition['family']}-{user_key(user)}",
            containerDefinitions=containers,
            volumes=[*definition.get("volumes", []), volume],
            tags=tags,
            **{k: definition[k] for k in REGISTERED_FIELDS if definition.get(k)},
        )
        return str(registered["taskDefinition"]["taskDefinitionArn"])

    def _forget(self, access_point: str | None, task_definition: str) -> None:
        calls: list[Callable[[], object]] = [
            lambda: self.ecs.deregister_task_definition(taskDefinition=task_definition)
        ]
        if access_point is not None:
            calls.append(lambda: self.efs.delete_access_point(AccessPointId=access_point))
        for call in calls:
            try:
                call()
            except ClientError as exc:  # gone already: what forgetting wants
                code = exc.response["Error"]["Code"]
                if code not in {"AccessPointNotFound", "ClientException", "InvalidParameter"}:
                    raise
