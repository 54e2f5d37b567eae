"""The console's server-side answers, without a browser: what the page is told when the API
or a presigned URL fails (the browser tests cover the pages themselves)."""

from __future__ import annotations

import json
import socket
from typing import Any

from berth_client.client import ApiError
from berth_client.console import ConsoleServer
from berth_client.models import JobOut


class FakeClient:
    timeout = 5.0

    def __init__(self, job: JobOut | None = None, error: ApiError | None = None) -> None:
        self._job, self._error = job, error

    def job(self, job_id: str) -> JobOut:
        if self._error is not None:
            raise self._error
        assert self._job is not None
        return self._job


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def job(result_url: str | None) -> JobOut:
    return JobOut(
        id="job_1",
        name="checksum",
        runtime="lambda",
        status="SUCCEEDED",
        created_at="2026-12-05T00:00:00Z",
        result_url=result_url,
    )


def download(client: Any, kind: str = "result") -> tuple[int, dict[str, Any]]:
    console = ConsoleServer(client)
    try:
        status, body = console.download("job_1", kind)
    finally:
        console.stop()
    return status, json.loads(body)


def test_a_result_url_that_cannot_be_reached_is_a_502_in_words() -> None:
    status, body = download(FakeClient(job(f"http://127.0.0.1:{closed_port()}/r.zip")))
    assert status == 502
    assert body["error"]["code"] == "unreachable"
    assert "job_1" in body["error"]["message"]


def test_a_job_without_that_output_is_a_404() -> None:
    assert download(FakeClient(job(None)))[0] == 404
    assert download(FakeClient(job("file:///etc/passwd")))[0] == 404
    assert download(FakeClient(job("https://x.example/r.zip")), kind="failure")[0] == 404


def test_the_apis_refusal_keeps_its_status_and_an_unreached_api_is_a_502() -> None:
    refused = FakeClient(error=ApiError(404, "not_found", "job not found"))
    assert download(refused) == (404, {"error": {"code": "not_found", "message": "job not found"}})
    unreached = FakeClient(error=ApiError(0, "unreachable", "cannot reach the API"))
    assert download(unreached)[0] == 502
