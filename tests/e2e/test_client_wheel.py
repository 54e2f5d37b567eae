"""The client as a product developer gets it: its wheel, built from client/, installed in a
fresh virtual environment outside the checkout (no CDK app, aws-cdk-lib, boto3 or moto), runs
``berth --help`` and a signed call against make local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.settings import ROOT
from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv with only the client's wheel (and what it needs)."""
    place = tmp_path_factory.mktemp("wheel")
    quiet = ["--quiet", "--disable-pip-version-check"]
    run(sys.executable, "-m", "pip", "wheel", *quiet, "--no-deps", "-w", place / "dist",
        ROOT / "client", cwd=place)  # fmt: skip
    (wheel,) = (place / "dist").glob("berth_client-*.whl")
    run(sys.executable, "-m", "venv", place / "venv", cwd=place)
    run(place / "venv" / "bin" / "python", "-m", "pip", "install", *quiet, wheel, cwd=place)
    return place / "venv" / "bin"


def test_the_wheel_carries_the_client_and_nothing_of_the_cdk_app(installed: Path) -> None:
    probe = (
        "import importlib.util as u, json; print(json.dumps({m: bool(u.find_spec(m)) for m in "
        "['berth_client', 'infra', 'aws_cdk', 'boto3', 'moto', 'sessions', 'workers']}))"
    )
    found = json.loads(run(installed / "python", "-c", probe, cwd=installed))
    assert found == {
        "berth_client": True, "infra": False, "aws_cdk": False, "boto3": False,
        "moto": False, "sessions": False, "workers": False,
    }  # fmt: skip
    shown = run(installed / "berth", "--help", cwd=installed)
    assert "sessions" in shown and "files" in shown and "console" in shown


def test_the_wheel_carries_the_console_and_its_bundled_terminal(installed: Path) -> None:
    """berth console's pages and xterm.js travel in the wheel: no CDN, no checkout."""
    probe = (
        "import berth_client.console as c; "
        "print(sorted(p.name for p in [*c.STATIC.iterdir(), *c.VENDOR.iterdir()]))"
    )
    files = run(installed / "python", "-c", probe, cwd=installed)
    for name in ("index.html", "console.js", "terminal.js", "terminal.html", "xterm.js",
                 "xterm.css", "addon-fit.js"):  # fmt: skip
        assert f"'{name}'" in files, name


def test_the_installed_cli_signs_a_call_to_make_local(installed: Path, sandbox: Sandbox) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(installed.parent),
        "BERTH_CONFIG": str(installed.parent / "config.json"),
        "BERTH_API_URL": sandbox.url,
        "BERTH_PROFILE": "berth-local-cli",
        "AWS_CONFIG_FILE": sandbox.aws_config,
        "AWS_SHARED_CREDENTIALS_FILE": sandbox.aws_credentials,
        "AWS_REGION": "us-east-1",
    }
    listed = json.loads(run(installed / "berth", "profiles", "--json", cwd=installed, env=env))
    assert "default" in [profile["name"] for profile in listed]
    sessions = json.loads(
        run(installed / "berth", "sessions", "ls", "--json", cwd=installed, env=env)
    )
    assert isinstance(sessions, list)
