"""``make deploy`` on a machine without credentials or Docker says so at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from infra.settings import ROOT


def test_without_credentials_or_docker_it_says_both_in_seconds(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PATH": str(tmp_path),  # no docker here
    }
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "infra.preflight"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert time.monotonic() - began < 20  # no synth first
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "make deploy needs AWS credentials: none found (sign in: aws sso login, set AWS_PROFILE, "
        "or in CI assume the deploy role; docs/deploying.md)",
        "make deploy needs Docker: no docker command (the worker, job and session images are "
        "built locally)",
    ]


def test_with_credentials_and_a_region_only_docker_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_REGION": "eu-west-1", "PATH": str(tmp_path),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "infra.preflight"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, len(done.stderr.splitlines())) == (1, 1)
    assert done.stderr.startswith("make deploy needs Docker")
