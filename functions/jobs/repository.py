"""The jobs table: ``pk`` = job id, indexed by user and creation time for the caller's
listing (newest first)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from jobs.models import Job
from shared.pagination import query_page
from shared.records import to_item

BY_USER = "by_user_created"


class JobRepository:
    def __init__(self, table: Any) -> None:
        self.table = table

    def create(self, job: Job) -> Job | None:
        """Stores ``job``; returns the job already stored under its id instead, if any."""
        record = to_item(job.id, job.to_record())
        try:
            self.table.put_item(Item=record, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return self.get(job.id)
        return None

    def get(self, job_id: str) -> Job | None:
        item = self.table.get_item(Key={"pk": job_id}, ConsistentRead=True).get("Item")
        return Job.from_record(item) if item else None

    def list_for_user(
        self, user: str, limit: int, token: str | None
    ) -> tuple[list[Job], str | None]:
        items, next_token = query_page(
            self.table, BY_USER, ("user", user), limit=limit, token=token
        )
        return [Job.from_record(item) for item in items], next_token
