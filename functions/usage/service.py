"""Usage logic: a user's usage grouped over a range, every user's month, budgets, admins."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime

from shared.errors import Forbidden
from shared.records import iso
from shared.usage import Metering, Usage, month_of, month_start
from usage.config import principal_of
from usage.models import (
    AdminUsageOut,
    BudgetOut,
    GroupBy,
    UsageGroup,
    UsageOut,
    UserSpendOut,
)


def epoch_of(moment: date | datetime) -> float:
    """A date is its midnight, UTC; a time carries its zone (the route checks it has one)."""
    if isinstance(moment, datetime):
        return moment.timestamp()
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp()


def group(records: Iterable[Usage], by: GroupBy) -> tuple[list[UsageGroup], UsageGroup]:
    sums: dict[str, list[float]] = {}
    capability: dict[str, str] = {}
    for usage in records:
        if by == GroupBy.DAY:
            key = (iso(usage.ended_at) or "")[:10]
        elif by == GroupBy.CAPABILITY:
            key = usage.capability
        else:
            key = usage.resource
            capability[key] = usage.capability
        row = sums.setdefault(key, [0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += usage.seconds
        row[2] += usage.units
        row[3] += usage.dollars
    groups = [
        UsageGroup(
            key=key,
            capability=capability.get(key),
            count=int(row[0]),
            seconds=round(row[1], 3),
            units=round(row[2], 3),
            dollars=round(row[3], 8),
        )
        for key, row in sorted(sums.items())
    ]
    total = UsageGroup(
        key="total",
        count=sum(g.count for g in groups),
        seconds=round(sum(row[1] for row in sums.values()), 3),
        units=round(sum(row[2] for row in sums.values()), 3),
        dollars=round(sum(row[3] for row in sums.values()), 8),
    )
    return groups, total


class UsageService:
    def __init__(
        self, *, metering: Metering, admins: Sequence[str], clock: Callable[[], float]
    ) -> None:
        self.metering = metering
        self.ledger = metering.ledger
        self.admins = list(admins)
        self.clock = clock

    def usage(
        self,
        user: str,
        since: date | datetime | None,
        until: date | datetime | None,
        by: GroupBy,
    ) -> UsageOut:
        """The user's units that ended in ``[since, until)`` (an empty range has none)."""
        now = self.clock()
        start = epoch_of(since) if since is not None else month_start(now)
        end = epoch_of(until) if until is not None else now
        records = self.ledger.records(user, start, end) if end > start else iter(())
        groups, total = group(records, by)
        return UsageOut(
            user=user,
            start=iso(start) or "",
            end=iso(end) or "",
            group_by=by,
            groups=groups,
            total=total,
            budget=BudgetOut.of(self.metering.standing(user)),
        )

    def require_admin(self, caller: str) -> None:
        principal = principal_of(caller)
        if not any(
            fnmatch.fnmatchcase(caller, pattern) or fnmatch.fnmatchcase(principal, pattern)
            for pattern in self.admins
        ):
            raise Forbidden("only the operator's admin principals may call /admin routes")

    def month(self, month: str | None) -> AdminUsageOut:
        month = month or month_of(self.clock())
        users = [
            UserSpendOut.of(spend, self.metering.budget(spend.user))
            for spend in self.ledger.month(month)
        ]
        return AdminUsageOut(
            month=month, users=users, total_dollars=round(sum(u.dollars for u in users), 8)
        )

    def set_budget(self, user: str, monthly_budget_usd: float | None) -> BudgetOut:
        self.ledger.set_budget(user, monthly_budget_usd)
        return BudgetOut.of(self.metering.standing(user))
