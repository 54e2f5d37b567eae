"""The smoke stage: a short pass over every capability through the berth client, SigV4-signed.

``make smoke`` runs it against a deployed stack named by ``BERTH_STACK`` (or the API at
``BERTH_API_URL``), with the standard AWS credential chain; the deploy workflow runs it
against staging before production. ``make test`` runs the same tests against ``make
local``, so they never rot. Each test leaves nothing running: what it starts, it stops."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import urllib.request
import zipfile
from pathlib import Path

import pytest

from berth_client import BerthClient, Settings
from berth_client.cli import post_form
from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e

DEPLOYED = bool(os.environ.get("BERTH_STACK") or os.environ.get("BERTH_API_URL"))


@pytest.fixture(scope="module")
def api(request: pytest.FixtureRequest) -> BerthClient:
    """The deployed stack's API, or make local's (signing as a local user of its own)."""
    if stack := os.environ.get("BERTH_STACK"):
        return BerthClient(Settings.from_stack(stack, os.environ.get("AWS_REGION")))
    if DEPLOYED:
        return BerthClient(Settings.load())
    sandbox: Sandbox = request.getfixturevalue("sandbox")
    return BerthClient(
        Settings(
            api_url=sandbox.url,
            websocket_url=sandbox.websocket,
            profile="berth-local-smoke",
            config_file=sandbox.aws_config,
            credentials_file=sandbox.aws_credentials,
        )
    )


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - presigned
        return bytes(response.read())


def test_the_api_is_up_and_knows_its_capabilities(api: BerthClient) -> None:
    assert api.request("GET", "/health")["status"] == "ok"
    assert "default" in {profile.name for profile in api.profiles()}
    assert {"checksum": "lambda"}.items() <= {
        r.name: r.runtime for r in api.job_catalogue()
    }.items()


def test_a_job_runs_and_its_result_downloads(api: BerthClient) -> None:
    text = secrets.token_hex(8)
    job = api.run_job("checksum", {"text": text})
    done = api.wait_for(lambda: api.job(job.id), {"SUCCEEDED", "FAILED"}, timeout=300)
    assert done.status == "SUCCEEDED", done.error
    assert done.result_url
    archive = zipfile.ZipFile(io.BytesIO(fetch(done.result_url)))
    assert hashlib.sha256(text.encode()).hexdigest() in archive.read("checksums.json").decode()


def test_a_session_starts_and_stops(api: BerthClient) -> None:
    session = api.start_session("default")
    try:
        running = api.wait_for(
            lambda: api.session(session.id), {"RUNNING", "FAILED", "STOPPED"}, timeout=300
        )
        assert running.status == "RUNNING", running.error
        assert running.private_ip
    finally:
        api.stop_session(session.id)
    stopped = api.wait_for(lambda: api.session(session.id), {"STOPPED", "FAILED"}, timeout=300)
    assert stopped.status == "STOPPED"


def test_a_file_put_into_a_project_is_read_by_its_command(api: BerthClient, tmp_path: Path) -> None:
    project = f"smoke-{secrets.token_hex(4)}"
    data = f"hello {secrets.token_hex(4)}\n".encode()
    form = api.upload_file(project, "in/hello.txt", len(data))
    post_form(form.url, form.fields or {}, data)
    assert [(f.path, f.size) for f in api.files(project)] == [("in/hello.txt", len(data))]
    command = api.run_command(project, "cat in/hello.txt && sha256sum in/hello.txt > out.txt")
    ended = api.wait_for(
        lambda: api.command(project, command.id), {"SUCCEEDED", "FAILED", "CANCELLED"}, timeout=300
    )
    assert (ended.status, ended.exit_code) == ("SUCCEEDED", 0), ended.error
    assert api.output(project, command.id).data == data.decode()
    written = fetch(api.download_file(project, "out.txt").url).decode()
    assert written.startswith(hashlib.sha256(data).hexdigest())
