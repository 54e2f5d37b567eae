"""Schemathesis hooks: sign each request with SigV4 from a local profile, as a real client.

Schemathesis sends ``Authorization: sign-me`` (the value the test gives it); this hook swaps
that placeholder for a real signature over the request as it goes out. Requests where
schemathesis removed or mangled the header (its authentication checks) stay as they are, so
the sandbox must refuse them — 401 unsigned, 403 badly signed.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

PLACEHOLDER = "sign-me"


class SignWithProfile(requests.auth.AuthBase):
    def __init__(self, profile: str) -> None:
        self.credentials = boto3.session.Session(profile_name=profile).get_credentials()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.headers.get("Authorization") != PLACEHOLDER:
            return request
        del request.headers["Authorization"]
        body = request.body or b""
        signed = AWSRequest(
            method=request.method,
            url=request.url,
            data=body.encode() if isinstance(body, str) else body,
            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
        )
        SigV4Auth(self.credentials, "execute-api", "us-east-1").add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Signs as ``BERTH_FUZZ_PROFILE``; the operator's routes (``/admin``) as
    ``BERTH_FUZZ_ADMIN_PROFILE``, one of the deployment's admins."""
    admin = str(getattr(case, "path", "")).startswith("/admin")
    profile = os.environ.get("BERTH_FUZZ_ADMIN_PROFILE" if admin else "BERTH_FUZZ_PROFILE")
    if profile:
        kwargs["auth"] = SignWithProfile(profile)


def _integral_floats(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_integral_floats(v) for v in value)
    return False


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Three refusals the document states but JSON Schema cannot express, and nothing else:

    - an opaque ``next_token`` the API never issued (no generator can make a real one);
    - ``1.0``/``1e2`` for an integer: berth takes only JSON integers (stricter than JSON
      Schema, which counts ``1.0`` as an integer);
    - a file path whose key, ``workspaces/<project>/<path>``, is over S3's 1024 bytes of UTF-8
      (JSON Schema's maxLength counts characters).
    """
    if getattr(failure, "code", None) != "ST202" or response.status_code != 400:
        return True
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return True
    if message == "next_token is not a token this API issued" and "next_token" in (
        case.query or {}
    ):
        return False
    if message == "the path is too long (S3 keys hold 1024 bytes)" and _key_too_long(case):
        return False
    return not (message.endswith("Input should be a valid integer") and _integral_floats(case.body))


def _key_too_long(case: Any) -> bool:
    project = (case.path_parameters or {}).get("project", "")
    path = (case.body or {}).get("path", "") if isinstance(case.body, dict) else ""
    key = f"workspaces/{project}/{path}"
    return len(key.encode("utf-8", "surrogatepass")) > 1024
