"""Instances: the record, its phases and the API models."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.records import Record, iso

# URL-safe base64 (Walrus blob/object ids), bounded. The SSM document enforces the same.
BLOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
INSTANCE_ID_PATTERN = r"^ins_[0-9a-f]{28}$"

APP_TAG = "berth:app"
ID_TAG = "berth:instance-id"
USER_TAG = "berth:user"
CAPABILITY_TAG = "berth:capability"


class Phase(StrEnum):
    WAITING_FOR_INSTANCE = "waiting_for_instance"
    WAITING_FOR_SSM = "waiting_for_ssm"
    FETCHING_BLOB = "fetching_blob"
    READY = "ready"
    FAILED = "failed"
    TERMINATED = "terminated"

    @property
    def live(self) -> bool:
        """Holds one of the caller's instance slots."""
        return self not in {Phase.FAILED, Phase.TERMINATED}

    @property
    def provisioning(self) -> bool:
        return self in {Phase.WAITING_FOR_INSTANCE, Phase.WAITING_FOR_SSM, Phase.FETCHING_BLOB}


def new_instance_id(now: float) -> str:
    return f"ins_{int(now * 1000):012x}{secrets.token_hex(8)}"


def vm_name(now: float, instance_id: str) -> str:
    """Readable and unique: the time, then the end of the (random) instance id."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M%S")
    return f"berth-vm-{stamp}-{instance_id[-6:]}"


@dataclass(frozen=True)
class Instance(Record):
    id: str
    user: str
    blob_id: str
    name: str
    status: Phase
    created_at: float
    updated_at: float
    phase_started_at: float
    ec2_instance_id: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    command_id: str | None = None
    error: str | None = None

    def moved(self, status: Phase, now: float, **changes: Any) -> Instance:
        started = now if status != self.status else self.phase_started_at
        return replace(self, status=status, updated_at=now, phase_started_at=started, **changes)


class CreateInstance(BaseModel):
    # strict: a number must be a JSON integer, never "60", true or 1e2
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"blob_id": "M4hsZGQ1oCktdz9rQ3ByZfP8rCXfG3sZ3mWc7n0Zs5s"}]
        },
    )

    blob_id: str = Field(
        pattern=BLOB_ID_PATTERN,
        description="The Walrus blob (object) id: URL-safe base64, at most 128 characters.",
    )


@dataclass(frozen=True)
class MachineLife:
    """What bills an instance's machine: its type and since when it runs."""

    instance_id: str
    instance_type: str
    launched_at: float


class Ec2Facts(BaseModel):
    state: str
    instance_type: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    launch_time: str | None = None


@dataclass(frozen=True)
class InstanceView:
    """An instance as it stands: its record and, when EC2 knows it, EC2's facts."""

    instance: Instance
    ec2: Ec2Facts | None = None

    @property
    def id(self) -> str:
        return self.instance.id


class InstanceOut(BaseModel):
    id: str
    name: str
    blob_id: str
    status: Phase
    ec2_instance_id: str | None
    private_ip: str | None
    public_ip: str | None
    created_at: str
    updated_at: str
    error: str | None
    ec2: Ec2Facts | None = None

    @classmethod
    def of(cls, view: InstanceView) -> InstanceOut:
        instance, ec2 = view.instance, view.ec2
        return cls(
            id=instance.id,
            name=instance.name,
            blob_id=instance.blob_id,
            status=instance.status,
            ec2_instance_id=instance.ec2_instance_id,
            private_ip=(ec2.private_ip if ec2 and ec2.private_ip else instance.private_ip),
            public_ip=(ec2.public_ip if ec2 and ec2.public_ip else instance.public_ip),
            created_at=iso(instance.created_at) or "",
            updated_at=iso(instance.updated_at) or "",
            error=instance.error,
            ec2=ec2,
        )


@dataclass(frozen=True)
class ScriptOutput:
    """What the SSM command that fetched the blob and ran its script reported."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str


@dataclass(frozen=True)
class InstanceLog:
    instance: Instance
    output: ScriptOutput | None
    """None until the script was sent."""


class InstanceLogOut(BaseModel):
    id: str
    status: Phase
    script_status: str | None = Field(
        description="SSM's status of the fetch-and-run command (Pending, InProgress, Success, "
        "Failed, TimedOut, ...); null until it was sent"
    )
    exit_code: int | None
    stdout: str = Field(description="The first 24,000 characters SSM keeps")
    stderr: str = Field(description="The first 8,000 characters SSM keeps")

    @classmethod
    def of(cls, log: InstanceLog) -> InstanceLogOut:
        output = log.output
        return cls(
            id=log.instance.id,
            status=log.instance.status,
            script_status=output.status if output else None,
            exit_code=output.exit_code if output else None,
            stdout=output.stdout if output else "",
            stderr=output.stderr if output else "",
        )


class InstanceList(BaseModel):
    items: list[InstanceOut]
    next_token: str | None = None
