"""The one way a berth function that is not an HTTP route (events, schedules, workflow steps,
the WebSocket) logs and counts.

Metrics leave only when something was counted: a schedule that finds nothing to do publishes
none (a custom metric costs money every month it is published) and logs nothing. Tracing is
Lambda's own (active on the API, off for schedules); berth does not patch the SDK (the X-Ray
SDK's import alone costs a quarter of a second on every cold start).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics

Handler = Callable[[dict[str, Any], Any], Any]


def instrumented(logger: Logger, metrics: Metrics) -> Callable[[Handler], Handler]:
    """Wraps a handler: the invocation's context in every log line; the metrics it added
    flushed at the end — if it added any."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapped(event: dict[str, Any], context: Any) -> Any:
            try:
                return handler(event, context)
            finally:
                if metrics.metric_set:
                    metrics.flush_metrics()

        return logger.inject_lambda_context(wrapped)

    return wrap
