"""HTTP routes for sessions. Each route: parse, call the service, build the response."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from sessions.models import (
    SESSION_ID_PATTERN,
    CreateSession,
    LogLineOut,
    LogPage,
    ProfileList,
    ProfileOut,
    Session,
    SessionList,
    SessionOut,
    VolumeList,
    VolumeOut,
)
from shared.api import caller_id, documented
from shared.errors import Invalid, NotFound
from shared.records import iso

if TYPE_CHECKING:  # the service (and boto3) load when the first request needs them
    from sessions.models import Volume
    from sessions.service import SessionService

router = Router()

RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
ProfileName = Annotated[
    str, Path(description="A profile name", json_schema_extra={"pattern": "^[a-z][a-z0-9-]{0,31}$"})
]
SessionId = Annotated[
    str,
    Path(description="A session id (ses_...)", json_schema_extra={"pattern": SESSION_ID_PATTERN}),
]


def service() -> SessionService:
    return router.context["sessions"]  # type: ignore[no-any-return]


def _session_id(value: str) -> str:
    if not re.fullmatch(SESSION_ID_PATTERN, value):
        raise NotFound("session")
    return value


def _owners_view(session: Session) -> SessionOut:
    """What its owner sees of one session: with its url and, routing on, its token."""
    return SessionOut.of(session, url=service().url_of(session), token=session.token)


def _json(status: int, session: SessionOut) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, session.model_dump_json())


@router.post(
    "/sessions",
    summary="Start (or get) the caller's session for a profile",
    description="201 with a new session (RUNNING at once when the profile's warm pool has a "
    "ready task, else PENDING/STARTING), or 200 with the caller's live session for that "
    "profile: calling again is safe.",
    responses=documented(
        {
            201: ("A new session", SessionOut),
            200: ("The caller's existing live session for that profile", SessionOut),
        },
        {409: "conflict: a previous session is still being cleaned up"},
    ),
    tags=["sessions"],
)
def create_session(body: CreateSession) -> Response[str]:
    session, created = service().create(
        caller_id(router.current_event.raw_event), body.profile, body.ttl_seconds
    )
    return _json(201 if created else 200, _owners_view(session))


@router.get(
    "/profiles",
    summary="The session profiles callers may start, with their lifetimes",
    responses=documented({200: ("The profiles, by name", ProfileList)}),
    tags=["sessions"],
)
def list_profiles() -> ProfileList:
    profiles = sorted(service().config.profiles.items())
    return ProfileList(
        items=[
            ProfileOut(
                name=name,
                port=p.port,
                default_ttl_seconds=p.default_ttl_seconds,
                max_ttl_seconds=p.max_ttl_seconds,
                idle_timeout_seconds=p.idle_timeout_seconds,
                warm_pool=p.warm_pool,
                storage_path=p.storage_path,
            )
            for name, p in profiles
        ]
    )


@router.get(
    "/sessions",
    summary="The caller's sessions, newest first",
    responses=documented({200: ("A page of sessions", SessionList)}),
    tags=["sessions"],
)
def list_sessions(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> SessionList:
    sessions, token = service().list_sessions(
        caller_id(router.current_event.raw_event), limit, next_token
    )
    # lists carry no token (a token is shown only in answers about that one session)
    listed = [SessionOut.of(s, url=service().url_of(s)) for s in sessions]
    return SessionList(items=listed, next_token=token)


@router.get(
    "/sessions/storage",
    summary="The caller's persistent volumes (one per profile that keeps storage)",
    responses=documented({200: ("The caller's volumes", VolumeList)}),
    tags=["sessions"],
)
def list_storage() -> VolumeList:
    volumes = service().list_storage(caller_id(router.current_event.raw_event))
    return VolumeList(items=[_volume_out(v) for v in volumes])


@router.delete(
    "/sessions/storage/<profile>",
    summary="Wipe the caller's volume of a profile: the next session of it starts empty",
    responses=documented(
        {200: ("The volume that was wiped", VolumeOut)},
        {
            404: "The caller has no volume of that profile (or there is no such profile)",
            409: "session_live: a session of that profile is live; stop it first",
        },
    ),
    tags=["sessions"],
)
def wipe_storage(profile: ProfileName) -> VolumeOut:
    user = caller_id(router.current_event.raw_event)
    return _volume_out(service().wipe_storage(user, profile))


def _volume_out(volume: Volume) -> VolumeOut:
    return VolumeOut(
        profile=volume.profile,
        path=service().config.profiles[volume.profile].storage_path or "",
        created_at=iso(volume.created_at) or "",
        last_used_at=iso(volume.last_used_at) or "",
    )


@router.get(
    "/sessions/<session_id>",
    summary="One of the caller's sessions",
    responses=documented(
        {200: ("The session", SessionOut)}, {404: "No such session of the caller's"}
    ),
    tags=["sessions"],
)
def get_session(session_id: SessionId) -> SessionOut:
    user = caller_id(router.current_event.raw_event)
    return _owners_view(service().get(user, _session_id(session_id)))


@router.delete(
    "/sessions/<session_id>",
    summary="Stop a session (202 stopping, 200 already stopped)",
    responses=documented(
        {202: ("Stopping", SessionOut), 200: ("Already stopped", SessionOut)},
        {
            404: "No such session of the caller's",
            409: "conflict: the session kept changing; try again",
        },
    ),
    tags=["sessions"],
)
def stop_session(session_id: SessionId) -> Response[str]:
    user = caller_id(router.current_event.raw_event)
    session, stopping = service().stop(user, _session_id(session_id))
    return _json(202 if stopping else 200, SessionOut.of(session))


@router.get(
    "/sessions/<session_id>/logs",
    summary="What a session's container printed, oldest first (follow it with next_token)",
    responses=documented(
        {200: ("A page of lines", LogPage)},
        {
            400: "invalid_request: a since that is not an RFC 3339 time, a bad limit",
            404: "No such session of the caller's",
        },
    ),
    tags=["sessions"],
)
def session_logs(
    session_id: SessionId,
    since: Annotated[
        str | None,
        Query(
            description="Only lines from this time on (RFC 3339, e.g. 2026-12-05T07:00:00Z)",
            pattern=RFC3339,
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> LogPage:
    user = caller_id(router.current_event.raw_event)
    lines, token = service().logs(
        user, _session_id(session_id), since=_instant(since), limit=limit, token=next_token
    )
    return LogPage(
        items=[LogLineOut(at=iso(line.at) or "", message=line.message) for line in lines],
        next_token=token,
    )


def _instant(value: str | None) -> float | None:
    """An RFC 3339 time (its shape checked by the route) as epoch seconds; 400 if there is
    no such moment (a 30th of February)."""
    if value is None:
        return None
    # at most microseconds (Python's precision): the 7th to 9th digits of a fraction go
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper().replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise Invalid(f"since {value!r} is not a moment in time") from None


@router.post(
    "/sessions/<session_id>/heartbeat",
    summary="Keep a session from being reaped as idle",
    responses=documented(
        {200: ("The session, with its idle deadline pushed back", SessionOut)},
        {
            404: "No such session of the caller's",
            409: "session_ended: the session is no longer live",
        },
    ),
    tags=["sessions"],
)
def heartbeat(session_id: SessionId) -> SessionOut:
    user = caller_id(router.current_event.raw_event)
    return SessionOut.of(service().heartbeat(user, _session_id(session_id)))


@router.post(
    "/sessions/<session_id>/token",
    summary="Rotate the token a request to the session's url must carry (routing on)",
    responses=documented(
        {200: ("The session with its new token; the old one no longer works", SessionOut)},
        {
            400: "routing_off: this deployment routes no sessions (routing.mode none)",
            404: "No such session of the caller's",
            409: "session_ended: the session is no longer live",
        },
    ),
    tags=["sessions"],
)
def rotate_token(session_id: SessionId) -> SessionOut:
    user = caller_id(router.current_event.raw_event)
    return _owners_view(service().rotate_token(user, _session_id(session_id)))
