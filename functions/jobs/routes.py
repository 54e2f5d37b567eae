"""HTTP routes for jobs: parse, call the service, build the response."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from jobs.models import JOB_ID_PATTERN, CreateJob, JobCatalogue, JobList, JobOut, JobRunnerOut
from shared.api import caller_id, documented
from shared.errors import NotFound

if TYPE_CHECKING:  # the service (and boto3) load when the first request needs them
    from jobs.service import JobService

router = Router()


def service() -> JobService:
    return router.context["jobs"]  # type: ignore[no-any-return]


@router.post(
    "/jobs",
    summary="Start a job by name (the catalogue picks Lambda or Fargate)",
    responses=documented(
        {
            202: ("Started", JobOut),
            200: ("The job this idempotency_key already started", JobOut),
        },
        {409: "idempotency_key_reused: the key was used for a different request"},
    ),
    tags=["jobs"],
)
def start_job(body: CreateJob) -> Response[str]:
    user = caller_id(router.current_event.raw_event)
    job, started = service().start(user, body.name, body.input, body.idempotency_key)
    return Response(
        202 if started else 200, content_types.APPLICATION_JSON, JobOut.of(job).model_dump_json()
    )


@router.get(
    "/jobs",
    summary="The caller's jobs, newest first",
    responses=documented({200: ("A page of jobs", JobList)}),
    tags=["jobs"],
)
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> JobList:
    jobs, token = service().list_jobs(caller_id(router.current_event.raw_event), limit, next_token)
    return JobList(items=[JobOut.of(job) for job in jobs], next_token=token)


@router.get(
    "/jobs/catalogue",
    summary="The jobs callers may run by name, and where each runs",
    responses=documented({200: ("The catalogue, by name", JobCatalogue)}),
    tags=["jobs"],
)
def job_catalogue() -> JobCatalogue:
    catalogue = sorted(service().config.catalogue.items())
    return JobCatalogue(
        items=[JobRunnerOut(name=name, runtime=spec.runtime) for name, spec in catalogue]
    )


@router.get(
    "/jobs/<job_id>",
    summary="A job's status, with a short-lived result_url or error when done",
    responses=documented({200: ("The job", JobOut)}, {404: "No such job of the caller's"}),
    tags=["jobs"],
)
def get_job(
    job_id: Annotated[
        str, Path(description="A job id (job_...)", json_schema_extra={"pattern": JOB_ID_PATTERN})
    ],
) -> JobOut:
    user = caller_id(router.current_event.raw_event)
    if not re.fullmatch(JOB_ID_PATTERN, job_id):
        raise NotFound("job")
    return JobOut.of(service().get(user, job_id))
