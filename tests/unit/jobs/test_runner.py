"""The job runner (containers/jobs): result ZIPs, failure ZIPs, and the Catch-path writer."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from berth_jobs.failure import write_failure
from berth_jobs.runner import Buckets, JobFailed, run_job

BUCKETS = Buckets(results="results-bucket", failures="failures-bucket")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKETS.results)
        client.create_bucket(Bucket=BUCKETS.failures)
        yield client


def read_zip(s3: Any, bucket: str, key: str) -> dict[str, bytes]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_checksum_result_zip_holds_the_digests(s3: Any) -> None:
    key = run_job(s3=s3, buckets=BUCKETS, job_id="job_1", name="checksum", payload={"text": "hi"})
    assert key == "results/job_1.zip"
    files = read_zip(s3, BUCKETS.results, key)
    digests = json.loads(files["checksums.json"])
    assert digests["sha256"] == hashlib.sha256(b"hi").hexdigest()
    assert digests["bytes"] == 2
    assert keys(s3, BUCKETS.failures) == []


def test_render_writes_several_files(s3: Any) -> None:
    payload = {"width": 16, "height": 8, "frames": 2, "iterations": 20}
    key = run_job(s3=s3, buckets=BUCKETS, job_id="job_2", name="render", payload=payload)
    files = read_zip(s3, BUCKETS.results, key)
    assert sorted(files) == ["frame-000.pgm", "frame-001.pgm", "manifest.json"]
    assert files["frame-000.pgm"].startswith(b"P5 16 8 255\n")
    assert len(files["frame-000.pgm"]) == len(b"P5 16 8 255\n") + 16 * 8


def test_a_failing_job_leaves_a_failure_zip_and_no_result(s3: Any) -> None:
    with pytest.raises(JobFailed, match="JobInputError: width/height"):
        run_job(s3=s3, buckets=BUCKETS, job_id="job_3", name="render", payload={"width": 0})
    assert keys(s3, BUCKETS.results) == []
    files = read_zip(s3, BUCKETS.failures, "failures/job_3.zip")
    error = json.loads(files["error.json"])
    assert error["error"] == "JobInputError"
    assert error["job_id"] == "job_3"
    assert json.loads(files["input.json"]) == {"width": 0}
    assert b"Traceback" in files["traceback.txt"]


def test_a_result_s3_cannot_store_now_is_raised_for_the_state_machine_to_run_again(
    s3: Any,
) -> None:
    """Found by make chaos at 30%: a job that ran ended FAILED because storing its result
    failed after botocore's retries. That is AwsUnavailable (retried by the state machine,
    the result has one key), never a failure ZIP for a job that did not fail."""
    from botocore.exceptions import ClientError

    from berth_jobs.runner import AwsUnavailable

    class SlowS3:
        def put_object(self, **_: Any) -> None:
            error = {"Error": {"Code": "SlowDown", "Message": "injected"},
                     "ResponseMetadata": {"HTTPStatusCode": 503}}  # fmt: skip
            raise ClientError(error, "PutObject")

    with pytest.raises(AwsUnavailable, match="SlowDown"):
        run_job(s3=SlowS3(), buckets=BUCKETS, job_id="job_9", name="checksum", payload={})
    assert keys(s3, BUCKETS.failures) == []


def test_an_unknown_job_fails_cleanly(s3: Any) -> None:
    with pytest.raises(JobFailed, match="no job 'mine'"):
        run_job(s3=s3, buckets=BUCKETS, job_id="job_4", name="mine", payload={})
    assert keys(s3, BUCKETS.failures) == ["failures/job_4.zip"]


def test_failure_writer_adds_step_functions_error_to_the_runners_zip(s3: Any) -> None:
    with pytest.raises(JobFailed):
        run_job(s3=s3, buckets=BUCKETS, job_id="job_5", name="render", payload={"frames": 0})
    event = {
        "job_id": "job_5",
        "name": "render",
        "input": {"frames": 0},
        "error": {"Error": "NonZeroExit", "Cause": "exit 1"},
        "logs": "execution arn",
    }
    assert write_failure(s3, BUCKETS.failures, event) == "failures/job_5.zip"
    files = read_zip(s3, BUCKETS.failures, "failures/job_5.zip")
    assert {"error.json", "traceback.txt", "input.json", "state-machine-error.json"} <= set(files)
    merged = json.loads(files["state-machine-error.json"])
    assert (merged["error"], merged["cause"], merged["logs"]) == (
        "NonZeroExit",
        "exit 1",
        "execution arn",
    )
    # the summary GET /jobs/{id} answers: the job's own error, not the container's exit
    summary = s3.get_object(Bucket=BUCKETS.failures, Key="failures/job_5.json")["Body"].read()
    assert json.loads(summary) == {
        "code": "JobInputError",
        "message": "width/height must be 1..4096 and frames 1..100",
    }


def test_failure_writer_alone_still_leaves_a_zip(s3: Any) -> None:
    """When the job never ran (unknown name, bad input, task never started)."""
    event = {"job_id": "job_6", "name": "", "input": {"x": 1}, "error": {"Error": "InvalidInput"}}
    write_failure(s3, BUCKETS.failures, event)
    files = read_zip(s3, BUCKETS.failures, "failures/job_6.zip")
    assert json.loads(files["state-machine-error.json"])["error"] == "InvalidInput"
    assert json.loads(files["input.json"]) == {"x": 1}
    summary = s3.get_object(Bucket=BUCKETS.failures, Key="failures/job_6.json")["Body"].read()
    assert json.loads(summary)["code"] == "InvalidInput"


def test_a_job_whose_answer_was_lost_after_storing_its_result_succeeded(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lambda that timed out after its side effect (make chaos's lost answers): its result is
    stored, yet the state machine's Catch calls the failure writer. It finds the result and
    says so (the state machine then succeeds); no failure ZIP is written beside it."""
    from berth_jobs import environment as env
    from berth_jobs.failure import handler

    monkeypatch.setenv(env.RESULTS_BUCKET, BUCKETS.results)
    monkeypatch.setenv(env.FAILURES_BUCKET, BUCKETS.failures)
    run_job(s3=s3, buckets=BUCKETS, job_id="job_7", name="checksum", payload={"text": "x"})
    lost = {"job_id": "job_7", "name": "checksum", "input": {"text": "x"},
            "error": {"Error": "Sandbox.Timedout", "Cause": "Task timed out"}}  # fmt: skip
    assert handler(lost, None) == {"result_key": "results/job_7.zip"}
    assert keys(s3, BUCKETS.failures) == []
    never_ran = {**lost, "job_id": "job_8"}
    assert handler(never_ran, None) == {"failure_key": "failures/job_8.zip"}
    assert "failures/job_8.zip" in keys(s3, BUCKETS.failures)
