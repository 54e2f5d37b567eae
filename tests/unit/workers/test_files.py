"""A project's files through the real handler: listed and signed only for the project's
owner, an upload claims an unused project, hostile paths never become keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.workers.conftest import ALICE, BOB, BUCKET


@pytest.fixture
def call(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Call]:
    with api_caller("workers", environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


def put(aws: boto3.session.Session, project: str, path: str, data: bytes) -> None:
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"workspaces/{project}/{path}", Body=data)


def test_an_upload_claims_the_project_and_signs_a_form_bounded_by_the_size(call: Any) -> None:
    status, form = call("POST", "/workspaces/fresh/files/upload", {"path": "src/a.py", "size": 7})
    assert (status, form["method"], form["path"]) == (200, "POST", "src/a.py")
    assert form["fields"]["key"] == "workspaces/fresh/src/a.py"
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    assert ["content-length-range", 0, 7] in policy["conditions"]
    assert {"key": "workspaces/fresh/src/a.py"} in policy["conditions"]
    status, listed = call("GET", "/workspaces/fresh/files")  # the project is alice's now
    assert (status, listed["items"]) == (200, [])
    status, error = call(
        "POST", "/workspaces/fresh/files/upload", {"path": "b", "size": 1}, user=BOB
    )
    assert (status, error["error"]["code"]) == (404, "not_found")
    assert "choose another" in error["error"]["message"]  # the hint, not whose it is


def test_files_are_listed_by_path_and_downloaded_by_presigned_url(
    call: Any, aws: boto3.session.Session
) -> None:
    call("POST", "/workspaces/demo/commands", {"command": "true"})  # alice's project
    put(aws, "demo", "README.md", b"hello")
    put(aws, "demo", "src/main.py", b"print(1)\n")
    status, listed = call("GET", "/workspaces/demo/files")
    assert status == 200
    assert [(f["path"], f["size"]) for f in listed["items"]] == [
        ("README.md", 5),
        ("src/main.py", 9),
    ]
    _, only_src = call("GET", "/workspaces/demo/files", query={"prefix": "src/"})
    assert [f["path"] for f in only_src["items"]] == ["src/main.py"]
    _, paged = call("GET", "/workspaces/demo/files", query={"limit": "1"})
    _, rest = call(
        "GET", "/workspaces/demo/files", query={"limit": "1", "next_token": paged["next_token"]}
    )
    assert [f["path"] for f in paged["items"] + rest["items"]] == ["README.md", "src/main.py"]
    status, link = call("POST", "/workspaces/demo/files/download", {"path": "src/main.py"})
    assert (status, link["method"], link["fields"]) == (200, "GET", None)
    url = urlsplit(link["url"])
    assert url.path.endswith("/workspaces/demo/src/main.py")
    assert {"Signature", "X-Amz-Signature"} & set(parse_qs(url.query))  # presigned
    status, error = call("POST", "/workspaces/demo/files/download", {"path": "nope.txt"})
    assert (status, error["error"]["code"]) == (404, "not_found")


def test_another_users_project_looks_like_none(call: Any, aws: boto3.session.Session) -> None:
    call("POST", "/workspaces/mine/commands", {"command": "true"})
    put(aws, "mine", "secret.txt", b"s")
    for method, path, body in [
        ("GET", "/workspaces/mine/files", None),
        ("POST", "/workspaces/mine/files/download", {"path": "secret.txt"}),
    ]:
        status, error = call(method, path, body, user=BOB)
        assert (status, error["error"]["code"]) == (404, "not_found"), path


@pytest.mark.parametrize(
    "path",
    [
        "../other/x",
        "a/../../b",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/.",
        "tab\there",
        "nul\x00",
        "x" * 1020,
    ],
)
def test_hostile_paths_are_400_and_never_signed(call: Any, path: str) -> None:
    status, error = call("POST", "/workspaces/demo/files/upload", {"path": path, "size": 1})
    assert status == 400, error
    assert error["error"]["code"] in {"invalid_path", "invalid_request"}
    status, _ = call("GET", "/workspaces/demo/files")
    assert status == 404  # refused before the project was claimed


def test_an_upload_over_the_limit_is_400(call: Any) -> None:
    status, error = call("POST", "/workspaces/demo/files/upload", {"path": "big", "size": 1025})
    assert (status, error["error"]["code"]) == (400, "file_too_large")
    status, form = call("POST", "/workspaces/demo/files/upload", {"path": "big", "size": 1024})
    assert status == 200, form
