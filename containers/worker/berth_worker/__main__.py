"""Entry point: ``python -m berth_worker`` (the container's ENTRYPOINT)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import boto3

from berth_worker.protection import TaskProtection
from berth_worker.sync import WorkspaceSync
from berth_worker.worker import Publish, Worker
from live.connections import ConnectionStore, Publisher
from workers.config import WorkerConfig
from workers.repository import WorkersRepository


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = WorkerConfig.from_env()
    dynamodb = boto3.resource("dynamodb")
    s3 = boto3.client("s3")
    cloudwatch = boto3.client("cloudwatch")
    publish: Publish = lambda channel, message: 0  # noqa: E731 - no WebSocket configured
    if config.connections_table and config.websocket_endpoint:
        publisher = Publisher(
            ConnectionStore(dynamodb.Table(config.connections_table), time.time),
            boto3.client("apigatewaymanagementapi", endpoint_url=config.websocket_endpoint),
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
        sqs=boto3.client("sqs"),
        queue_url=config.queue_url,
        repository=WorkersRepository(dynamodb.Table(config.workers_table)),
        sync=WorkspaceSync(s3, config.workspaces_bucket, Path(config.workdir)),
        s3=s3,
        bucket=config.workspaces_bucket,
        publish=publish,
        protection=TaskProtection(
            os.environ.get("ECS_AGENT_URI"), config.command_timeout_seconds // 60 + 2
        ),
        idle_seconds=config.idle_seconds,
        command_timeout=config.command_timeout_seconds,
        stop_grace=config.stop_grace_seconds,
        metrics=metric,
    )
    signal.signal(signal.SIGTERM, worker.stop)
    return worker.run_forever()


if __name__ == "__main__":
    sys.exit(main())
