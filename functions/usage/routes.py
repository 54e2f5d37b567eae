"""HTTP routes for usage and budgets: the caller's own, and the operator's (``/admin``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

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

FROM = Query(
    alias="from",
    max_length=40,
    description="Start (a date, or ISO time); default: this month's first day",
)
TO = Query(max_length=40, description="End, exclusive (a date, or ISO time); default: now")
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
    user = user_of(identifier)
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
    from_: Annotated[str | None, FROM] = None,
    to: Annotated[str | None, TO] = None,
    group_by: Annotated[GroupBy, Query()] = GroupBy.CAPABILITY,
) -> UsageOut:
    user = caller_id(router.current_event.raw_event)
    return service().usage(user, from_, to, group_by)


@router.get(
    "/admin/usage",
    summary="Operators: every user's spend in a month, most first",
    responses=documented(
        {200: ("Every user's spend", AdminUsageOut)}, {403: "forbidden: not an admin principal"}
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
        {200: ("The user's usage", UsageOut)}, {403: "forbidden: not an admin principal"}
    ),
    tags=["admin"],
)
def admin_user_usage(
    user: Annotated[str, USER],
    from_: Annotated[str | None, FROM] = None,
    to: Annotated[str | None, TO] = None,
    group_by: Annotated[GroupBy, Query()] = GroupBy.CAPABILITY,
) -> UsageOut:
    usage = _admin()
    return usage.usage(_user(user), from_, to, group_by)


@router.put(
    "/admin/users/<user>/budget",
    summary="Operators: set (or clear, with null) one user's monthly budget",
    responses=documented(
        {200: ("The user's budget and spend", BudgetOut)},
        {403: "forbidden: not an admin principal"},
    ),
    tags=["admin"],
)
def set_budget(user: Annotated[str, USER], body: SetBudget) -> BudgetOut:
    usage = _admin()
    return usage.set_budget(_user(user), body.monthly_budget_usd)
