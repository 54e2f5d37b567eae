"""Usage and budgets: what each user's compute cost, recorded once per billable unit.

Every capability meters its own compute when it sees the compute end (a session's or worker's
task stopped, a job's execution ended, an instance terminated) and writes one ``Usage`` to the
usage table through ``Ledger.record``. A unit has one id (``session/<id>``,
``worker/<task id>``, ``job/<id>``, ``instance/<id>``): the record, its guard and the month's
running total are one transaction, so a replayed event never counts twice.

Items of the usage table (``pk``, ``sk``):

- ``UNIT#<unit id>``, ``UNIT``: the guard — a unit is recorded at most once;
- ``USER#<user>``, ``USE#<ended at, ISO>#<unit id>``: the record (``GET /usage`` reads a range);
- ``MONTH#<yyyy-mm>``, ``USER#<user>``: the user's spend that month (``ADD``; budgets and the
  operator's list read it);
- ``USER#<user>``, ``BUDGET``: the user's own monthly budget, when the operator set one.

A unit is counted in the month it ended. Dollars are estimates from ``Pricing`` at the time of
recording (AWS list prices, not the bill).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, Json

from shared.config import EnvModel
from shared.errors import LimitReached
from shared.pagination import query_items
from shared.records import Record, iso, plain

MIB_PER_GB = 1024
CPU_UNITS_PER_VCPU = 1024


class Capability(StrEnum):
    SESSIONS = "sessions"
    WORKERS = "workers"
    JOBS = "jobs"
    INSTANCES = "instances"


class Pricing(BaseModel):
    """On-demand list prices, us-east-1 (``pricing.*``; docs/usage.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fargate_vcpu_hour: float = Field(default=0.04048, ge=0)
    fargate_gb_hour: float = Field(default=0.004445, ge=0)
    fargate_minimum_seconds: int = Field(default=60, ge=0)
    """Fargate bills at least a minute per task."""
    lambda_gb_second: float = Field(default=0.0000166667, ge=0)
    lambda_request: float = Field(default=0.0000002, ge=0)
    ec2_hourly: dict[str, float] = Field(
        default_factory=lambda: {
            "t3.micro": 0.0104,
            "t3.small": 0.0208,
            "t3.medium": 0.0416,
            "t3.large": 0.0832,
            "t4g.micro": 0.0084,
            "t4g.small": 0.0168,
            "m5.large": 0.096,
            "c5.large": 0.085,
        }
    )
    ec2_minimum_seconds: int = Field(default=60, ge=0)
    """Linux instances bill per second, at least a minute."""


class UsageConfig(EnvModel):
    """Where usage goes, read by every function that meters or checks budgets."""

    usage_table: str | None = None
    """None: usage is not recorded (and budgets are not checked)."""
    pricing: Json[Pricing] = Field(default_factory=Pricing)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    stop_over_budget: bool = False
    """Also stop a user's running sessions and cancel their queued commands once over."""


@dataclass(frozen=True)
class Usage(Record):
    """One billable unit, attributed to the user who caused it."""

    id: str
    user: str
    capability: str
    resource: str
    kind: str
    """What was billed: ``fargate``, ``lambda`` or ``ec2:<instance type>``."""
    started_at: float
    ended_at: float
    seconds: float
    """Billed seconds (after the service's minimum)."""
    units: float
    """vCPU-seconds (Fargate), GB-seconds (Lambda), instance-seconds (EC2)."""
    dollars: float
    vcpu: float | None = None
    memory_gb: float | None = None


@dataclass(frozen=True)
class Span:
    """Who caused a billable unit, and when it ran."""

    unit: str
    """The unit's one id (``session/<id>``, ``worker/<task id>``, ``job/<id>``, ...)."""
    user: str
    capability: Capability
    resource: str
    started_at: float
    ended_at: float

    def billed(self, minimum: int) -> float:
        """Its seconds as billed: at least ``minimum``, to the millisecond."""
        return max(float(minimum), round(max(0.0, self.ended_at - self.started_at), 3))

    def priced(
        self, kind: str, seconds: float, units: float, dollars: float, **size: float | None
    ) -> Usage:
        return Usage(
            self.unit, self.user, self.capability.value, self.resource, kind, self.started_at,
            self.ended_at, seconds, round(units, 3), round(dollars, 8), **size,
        )  # fmt: skip


class Meter:
    """Turns a unit's span into a priced ``Usage``."""

    def __init__(self, pricing: Pricing) -> None:
        self.pricing = pricing

    def fargate(self, span: Span, *, cpu: int, memory_mib: int) -> Usage:
        seconds = span.billed(self.pricing.fargate_minimum_seconds)
        vcpu, gb = cpu / CPU_UNITS_PER_VCPU, memory_mib / MIB_PER_GB
        hourly = vcpu * self.pricing.fargate_vcpu_hour + gb * self.pricing.fargate_gb_hour
        return span.priced(
            "fargate", seconds, seconds * vcpu, seconds / 3600 * hourly, vcpu=vcpu, memory_gb=gb
        )

    def lambda_(self, span: Span, *, memory_mib: int) -> Usage:
        seconds = span.billed(0)
        gb = memory_mib / MIB_PER_GB
        dollars = seconds * gb * self.pricing.lambda_gb_second + self.pricing.lambda_request
        return span.priced("lambda", seconds, seconds * gb, dollars, memory_gb=gb)

    def ec2(self, span: Span, *, instance_type: str) -> Usage:
        seconds = span.billed(self.pricing.ec2_minimum_seconds)
        hourly = self.pricing.ec2_hourly.get(instance_type, 0.0)
        return span.priced(f"ec2:{instance_type}", seconds, seconds, seconds / 3600 * hourly)


def month_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m")


def month_start(epoch: float) -> float:
    """When the month of ``epoch`` began, UTC."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()


def next_month(epoch: float) -> float:
    """When the month of ``epoch`` ends (budgets reset then), UTC."""
    moment = datetime.fromtimestamp(epoch, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def _sort_key(usage_ended_at: float, unit: str) -> str:
    return f"USE#{iso(usage_ended_at)}#{unit}"


def _user_key(user: str) -> str:
    return f"USER#{user}"


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(value, 8)))


@dataclass(frozen=True)
class MonthSpend:
    user: str
    dollars: float
    seconds: float
    units: int


class Ledger:
    """The usage table: record units once, read a user's records, a month's spend, budgets."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.client = table.meta.client

    def record(self, usage: Usage) -> bool:
        """Records ``usage`` once: False when its unit was recorded before (a replay)."""
        name, user = self.table.name, _user_key(usage.user)
        fields = usage.to_record()
        record = {k: _decimal(v) if isinstance(v, float) else v for k, v in fields.items()}
        guard = {"pk": f"UNIT#{usage.id}", "sk": "UNIT", "user": usage.user}
        total = {
            "TableName": name,
            "Key": {"pk": f"MONTH#{month_of(usage.ended_at)}", "sk": user},
            "UpdateExpression": "SET #u = :user ADD dollars :d, seconds :s, units :one",
            "ExpressionAttributeNames": {"#u": "user"},
            "ExpressionAttributeValues": {
                ":user": usage.user,
                ":d": _decimal(usage.dollars),
                ":s": _decimal(usage.seconds),
                ":one": 1,
            },
        }
        item = {"pk": user, "sk": _sort_key(usage.ended_at, usage.id), **record}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": name,
                            "Item": guard,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {"Put": {"TableName": name, "Item": item}},
                    {"Update": total},
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise
        return True

    def records(self, user: str, since: float, until: float) -> Iterator[Usage]:
        """The user's units that ended in ``[since, until)``, oldest first."""
        condition = Key("pk").eq(_user_key(user)) & Key("sk").between(
            f"USE#{iso(since)}", f"USE#{iso(until)}"
        )
        for item in query_items(self.table, KeyConditionExpression=condition):
            usage = Usage.from_record({k: plain(v) for k, v in item.items()})
            if since <= usage.ended_at < until:  # the keys hold whole seconds
                yield usage

    def spent(self, user: str, month: str) -> float:
        item = self.table.get_item(
            Key={"pk": f"MONTH#{month}", "sk": _user_key(user)}, ConsistentRead=True
        ).get("Item")
        return float(plain(item["dollars"])) if item else 0.0

    def month(self, month: str) -> list[MonthSpend]:
        """Every user's spend in ``month``, the largest first."""
        condition = Key("pk").eq(f"MONTH#{month}")
        found = [
            MonthSpend(
                str(item["user"]),
                float(plain(item.get("dollars", 0))),
                float(plain(item.get("seconds", 0))),
                int(plain(item.get("units", 0))),
            )
            for item in query_items(self.table, KeyConditionExpression=condition)
        ]
        return sorted(found, key=lambda spend: (-spend.dollars, spend.user))

    def own_budget(self, user: str) -> float | None:
        item = self.table.get_item(Key={"pk": _user_key(user), "sk": "BUDGET"}).get("Item")
        return float(plain(item["monthly_budget_usd"])) if item else None

    def set_budget(self, user: str, monthly_budget_usd: float | None) -> None:
        """The user's own budget; None: back to the default (``limits.monthly_budget_usd``)."""
        key = {"pk": _user_key(user), "sk": "BUDGET"}
        if monthly_budget_usd is None:
            self.table.delete_item(Key=key)
        else:
            self.table.put_item(Item={**key, "monthly_budget_usd": _decimal(monthly_budget_usd)})


class BudgetExceeded(LimitReached):
    default_code = "budget_exceeded"

    def __init__(self, spent: float, budget: float, resets_at: float) -> None:
        super().__init__(
            f"this month's spend ${spent:.4f} has reached the budget ${budget:.4f}; new compute "
            f"is refused until {iso(resets_at)} (running work continues)"
        )
        self.spent, self.budget, self.resets_at = spent, budget, resets_at


@dataclass(frozen=True)
class Standing:
    """A user's month: what they spent, their budget (None: none) and when it resets."""

    spent: float
    budget: float | None
    resets_at: float

    @property
    def over(self) -> bool:
        return self.budget is not None and self.spent >= self.budget

    def said(self) -> str:
        """Why a user's work was refused or stopped, in words."""
        return (
            f"over budget: ${self.spent:.4f} spent this month of ${self.budget or 0:.4f} "
            f"(until {iso(self.resets_at)})"
        )


class Metering:
    """What a capability needs: a meter, the ledger, and the budget gate."""

    def __init__(
        self,
        ledger: Ledger,
        pricing: Pricing,
        default_budget: float | None,
        clock: Callable[[], float],
        stop_over_budget: bool = False,
    ) -> None:
        self.ledger = ledger
        self.meter = Meter(pricing)
        self.default_budget = default_budget
        self.clock = clock
        self.stop_over_budget = stop_over_budget

    def budget(self, user: str) -> float | None:
        own = self.ledger.own_budget(user)
        return own if own is not None else self.default_budget

    def standing(self, user: str, budget: float | None = None) -> Standing:
        now = self.clock()
        return Standing(
            self.ledger.spent(user, month_of(now)),
            self.budget(user) if budget is None else budget,
            next_month(now),
        )

    def check(self, user: str) -> None:
        """Raises ``BudgetExceeded`` when the user's spend this month reached their budget
        (no budget: never)."""
        budget = self.budget(user)
        if budget is None:
            return
        standing = self.standing(user, budget)
        if standing.over:
            raise BudgetExceeded(standing.spent, budget, standing.resets_at)

    def record(self, usage: Usage) -> bool:
        return self.ledger.record(usage)

    def to_stop(self, users: Iterable[str]) -> dict[str, Standing]:
        """Of ``users``, those whose running work is to be stopped now (over budget, with
        ``limits.stop_over_budget`` on), each with their standing."""
        if not self.stop_over_budget:
            return {}
        standings = {user: self.standing(user) for user in set(users)}
        return {user: standing for user, standing in standings.items() if standing.over}


def metering_of(
    config: UsageConfig | None, aws: Any, clock: Callable[[], float]
) -> Metering | None:
    """A function's metering, or None when usage is off (no usage table)."""
    if config is None or not config.usage_table:
        return None
    return Metering(
        Ledger(aws.resource("dynamodb").Table(config.usage_table)),
        config.pricing,
        config.monthly_budget_usd,
        clock,
        config.stop_over_budget,
    )
