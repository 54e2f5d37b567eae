"""Moving records in and out of DynamoDB, and showing their times."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Self


def number(value: float) -> Decimal:
    """A float (an epoch time) as DynamoDB takes it: a Decimal, to the millisecond."""
    return Decimal(str(round(value, 3)))


def to_item(pk: str, record: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item: floats (epoch times) become Decimals, DynamoDB takes no floats."""
    return {"pk": pk, **{k: number(v) if isinstance(v, float) else v for k, v in record.items()}}


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; make them int or float again."""
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    return value


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch(value: Any) -> float | None:
    """An AWS time as seconds since the epoch: a datetime (boto3), an ISO string (events),
    or a number (seconds); None if it is none of these."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of the execution ``name`` of a state machine."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"


class Record:
    """For frozen dataclasses stored as DynamoDB items: enums as their values, no Nones,
    and back (Decimals to numbers, values to enums)."""

    def to_record(self) -> dict[str, Any]:
        record = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
        return {
            key: value.value if isinstance(value, Enum) else value
            for key, value in record.items()
            if value is not None
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in record:
                continue
            value = plain(record[f.name])
            kind = hints.get(f.name)
            if isinstance(kind, type) and issubclass(kind, Enum):
                value = kind(value)
            values[f.name] = value
        return cls(**values)
