"""Moving records in and out of DynamoDB, and showing their times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def to_item(pk: str, record: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item: floats (epoch times) become Decimals, DynamoDB takes no floats."""
    return {
        "pk": pk,
        **{k: Decimal(str(round(v, 3))) if isinstance(v, float) else v for k, v in record.items()},
    }


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; make them int or float again."""
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    return value


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of the execution ``name`` of a state machine."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
