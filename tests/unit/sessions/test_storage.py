"""Sessions that keep their data: a volume per (user, profile) — an EFS access point of the
user's own, mounted by a task definition revision of the user's own — against moto."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from sessions.config import SessionsConfig
from sessions.models import Status
from sessions.service import SessionService
from sessions.storage import STORAGE_PATH_ENV, STORAGE_VOLUME, posix_id, user_key
from shared.api import status_of
from shared.errors import DomainError
from tests.aws import FakeClock
from tests.unit.sessions.conftest import ALICE, BOB, tasks_in_cluster

PROFILE = "default"


def started_definition(aws: boto3.session.Session, config: SessionsConfig) -> dict[str, Any]:
    """The task definition of the one task not stopped."""
    (task,) = [t for t in tasks_in_cluster(aws, config) if t["desiredStatus"] != "STOPPED"]
    described = aws.client("ecs").describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    return dict(described["taskDefinition"])


def access_point(aws: boto3.session.Session, access_point_id: str) -> dict[str, Any]:
    (point,) = aws.client("efs").describe_access_points(AccessPointId=access_point_id)[
        "AccessPoints"
    ]
    return dict(point)


def stop(service: SessionService, user: str, session_id: str) -> None:
    service.stop(user, session_id)
    stopping = service.repo.get(session_id)
    assert stopping is not None
    service.transition(stopping, stopping.moved(Status.STOPPED, service.clock()))


def test_a_session_with_storage_mounts_its_users_own_access_point(
    storage_service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = storage_service.create(ALICE, PROFILE, None)
    definition = started_definition(aws, config)
    (volume,) = [v for v in definition["volumes"] if v["name"] == STORAGE_VOLUME]
    efs = volume["efsVolumeConfiguration"]
    assert efs["transitEncryption"] == "ENABLED"
    assert efs["authorizationConfig"]["iam"] == "ENABLED"
    point = access_point(aws, efs["authorizationConfig"]["accessPointId"])
    assert point["RootDirectory"]["Path"].startswith(f"/users/{user_key(ALICE)}/{PROFILE}/")
    assert point["RootDirectory"]["CreationInfo"]["Permissions"] == "0700"
    assert point["PosixUser"] == {"Uid": posix_id(ALICE), "Gid": posix_id(ALICE)}
    (container,) = definition["containerDefinitions"]
    assert container["mountPoints"] == [
        {"sourceVolume": STORAGE_VOLUME, "containerPath": "/data", "readOnly": False}
    ]
    assert {"name": STORAGE_PATH_ENV, "value": "/data"} in container["environment"]
    assert definition["family"].endswith(user_key(ALICE))
    assert session.status == Status.STARTING


def test_the_next_start_reuses_the_volume_and_another_user_gets_their_own(
    storage_service: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    clock: FakeClock,
) -> None:
    first, _ = storage_service.create(ALICE, PROFILE, None)
    mounted = started_definition(aws, config)
    stop(storage_service, ALICE, first.id)
    clock.advance(60)
    storage_service.create(ALICE, PROFILE, None)
    assert started_definition(aws, config)["taskDefinitionArn"] == mounted["taskDefinitionArn"]
    (alices,) = storage_service.list_storage(ALICE)
    assert alices.last_used_at > alices.created_at  # the second start used it
    storage_service.create(BOB, PROFILE, None)
    (bobs,) = storage_service.list_storage(BOB)
    assert bobs.access_point_id != alices.access_point_id
    assert (
        access_point(aws, bobs.access_point_id)["RootDirectory"]["Path"]
        != access_point(aws, alices.access_point_id)["RootDirectory"]["Path"]
    )


def test_a_profile_without_storage_starts_from_its_own_task_definition(
    storage_service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    storage_service.create(ALICE, "chroma", None)
    definition = started_definition(aws, config)
    assert definition["taskDefinitionArn"] == config.profiles["chroma"].task_definition
    assert storage_service.list_storage(ALICE) == []


def test_a_stack_update_gets_a_new_revision_on_the_same_access_point(
    storage_service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    first, _ = storage_service.create(ALICE, PROFILE, None)
    (before,) = storage_service.list_storage(ALICE)
    stop(storage_service, ALICE, first.id)
    # a deploy registered a new revision of the profile (a new image)
    profile = storage_service.config.profiles[PROFILE]
    ecs = aws.client("ecs")
    base = ecs.describe_task_definition(taskDefinition=profile.task_definition)["taskDefinition"]
    updated = ecs.register_task_definition(
        family=base["family"],
        containerDefinitions=[{**base["containerDefinitions"][0], "image": "echo:2"}],
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
    )["taskDefinition"]["taskDefinitionArn"]
    storage_service.config.profiles[PROFILE] = profile.model_copy(
        update={"task_definition": updated}
    )
    storage_service.create(ALICE, PROFILE, None)
    definition = started_definition(aws, config)
    assert definition["containerDefinitions"][0]["image"] == "echo:2"
    (after,) = storage_service.list_storage(ALICE)
    assert after.access_point_id == before.access_point_id  # the same data
    assert after.task_definition != before.task_definition


def test_wiping_a_volume_is_refused_while_live_and_then_the_next_start_is_empty(
    storage_service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = storage_service.create(ALICE, PROFILE, None)
    (volume,) = storage_service.list_storage(ALICE)
    with pytest.raises(DomainError) as raised:
        storage_service.wipe_storage(ALICE, PROFILE)
    assert (status_of(raised.value), raised.value.code) == (409, "session_live")
    stop(storage_service, ALICE, session.id)
    storage_service.wipe_storage(ALICE, PROFILE)
    assert storage_service.list_storage(ALICE) == []
    assert (
        aws.client("efs").describe_access_points(FileSystemId=volume_fs(aws))["AccessPoints"] == []
    )
    storage_service.create(ALICE, PROFILE, None)
    (fresh,) = storage_service.list_storage(ALICE)
    assert fresh.generation != volume.generation  # a new, empty directory
    with pytest.raises(DomainError) as missing:
        storage_service.wipe_storage(BOB, PROFILE)
    assert status_of(missing.value) == 404


def volume_fs(aws: boto3.session.Session) -> str:
    (file_system,) = aws.client("efs").describe_file_systems()["FileSystems"]
    return str(file_system["FileSystemId"])
