"""Jobs over HTTP against make local: the emulator runs the chooser; ZIPs really land in S3."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import zipfile
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def wait_done(sandbox: Sandbox, user: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        code, job = sandbox.request("GET", f"/jobs/{job_id}", user=user)
        assert code == 200, job
        if job["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.3)


def download_zip(url: str) -> dict[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - presigned, local
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    return {name: archive.read(name) for name in archive.namelist()}


def emulator(sandbox: Sandbox, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=sandbox.emulator,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


def test_a_lambda_job_leaves_a_downloadable_result(sandbox: Sandbox) -> None:
    code, job = sandbox.request(
        "POST", "/jobs", {"name": "checksum", "input": {"text": "hello"}}, user="gina"
    )
    assert (code, job["runtime"]) == (202, "lambda")
    done = wait_done(sandbox, "gina", job["id"])
    assert done["status"] == "SUCCEEDED", done
    files = download_zip(done["result_url"])
    assert json.loads(files["checksums.json"])["bytes"] == 5


def test_a_fargate_job_leaves_a_downloadable_result(sandbox: Sandbox) -> None:
    body = {"name": "render", "input": {"width": 32, "height": 24, "frames": 2, "iterations": 30}}
    code, job = sandbox.request("POST", "/jobs", body, user="gina")
    assert (code, job["runtime"]) == (202, "fargate")
    done = wait_done(sandbox, "gina", job["id"])
    assert done["status"] == "SUCCEEDED", done
    assert sorted(download_zip(done["result_url"])) == [
        "frame-000.pgm",
        "frame-001.pgm",
        "manifest.json",
    ]


def test_a_failing_job_leaves_a_failure_zip_with_both_sides_of_the_story(
    sandbox: Sandbox,
) -> None:
    code, job = sandbox.request(
        "POST", "/jobs", {"name": "render", "input": {"width": 0}}, user="hal"
    )
    assert code == 202
    done = wait_done(sandbox, "hal", job["id"])
    assert done["status"] == "FAILED"
    # the job's own error (its failure summary), not the container's exit
    assert done["error"]["code"] == "JobInputError"
    assert done["error"]["message"] == "width/height must be 1..4096 and frames 1..100"
    files = download_zip(done["error"]["failure_url"])
    assert json.loads(files["error.json"])["error"] == "JobInputError"  # from the runner
    assert json.loads(files["state-machine-error.json"])["error"] == "NonZeroExit"  # from the Catch
    assert b"Traceback" in files["traceback.txt"]


def test_direct_start_execution_validates_the_name_in_the_first_state(sandbox: Sandbox) -> None:
    """Clients may start executions themselves; an unknown name never runs."""
    sfn = emulator(sandbox, "stepfunctions")
    (machine,) = [m for m in sfn.list_state_machines()["stateMachines"] if "Jobs" in m["name"]]
    arn = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"],
        name="direct-unknown-1",
        input=json.dumps({"name": "mine-bitcoin", "input": {}}),
    )["executionArn"]
    deadline = time.monotonic() + 30
    while (status := sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert status == "FAILED"
    history = sfn.get_execution_history(executionArn=arn)["events"]
    entered = {
        e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
    }
    assert "Unknown job" in entered
    assert not {"Run on Lambda", "Run on Fargate"} & entered
    s3 = emulator(sandbox, "s3")
    (failures,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if "failures" in b["Name"]]
    body = s3.get_object(Bucket=failures, Key="failures/direct-unknown-1.zip")["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        error = json.loads(archive.read("state-machine-error.json"))
    assert error["error"] == "UnknownJob"


def test_the_readmes_aws_cli_example_works_against_the_emulator(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs page's `aws stepfunctions start-execution` with the banner's environment: the
    same calls, through the same environment variables the aws CLI reads."""
    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": sandbox.emulator,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    (stack,) = boto3.client("cloudformation").describe_stacks(StackName="berth")["Stacks"]
    arn = next(
        o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "JobsStateMachineArn"
    )
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=arn,
        name="readme-checksum-1",
        input=json.dumps({"name": "checksum", "input": {"text": "hi"}}),
    )["executionArn"]
    deadline = time.monotonic() + 60
    while (status := sfn.describe_execution(executionArn=execution)["status"]) == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert status == "SUCCEEDED"
    results = next(
        o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "ResultsBucketName"
    )
    assert boto3.client("s3").head_object(Bucket=results, Key="results/readme-checksum-1.zip")
