"""The usage API's models: a caller's usage grouped, the operator's list of users, budgets."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum

from pydantic import BaseModel, Field

from shared.records import iso
from shared.usage import MonthSpend, Standing

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,1400}$"


class GroupBy(StrEnum):
    DAY = "day"
    CAPABILITY = "capability"
    RESOURCE = "resource"


def user_id(user: str) -> str:
    """A user (an ARN, with ``/`` and ``:``) as one path segment: base64url, no padding."""
    return base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")


def user_of(identifier: str) -> str | None:
    """The user a ``user_id`` names; None if it names none (only the one spelling
    ``user_id`` makes names a user)."""
    try:
        raw = base64.urlsafe_b64decode(identifier + "=" * (-len(identifier) % 4))
        user = raw.decode()
    except (binascii.Error, ValueError):
        return None
    return user if user and user_id(user) == identifier else None


class UsageGroup(BaseModel):
    key: str = Field(description="The day (YYYY-MM-DD), capability or resource id")
    capability: str | None = Field(default=None, description="Set when grouped by resource")
    count: int = Field(description="Billable units (a session's task, a job, ...)")
    seconds: float = Field(description="Billed seconds")
    units: float = Field(description="vCPU-seconds, GB-seconds or instance-seconds")
    dollars: float = Field(description="Estimated from the deployment's pricing settings")


class BudgetOut(BaseModel):
    monthly_budget_usd: float | None = Field(description="None: no budget")
    spent_this_month_usd: float
    resets_at: str = Field(description="When this month's spend starts again from 0 (UTC)")
    over_budget: bool

    @classmethod
    def of(cls, standing: Standing) -> BudgetOut:
        return cls(
            monthly_budget_usd=standing.budget,
            spent_this_month_usd=round(standing.spent, 8),
            resets_at=iso(standing.resets_at) or "",
            over_budget=standing.over,
        )


class UsageOut(BaseModel):
    user: str
    start: str = Field(description="Start of the range (the query's from), UTC")
    end: str = Field(description="End of the range, exclusive (the query's to), UTC")
    group_by: GroupBy
    groups: list[UsageGroup]
    total: UsageGroup
    budget: BudgetOut


class UserSpendOut(BaseModel):
    user: str
    user_id: str = Field(description="The user as a path segment of /admin/users/{user}/...")
    count: int
    seconds: float
    dollars: float
    monthly_budget_usd: float | None

    @classmethod
    def of(cls, spend: MonthSpend, budget: float | None) -> UserSpendOut:
        return cls(
            user=spend.user,
            user_id=user_id(spend.user),
            count=spend.units,
            seconds=round(spend.seconds, 3),
            dollars=round(spend.dollars, 8),
            monthly_budget_usd=budget,
        )


class AdminUsageOut(BaseModel):
    month: str
    users: list[UserSpendOut] = Field(description="Every user who spent that month, most first")
    total_dollars: float


class SetBudget(BaseModel):
    monthly_budget_usd: float | None = Field(
        ge=0,
        le=1_000_000,
        strict=True,  # a number, not a boolean or a numeric string
        description="The user's own monthly budget; null: the default",
    )
