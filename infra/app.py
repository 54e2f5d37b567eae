"""Builds the CDK app from typed settings. ``app.py`` at the top level only calls this."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.settings import Settings, project_context
from infra.stack import BerthStack


def build_app(
    context: Mapping[str, Any] | None = None, outdir: str | None = None
) -> tuple[cdk.App, BerthStack]:
    """Makes the app and its stack.

    Launched by the CDK CLI (``CDK_OUTDIR`` set), the CLI's context (cdk.json, cdk.context.json
    and ``-c`` overrides) is used as is; launched as plain ``python app.py`` or from tests,
    the project's context files are read here so both ways synthesize the same template.
    Raises ``SettingsError`` (one line per bad key) before any construct is made.
    """
    if context is None and "CDK_OUTDIR" not in os.environ:
        context = project_context()
    app = cdk.App(context=dict(context) if context is not None else None, outdir=outdir)
    settings = Settings.from_context(app.node.get_all_context())
    env = (
        cdk.Environment(account=settings.env.account, region=settings.env.region)
        if settings.env.account or settings.env.region
        else None
    )
    stack = BerthStack(
        app,
        settings.prefix,
        settings=settings,
        env=env,
        description="berth: per-user compute on demand (sessions, jobs, workers, instances)",
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack
