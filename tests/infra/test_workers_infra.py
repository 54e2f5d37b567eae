"""Workers infrastructure facts: the queue, the worker's narrow role, the scaler, the dashboard."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.test_sessions_infra import actions, resources, statements_of
from tests.synth import Synth


def only(synth: Synth, type_name: str, prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, r) for k, r in synth.resources(type_name).items() if k.startswith(prefix)]
    return found


def role_statements(synth: Synth, role_id: str) -> list[dict[str, Any]]:
    return [
        s
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_queue_is_encrypted_tls_only_with_a_dlq_and_a_long_visibility(synth: Synth) -> None:
    queue_id, queue = only(synth, "AWS::SQS::Queue", "WorkersCommands")
    dlq_id, dlq = only(synth, "AWS::SQS::Queue", "WorkersDeadLetters")
    settings = synth.stack.settings.workers
    props = queue["Properties"]
    assert props["SqsManagedSseEnabled"] is True
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": settings.max_receive_count,
    }
    assert props["VisibilityTimeout"] > settings.command_timeout_seconds
    policies = [
        p for p in synth.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_id} in p["Properties"]["Queues"]
    ]  # fmt: skip
    (policy,) = policies
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_an_alarm_fires_when_the_dlq_is_not_empty(synth: Synth) -> None:
    dlq_id, _ = only(synth, "AWS::SQS::Queue", "WorkersDeadLetters")
    _, alarm = only(synth, "AWS::CloudWatch::Alarm", "WorkersDeadLettersAlarm")
    props = alarm["Properties"]
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Threshold"] == 0
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    ]


def test_worker_role_is_limited_to_its_queue_bucket_prefixes_table_and_websocket(
    synth: Synth,
) -> None:
    _, task = only(synth, "AWS::ECS::TaskDefinition", "WorkersWorkerTask")
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    queue_id, _ = only(synth, "AWS::SQS::Queue", "WorkersCommands")
    bucket_id, _ = only(synth, "AWS::S3::Bucket", "WorkersWorkspaces")
    for statement in role_statements(synth, role_id):
        granted = actions(statement)
        rendered = json.dumps(resources(statement))
        if any(a.startswith("sqs:") for a in granted):
            assert resources(statement) == [{"Fn::GetAtt": [queue_id, "Arn"]}]
        elif granted & {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
            assert bucket_id in rendered
            assert "/workspaces/*" in rendered or "/logs/*" in rendered
        elif granted == {"s3:ListBucket"}:
            assert statement["Condition"] == {"StringLike": {"s3:prefix": ["workspaces/*"]}}
        elif "execute-api:ManageConnections" in granted:
            assert "@connections" in rendered
        elif any(a.startswith("dynamodb:") for a in granted):
            assert "Table" in rendered
        elif granted & {"ecs:UpdateTaskProtection"}:
            assert ":task/" in rendered
        elif granted == {"cloudwatch:PutMetricData"}:
            assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "berth"}}
        else:
            raise AssertionError(f"unexpected grant {granted} on {rendered}")


def test_only_the_scaler_starts_workers(synth: Synth) -> None:
    task_id, _ = only(synth, "AWS::ECS::TaskDefinition", "WorkersWorkerTask")
    (run,) = [s for s in statements_of(synth, "WorkersScaler") if "ecs:RunTask" in actions(s)]
    assert resources(run) == [{"Ref": task_id}]
    for function in ("WorkersApi", "LiveHandler"):
        granted = set().union(*(actions(s) for s in statements_of(synth, function)))
        assert "ecs:RunTask" not in granted


def test_scaler_runs_every_minute_alone(synth: Synth) -> None:
    scaler_id, scaler = only(synth, "AWS::Lambda::Function", "WorkersScaler")
    assert scaler["Properties"]["ReservedConcurrentExecutions"] == 1
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(1 minute)",
            "Targets": [
                {
                    "Arn": {"Fn::GetAtt": [scaler_id, "Arn"]},
                    "Id": "Target0",
                    "RetryPolicy": {"MaximumRetryAttempts": 0},
                }
            ],
        },
    )


def test_the_dashboard_shows_seed_004s_list(synth: Synth) -> None:
    _, dashboard = only(synth, "AWS::CloudWatch::Dashboard", "WorkersDashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
        "RunningWorkers",
        "CommandDuration",
        "CommandFailures",
    ):
        assert metric in body, metric


def test_worker_image_context_holds_only_what_it_needs(synth: Synth) -> None:
    assets = json.loads((synth.outdir / "berth.assets.json").read_text())
    (worker,) = [
        a["source"] for a in assets["dockerImages"].values()
        if a["source"].get("dockerFile") == "containers/worker/Dockerfile"
    ]  # fmt: skip
    context = synth.outdir / worker["directory"]
    top = sorted(p.name for p in context.iterdir())
    assert top == ["containers", "functions"]
    assert sorted(p.name for p in (context / "functions").iterdir()) == [
        "live",
        "shared",
        "workers",
    ]
