"""HTTP routes for instances: parse, call the service, build the response."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from instances.models import (
    INSTANCE_ID_PATTERN,
    CreateInstance,
    InstanceList,
    InstanceLogOut,
    InstanceOut,
)
from shared.api import caller_id, documented
from shared.errors import NotFound

if TYPE_CHECKING:  # the service (and boto3) load when the first request needs them
    from instances.service import InstanceService

router = Router()

InstanceId = Annotated[
    str,
    Path(
        description="An instance id (ins_...)", json_schema_extra={"pattern": INSTANCE_ID_PATTERN}
    ),
]


def service() -> InstanceService:
    return router.context["instances"]  # type: ignore[no-any-return]


def _instance_id(value: str) -> str:
    if not re.fullmatch(INSTANCE_ID_PATTERN, value):
        raise NotFound("instance")
    return value


@router.post(
    "/instances",
    summary="Launch an instance that fetches a blob and runs its script",
    description="202 at once; poll GET /instances/{id} through waiting_for_instance, "
    "waiting_for_ssm and fetching_blob to ready (or failed).",
    responses=documented(
        {202: ("Provisioning", InstanceOut)},
        {503: "unavailable: provisioning could not start; try again"},
    ),
    tags=["instances"],
)
def create_instance(body: CreateInstance) -> Response[str]:
    instance = service().create(caller_id(router.current_event.raw_event), body.blob_id)
    return Response(202, content_types.APPLICATION_JSON, InstanceOut.of(instance).model_dump_json())


@router.get(
    "/instances",
    summary="The caller's instances with live EC2 data",
    responses=documented({200: ("A page of instances", InstanceList)}),
    tags=["instances"],
)
def list_instances(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> InstanceList:
    items, token = service().list_instances(
        caller_id(router.current_event.raw_event), limit, next_token
    )
    return InstanceList(items=[InstanceOut.of(i) for i in items], next_token=token)


@router.get(
    "/instances/<instance_id>",
    summary="One instance with live EC2 data",
    responses=documented(
        {200: ("The instance", InstanceOut)}, {404: "No such instance of the caller's"}
    ),
    tags=["instances"],
)
def get_instance(instance_id: InstanceId) -> InstanceOut:
    user = caller_id(router.current_event.raw_event)
    return InstanceOut.of(service().get(user, _instance_id(instance_id)))


@router.get(
    "/instances/<instance_id>/logs",
    summary="What the instance's script printed, its SSM status and exit code",
    responses=documented(
        {200: ("The script's output so far", InstanceLogOut)},
        {404: "No such instance of the caller's"},
    ),
    tags=["instances"],
)
def instance_logs(instance_id: InstanceId) -> InstanceLogOut:
    user = caller_id(router.current_event.raw_event)
    return InstanceLogOut.of(service().logs(user, _instance_id(instance_id)))


@router.delete(
    "/instances/<instance_id>",
    summary="Terminate an instance (202; 200 if already terminated)",
    responses=documented(
        {202: ("Terminating", InstanceOut), 200: ("Already terminated", InstanceOut)},
        {404: "No such instance of the caller's"},
    ),
    tags=["instances"],
)
def delete_instance(instance_id: InstanceId) -> Response[str]:
    user = caller_id(router.current_event.raw_event)
    instance, terminated = service().delete(user, _instance_id(instance_id))
    return Response(
        202 if terminated else 200,
        content_types.APPLICATION_JSON,
        InstanceOut.of(instance).model_dump_json(),
    )
