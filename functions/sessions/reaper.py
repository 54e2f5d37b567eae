"""Scheduled: stops expired/idle sessions, closes vanished ones, stops orphan tasks."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

logger = Logger()
metrics = Metrics()


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # on first use: logic and AWS clients are most of a cold start
    from sessions.reaping import Reaper
    from sessions.wiring import activity_from_env, service_from_env

    service = service_from_env()
    dry_run = service.config.reaper_dry_run
    decisions = Reaper(service, activity_from_env()).reap(dry_run=dry_run)
    if decisions:  # an idle stack publishes no metric and logs nothing
        metrics.add_metric(name="ReaperDecisions", unit=MetricUnit.Count, value=len(decisions))
    return {
        "dry_run": dry_run,
        "decisions": [
            {"session_id": d.session_id, "action": d.action, "reason": d.reason} for d in decisions
        ],
    }
