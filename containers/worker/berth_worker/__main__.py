"""Entry point: ``python -m berth_worker`` (the container's ENTRYPOINT). Wiring only."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import boto3

from berth_worker.access import AccessBroker, Live
from berth_worker.isolation import Isolation
from berth_worker.protection import TaskProtection
from berth_worker.worker import Publish, Worker, worker_id
from shared.live import ConnectionStore, Publisher
from workers.config import WorkerConfig
from workers.reserve import FleetRegistry


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = WorkerConfig.from_env()
    session = boto3.session.Session()
    cloudwatch = session.client("cloudwatch")
    publish: Publish = lambda channel, message: 0  # noqa: E731 - no WebSocket configured
    live = None
    if config.connections_table and config.websocket_endpoint:
        live = Live(config.connections_table, config.websocket_endpoint)
    if live is not None and not config.credentials_url:  # the task's own role publishes
        publisher = Publisher(
            ConnectionStore(
                session.resource("dynamodb").Table(config.connections_table), time.time
            ),
            session.client("apigatewaymanagementapi", endpoint_url=config.websocket_endpoint),
        )
        publish = publisher.publish

    def metric(name: str, value: float, unit: str) -> None:
        cloudwatch.put_metric_data(
            Namespace=config.metrics_namespace,
            MetricData=[
                {
                    "MetricName": name,
                    "Value": value,
                    "Unit": unit,
                    "Dimensions": [{"Name": "service", "Value": "workers"}],
                }
            ],
        )

    worker = Worker(
        sqs=session.client("sqs"),
        queue_prefix=config.user_queue_prefix,
        name=worker_id(),
        access=AccessBroker(session, config.workers_table, config.credentials_url, live),
        bucket=config.workspaces_bucket,
        workdir=Path(config.workdir),
        publish=publish,
        protection=TaskProtection(
            os.environ.get("ECS_AGENT_URI"), config.command_timeout_seconds // 60 + 2
        ),
        isolation=Isolation.for_worker(config.run_as_uid, config.run_as_uids),
        idle_seconds=config.idle_seconds,
        keep_warm_seconds=config.keep_warm_seconds,
        record_grace=config.record_grace_seconds,
        fleet=FleetRegistry(session.resource("dynamodb").Table(config.workers_table)),
        command_timeout=config.command_timeout_seconds,
        lease_seconds=config.lease_seconds,
        stop_grace=config.stop_grace_seconds,
        cancel_grace=config.cancel_grace_seconds,
        metrics=metric,
    )
    signal.signal(signal.SIGTERM, worker.stop)
    return worker.run_forever()


if __name__ == "__main__":
    sys.exit(main())
