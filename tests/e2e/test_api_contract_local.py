"""The API contract against make local, as clients meet it: a schema-driven fuzzer
(schemathesis, every check) over the served OpenAPI document — signed as a caller, and with
no identity — and a table of hand-made bad requests per route.

The fuzzer runs the examples, coverage and fuzzing phases with a fixed seed (a run in CI
means the same requests every time). Its stateful phase is off: berth's DELETE stops a
session, cancels a command or terminates an instance and keeps the record readable with its
final status, which that phase reads as "a deleted resource is still there".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from berth_client import BerthClient, Settings
from berth_client.cli import post_form
from infra.sandbox.app import LOCAL_ADMIN
from infra.sandbox.events import local_user_arn
from infra.settings import ROOT
from tests.e2e.conftest import Sandbox
from usage.models import user_id

pytestmark = pytest.mark.e2e

ST = Path(sys.executable).parent / "st"
WORKER_ONLY = "/workers/credentials"
ADMIN_ID = user_id(local_user_arn(LOCAL_ADMIN))
"""make local's admin: the fuzzer calls the /admin routes as it, so they are fuzzed too (an
ordinary caller's 403 there: tests/e2e/test_usage_local.py), on the admin's own usage."""


SEEDED_PROJECT, SEEDED_PATH, SEEDED_VOLUME = "fuzzfiles", "README.md", "chroma"


def seed_a_file(sandbox: Sandbox) -> None:
    """The fuzzer's own project with one file in it, and a volume of the profile that keeps
    storage (a session of it started and stopped), put there as any client would."""
    api = BerthClient(
        Settings(
            api_url=sandbox.url,
            profile="berth-local-fuzzer",
            config_file=sandbox.aws_config,
            credentials_file=sandbox.aws_credentials,
        )
    )
    form = api.upload_file(SEEDED_PROJECT, SEEDED_PATH, 6)
    post_form(form.url, form.fields or {}, b"hello\n")
    api.stop_session(api.start_session(SEEDED_VOLUME).id)


def fuzz(sandbox: Sandbox, tmp_path: Path, signed: bool) -> str:
    code, document = sandbox.request("GET", "/openapi.json", user="fuzzer")
    assert code == 200
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.fuzz_hooks",
        "PYTHONPATH": str(ROOT),
        "AWS_CONFIG_FILE": sandbox.aws_config,
        "AWS_SHARED_CREDENTIALS_FILE": sandbox.aws_credentials,
    }
    config = tmp_path / "schemathesis.toml"
    if signed:
        seed_a_file(sandbox)
    # A download names an existing file by its path: no generator can name one, so the
    # fuzzer is given the seeded one half the time (and whatever it makes up otherwise).
    config.write_text(
        f"[dictionaries.seeded]\nvalues = [{json.dumps(SEEDED_PATH)}]\n\n"
        "[[operations]]\n"
        'include-name = "POST /workspaces/{project}/files/download"\n'
        f'parameters = {{ project = "{SEEDED_PROJECT}", '
        '"body.path" = { dictionary = "seeded", probability = 0.5 } }\n\n'
        "[[operations]]\n"
        'include-name = "DELETE /sessions/storage/{profile}"\n'
        f'parameters = {{ profile = "{SEEDED_VOLUME}" }}\n'
        # a user id names a user only as /admin/usage spells it: the admin's own
        + "".join(
            f'\n[[operations]]\ninclude-name = "{route}"\nparameters = {{ user = "{ADMIN_ID}" }}\n'
            for route in ("GET /admin/users/{user}/usage", "PUT /admin/users/{user}/budget")
        )
    )
    args = [
        str(ST), "--config-file", str(config), "run", str(spec), "--url", sandbox.url,
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing", "--max-examples", "4" if signed else "2",
        "--seed", "1",
        "--no-color",
    ]  # fmt: skip
    excluded = 0
    if signed:
        env["BERTH_FUZZ_PROFILE"] = "berth-local-fuzzer"
        env["BERTH_FUZZ_ADMIN_PROFILE"] = f"berth-local-{LOCAL_ADMIN}"
        args += ["-H", "Authorization: sign-me"]
        # only a worker task's own role session may get credentials: to any caller the
        # route answers 404 (tests/e2e/test_workers_local.py), which leaves the fuzzer no
        # data to go further with
        args += ["--exclude-path", WORKER_ONLY]
        excluded = 1
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT
    )
    output = result.stdout + result.stderr
    summary = output[output.find("SUMMARY") :]
    print(summary)  # the counts: operations, phases, test cases, failures
    assert result.returncode == 0, output[-6000:]
    operations = sum(len(methods) for methods in document["paths"].values()) - excluded
    assert re.search(rf"Tested: {operations}\b", summary), summary  # every operation
    return summary


def test_the_fuzzer_finds_nothing_as_a_caller(sandbox: Sandbox, tmp_path: Path) -> None:
    """0 server errors, 0 response-schema violations, 0 undocumented statuses, ..."""
    summary = fuzz(sandbox, tmp_path, signed=True)
    assert "No issues found" in summary
    assert re.search(r"(\d+) generated, \1 passed", summary), summary


def test_the_fuzzer_finds_nothing_without_identity(sandbox: Sandbox, tmp_path: Path) -> None:
    summary = fuzz(sandbox, tmp_path, signed=False)
    assert "failures" not in summary.split("Test cases:")[-1]
    assert "only 401/403 responses" in summary  # every operation refused an unsigned caller


DEEP = "[" * 1000 + "]" * 1000
HUGE = "9" * 4301
POSTS = {
    "/sessions": {"profile": "default"},
    "/jobs": {"name": "checksum", "input": {}},
    "/instances": {"blob_id": "abc"},
    "/workspaces/demo/commands": {"command": "true"},
}


def raw_post(sandbox: Sandbox, path: str, body: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the sandbox on loopback
        f"{sandbox.url}{path}", data=body.encode(), method="POST"
    )
    request.add_header("X-Berth-User", "tessa")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("path", sorted(POSTS))
@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("nested 1000 deep", lambda ok: json.dumps({**ok, "x": "@"}).replace('"@"', DEEP), 400),
        (
            "a 4301-digit integer",
            lambda ok: json.dumps({**ok, "x": 1}).replace("1}", HUGE + "}"),
            400,
        ),
        ("NaN", lambda ok: json.dumps({**ok, "x": 1}).replace("1}", "NaN}"), 400),
        ("not JSON", lambda ok: "{" + json.dumps(ok), 400),
        ("a NUL byte in a field", lambda ok: json.dumps({**ok, "extra\u0000": 1}), 400),
        ("an unknown field", lambda ok: json.dumps({**ok, "shell": "/bin/sh"}), 400),
        ("not an object", lambda ok: json.dumps([ok]), 400),
        ("over 64 KB", lambda ok: json.dumps({**ok, "x": "a" * 70_000}), 413),
    ],
)
def test_a_bad_body_is_a_4xx_in_the_error_shape(
    sandbox: Sandbox, path: str, name: str, body: object, status: int
) -> None:
    code, answer = raw_post(sandbox, path, body(POSTS[path]))  # type: ignore[operator]
    assert code == status, (name, answer)
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    ("ttl", "why"),
    [('"60"', "a string"), ("true", "a boolean"), ("1e2", "a float"), ("60.0", "a float")],
)
def test_numbers_must_be_json_integers(sandbox: Sandbox, ttl: str, why: str) -> None:
    body = '{"profile": "default", "ttl_seconds": ' + ttl + "}"
    code, answer = raw_post(sandbox, "/sessions", body)
    assert (code, answer["error"]["code"]) == (400, "invalid_request"), why


@pytest.mark.parametrize(
    "path",
    [
        "/sessions/..%2F..%2Fetc%2Fpasswd",
        "/sessions/ses_%00",
        "/jobs/..%2Fjob",
        "/instances/%2E%2E",
        "/workspaces/..%2Fother/commands",
        "/workspaces/demo/commands/..%2F..%2Fx",
        "/workspaces/DEMO/commands",
        "/workspaces/demo%0Aname/commands",
    ],
)
def test_traversal_and_control_characters_in_paths_are_4xx(sandbox: Sandbox, path: str) -> None:
    code, answer = sandbox.request("GET", path, user="tessa")
    assert code in {400, 404}, answer
    assert set(answer["error"]) == {"code", "message"}
