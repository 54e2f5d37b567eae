#!/usr/bin/env python3
"""Entry point for ``cdk synth`` / ``cdk deploy``: builds the app from settings, nothing else."""

import sys

from infra.app import build_app
from infra.settings import SettingsError


def main() -> int:
    try:
        app, _ = build_app()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
