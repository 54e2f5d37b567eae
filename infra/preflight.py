"""``make deploy``'s first step: say at once what a deploy needs and this machine lacks,
instead of a 30 s synth that ends in "Unable to resolve AWS account".

    python -m infra.preflight     # exit 0: go on; exit 1: one line per missing thing
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError
from botocore.session import Session

from infra.settings import Settings, SettingsError, project_context


def configured_region() -> str | None:
    """``berth.env.region`` in the project's context, if the stack is pinned to a region."""
    try:
        return Settings.from_context(project_context()).env.region
    except SettingsError:
        return None  # synth says what is wrong with the settings


def credentials_missing(session_factory: Callable[[], Session] = Session) -> str | None:
    session = session_factory()
    try:
        found = session.get_credentials()
    except BotoCoreError as error:
        return f"AWS credentials: {error} (sign in: aws sso login, or set AWS_PROFILE)"
    if found is None:
        return (
            "AWS credentials: none found (sign in: aws sso login, set AWS_PROFILE, or in CI "
            "assume the deploy role; docs/deploying.md)"
        )
    region = session.get_config_variable("region") or os.environ.get("AWS_REGION")
    if not (region or configured_region()):
        return "AWS region: none set (set AWS_REGION, or berth.env.region in cdk.json)"
    return None


def docker_missing(which: Callable[[str], str | None] = shutil.which) -> str | None:
    docker = which("docker")
    if docker is None:
        return "Docker: no docker command (the worker, job and session images are built locally)"
    answered = subprocess.run(  # noqa: S603 - a fixed command, no input
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        timeout=20,
        check=False,
    )
    if answered.returncode != 0:
        return "Docker: the daemon does not answer (start Docker, or set DOCKER_HOST)"
    return None


def main() -> int:
    missing = [m for m in (credentials_missing(), docker_missing()) if m]
    for line in missing:
        print(f"make deploy needs {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
