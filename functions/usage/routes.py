"""HTTP routes for usage and budgets: the caller's own, and the operator's (``/admin``)."""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import AwareDatetime, BeforeValidator

from shared.api import caller_id, documented
from shared.errors import NotFound
from usage.models import (
    MONTH_PATTERN,
    USER_ID_PATTERN,
    AdminUsageOut,
    BudgetOut,
    GroupBy,
    SetBudget,
    UsageOut,
    user_of,
)

if TYPE_CHECKING:  # the service (and boto3) load when the first request needs them
    from usage.service import UsageService

router = Router()

ISO_MOMENT = r"^\d{4}-\d{2}-\d{2}([Tt ].+)?$"


def _iso(value: object) -> object:
    """Only ISO 8601 text: pydantic would also read a number as seconds since 1970."""
    if isinstance(value, str) and not re.fullmatch(ISO_MOMENT, value):
        raise ValueError("must be a date (2026-12-01) or an RFC 3339 time (2026-12-01T00:00:00Z)")
    return value


Moment = Annotated[date | AwareDatetime, BeforeValidator(_iso)]
"""A date (midnight UTC) or an RFC 3339 time with its zone."""
FROM = Query(
    alias="from", description="Start: a date or an RFC 3339 time; default: this month's first day"
)
TO = Query(description="End, exclusive: a date or an RFC 3339 time; default: now")
USER = Path(
    description="The user's user_id (their ARN in base64url, as /admin/usage lists it)",
    json_schema_extra={"pattern": USER_ID_PATTERN},
)


def service() -> UsageService:
    return router.context["usage"]  # type: ignore[no-any-return]


def _admin() -> UsageService:
    usage = service()
    usage.require_admin(caller_id(router.current_event.raw_event))
    return usage


def _user(identifier: str) -> str:
    user = user_of(identifier) if re.fullmatch(USER_ID_PATTERN, identifier) else None
    if user is None:
        raise NotFound("user", "use the user_id /admin/usage lists")
    return user


@router.get(
    "/usage",
    summary="The caller's usage and estimated cost, grouped by day, capability or resource",
    responses=documented({200: ("The caller's usage in the range", UsageOut)}),
    tags=["usage"],
)
def get_usage(
    from_: Annotated[Moment | None, FROM] = None,
    to: Annotated[Moment | None, TO] = None,
    group_by: Annotated[GroupBy, Query()] = GroupBy.CAPABILITY,
) -> UsageOut:
    user = caller_id(router.current_event.raw_event)
    return service().usage(user, from_, to, group_by)


@router.get(
    "/admin/usage",
    summary="Operators: every user's spend in a month, most first",
    responses=documented(
        {200: ("Every user's spend", AdminUsageOut)},
        {403: "forbidden: not an admin principal"},
    ),
    tags=["admin"],
)
def admin_usage(
    month: Annotated[
        str | None,
        Query(description="YYYY-MM; default: this month", pattern=MONTH_PATTERN),
    ] = None,
) -> AdminUsageOut:
    return _admin().month(month)


@router.get(
    "/admin/users/<user>/usage",
    summary="Operators: one user's usage, as they see it",
    responses=documented(
        {200: ("The user's usage", UsageOut)},
        {403: "forbidden: not an admin principal", 404: "not_found: no such user_id"},
    ),
    tags=["admin"],
)
def admin_user_usage(
    user: Annotated[str, USER],
    from_: Annotated[Moment | None, FROM] = None,
    to: Annotated[Moment | None, TO] = None,
    group_by: Annotated[GroupBy, Query()] = GroupBy.CAPABILITY,
) -> UsageOut:
    usage = _admin()
    return usage.usage(_user(user), from_, to, group_by)


@router.put(
    "/admin/users/<user>/budget",
    summary="Operators: set (or clear, with null) one user's monthly budget",
    responses=documented(
        {200: ("The user's budget and spend", BudgetOut)},
        {403: "forbidden: not an admin principal", 404: "not_found: no such user_id"},
    ),
    tags=["admin"],
)
def set_budget(user: Annotated[str, USER], body: SetBudget) -> BudgetOut:
    usage = _admin()
    return usage.set_budget(_user(user), body.monthly_budget_usd)
