"""Workers infrastructure facts: the two FIFO lanes and their lease, the worker's narrow roles, the
scaler, the reconciler, the dashboard."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.sandbox.dockerfile import assemble
from infra.settings import ROOT
from infra.workers import RUN_AS_UID, RUN_AS_UIDS
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


def worker_container(synth: Synth) -> dict[str, Any]:
    _, task = only(synth, "AWS::ECS::TaskDefinition", "WorkersWorkerTask")
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container["Environment"]}


def test_the_dead_letter_queue_is_fifo_encrypted_and_tls_only(synth: Synth) -> None:
    """Users' queues are made at run time (``workers.service.queue_of``, tested against the
    emulator) and redrive here."""
    dlq_id, dlq = only(synth, "AWS::SQS::Queue", "WorkersDeadLetters")
    props = dlq["Properties"]
    assert props["FifoQueue"] is True and props["QueueName"].endswith(".fifo")
    assert props["SqsManagedSseEnabled"] is True
    assert not [q for q in synth.resources("AWS::SQS::Queue") if q.startswith("WorkersCommands")]
    (policy,) = [
        p for p in synth.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": dlq_id} in p["Properties"]["Queues"]
    ]  # fmt: skip
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def user_queues(synth: Synth) -> str:
    """The ARN pattern of every user's queue, as rendered in the template."""
    return json.dumps(
        {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":sqs:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    f":{synth.stack.settings.prefix}-u-*",
                ],
            ]
        }
    )


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


FLEET_ONLY = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["FLEET"]}}
BINDINGS_ONLY = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["BIND#*"]}}


def test_the_worker_task_role_reaches_no_users_anything(synth: Synth) -> None:
    """Root inside a worker task holds its task role: it may ask the credentials route (as
    itself), say it is idle or alive, read or end its binding, protect its task and put
    metrics. No queue, bucket, record, connection, grant or role to assume."""
    _, task = only(synth, "AWS::ECS::TaskDefinition", "WorkersWorkerTask")
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    workers_table, _ = only(synth, "AWS::DynamoDB::Table", "WorkersTable")
    fleet_items = []
    invoked = []
    for statement in role_statements(synth, role_id):
        granted = actions(statement)
        rendered = json.dumps(resources(statement))
        assert not any(a.split(":")[0] in {"s3", "sqs", "sts"} for a in granted), statement
        assert "ManageConnections" not in rendered and "LiveConnections" not in rendered
        if workers_table in rendered:  # the fleet's items, by condition, and nothing else
            assert resources(statement) == [{"Fn::GetAtt": [workers_table, "Arn"]}]
            if statement["Condition"] == FLEET_ONLY:
                assert granted == {"dynamodb:GetItem", "dynamodb:UpdateItem"}, statement
            else:  # its binding: read it, or leave unbound (a put that never overwrites)
                assert statement["Condition"] == BINDINGS_ONLY
                assert granted == {"dynamodb:GetItem", "dynamodb:PutItem"}, statement
            fleet_items.append(statement["Condition"])
        elif granted == {"execute-api:Invoke"}:
            invoked.append(rendered)
        elif granted & {"ecs:UpdateTaskProtection"}:
            assert ":task/" in rendered
        elif granted == {"cloudwatch:PutMetricData"}:
            assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "berth"}}
        else:
            raise AssertionError(f"unexpected grant {granted} on {rendered}")
    (route,) = invoked  # one route, one method, one stage
    assert route.endswith('"/v1/POST/workers/credentials"]]}]')
    assert sorted(map(json.dumps, fleet_items)) == sorted(
        map(json.dumps, [FLEET_ONLY, BINDINGS_ONLY])
    )


def test_the_tenant_role_reaches_one_users_queue_and_one_commands_project(
    synth: Synth,
) -> None:
    role_id, role = only(synth, "AWS::IAM::Role", "WorkersTenantRole")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    vendor_role = only(synth, "AWS::IAM::Role", "WorkersCredentialsRole")[0]
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": [vendor_role, "Arn"]}}  # no task
    bucket_id, _ = only(synth, "AWS::S3::Bucket", "WorkersWorkspaces")
    table_id, _ = only(synth, "AWS::DynamoDB::Table", "WorkersTable")
    connections, _ = only(synth, "AWS::DynamoDB::Table", "LiveConnections")
    seen = set()
    for statement in role_statements(synth, role_id):
        granted = actions(statement)
        rendered = json.dumps(resources(statement))
        if granted & {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
            assert bucket_id in rendered
            prefix = re.search(r'"/(workspaces|logs)/\$\{aws:PrincipalTag/project\}/\*"', rendered)
            assert prefix, rendered
            seen.add(prefix.group(1))
            if prefix.group(1) == "logs":
                assert granted == {"s3:PutObject"}
        elif granted == {"s3:ListBucket"}:
            assert statement["Condition"] == {
                "StringLike": {"s3:prefix": ["workspaces/${aws:PrincipalTag/project}/*"]}
            }
        elif granted == {"dynamodb:GetItem", "dynamodb:UpdateItem"}:
            assert resources(statement) == [{"Fn::GetAtt": [table_id, "Arn"]}]
            assert statement["Condition"] == {
                "ForAllValues:StringEquals": {
                    "dynamodb:LeadingKeys": [
                        "CMD#${aws:PrincipalTag/command}",
                        "COUNT#${aws:PrincipalTag/user}",
                    ]
                }
            }
            seen.add("record")
        elif granted == {"dynamodb:Query"}:  # who listens to the project's terminals
            assert resources(statement) == [{"Fn::GetAtt": [connections, "Arn"]}]
            assert statement["Condition"] == {
                "ForAllValues:StringLike": {
                    "dynamodb:LeadingKeys": ["TOPIC#terminal:${aws:PrincipalTag/project}:*"]
                }
            }
            seen.add("subscribers")
        elif granted == {"execute-api:ManageConnections"}:
            assert "@connections" in rendered
            seen.add("frames")
        elif any(a.startswith("sqs:") for a in granted):
            assert granted == {
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            }
            assert rendered.endswith(
                f':{synth.stack.settings.prefix}-u-${{aws:PrincipalTag/tenant}}.fifo"]]}}]'
            ), rendered
            seen.add("queue")
        else:
            raise AssertionError(f"unexpected grant {granted} on {rendered}")
    assert seen == {"workspaces", "logs", "record", "subscribers", "frames", "queue"}


def test_only_the_credentials_route_assumes_the_tenant_role(synth: Synth) -> None:
    tenant_role, _ = only(synth, "AWS::IAM::Role", "WorkersTenantRole")
    assumers = [
        name
        for name, policy in synth.resources("AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if actions(statement) & {"sts:AssumeRole", "sts:TagSession"}
        and json.dumps(resources(statement)) == json.dumps([{"Fn::GetAtt": [tenant_role, "Arn"]}])
    ]
    assert len(assumers) == 1 and assumers[0].startswith("WorkersCredentialsRole")
    granted = [
        s for s in statements_of(synth, "WorkersCredentials") if any(
            a.startswith("dynamodb:") for a in actions(s)
        )
    ]  # fmt: skip
    (reads,) = granted
    assert actions(reads) == {"dynamodb:GetItem"}  # bindings and commands, read only
    assert reads["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["BIND#*", "CMD#*"]}
    }
    _, function = only(synth, "AWS::Lambda::Function", "WorkersCredentials")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["BERTH_TENANT_ROLE_ARN"] == {"Fn::GetAtt": [tenant_role, "Arn"]}
    _, task = only(synth, "AWS::ECS::TaskDefinition", "WorkersWorkerTask")
    task_role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    assert variables["BERTH_WORKER_ROLE_NAME"] == {"Ref": task_role}


def test_the_worker_runs_commands_as_the_images_unprivileged_user(synth: Synth) -> None:
    container = worker_container(synth)
    env = environment(container)
    assert env["BERTH_RUN_AS_UID"] == str(RUN_AS_UID)
    assert env["BERTH_RUN_AS_UIDS"] == str(RUN_AS_UIDS)  # a fresh uid per command
    assert container["LinuxParameters"]["InitProcessEnabled"] is True  # reaps leftovers
    assert env["BERTH_LEASE_SECONDS"] == "60"
    dockerfile = (ROOT / "containers/worker/Dockerfile").read_text()
    assert f"useradd --uid {RUN_AS_UID} " in dockerfile
    assert "USER root" in dockerfile  # to switch to that user; commands never run as root


def test_workers_wait_for_a_record_longer_than_the_commands_api_may_take(synth: Synth) -> None:
    """The API sends a command before it records it: a worker drops a message for want of a
    record only once the API call that sent it is surely over (past its function's timeout)."""
    (api,) = [
        f
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "workers.handler.handler"
    ]
    grace = int(environment(worker_container(synth))["BERTH_RECORD_GRACE_SECONDS"])
    assert grace >= api["Properties"]["Timeout"] + 10


def test_workspace_logs_and_old_versions_expire(synth: Synth) -> None:
    _, bucket = only(synth, "AWS::S3::Bucket", "WorkersWorkspaces")
    settings = synth.stack.settings
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-logs"]["Prefix"] == "logs/"
    assert rules["expire-logs"]["ExpirationInDays"] == settings.workers.log_expiry_days
    assert (
        rules["expire-old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"]
        == settings.storage.noncurrent_version_expiry_days
    )


def test_only_the_scaler_starts_workers(synth: Synth) -> None:
    task_id, _ = only(synth, "AWS::ECS::TaskDefinition", "WorkersWorkerTask")
    (run,) = [s for s in statements_of(synth, "WorkersScaler") if "ecs:RunTask" in actions(s)]
    assert resources(run) == [{"Ref": task_id}]
    for function in ("WorkersApi", "LiveHandler", "WorkersReconciler"):
        granted = set().union(*(actions(s) for s in statements_of(synth, function)))
        assert "ecs:RunTask" not in granted


def test_the_scaler_reads_the_pending_commands_and_writes_only_the_fleet_and_bindings(
    synth: Synth,
) -> None:
    table_id, _ = only(synth, "AWS::DynamoDB::Table", "WorkersTable")
    statements = [
        s
        for s in statements_of(synth, "WorkersScaler")
        if any(a.startswith("dynamodb:") for a in actions(s))
    ]
    by_actions = {tuple(sorted(actions(s))): s for s in statements}
    assert sorted(by_actions) == [
        ("dynamodb:GetItem", "dynamodb:UpdateItem"),
        ("dynamodb:PutItem",),
        ("dynamodb:Query",),
    ]
    fleet = by_actions[("dynamodb:GetItem", "dynamodb:UpdateItem")]
    assert fleet["Condition"] == FLEET_ONLY
    assert by_actions[("dynamodb:PutItem",)]["Condition"] == BINDINGS_ONLY
    for statement in (fleet, by_actions[("dynamodb:PutItem",)]):
        assert resources(statement) == [{"Fn::GetAtt": [table_id, "Arn"]}]
    assert json.dumps(resources(by_actions[("dynamodb:Query",)])) == json.dumps(
        [{"Fn::Join": ["", [{"Fn::GetAtt": [table_id, "Arn"]}, "/index/active"]]}]
    )


def test_scaler_and_reconciler_run_on_schedules_and_the_scaler_alone(synth: Synth) -> None:
    scaler_id, scaler = only(synth, "AWS::Lambda::Function", "WorkersScaler")
    reconciler_id, _ = only(synth, "AWS::Lambda::Function", "WorkersReconciler")
    assert scaler["Properties"]["ReservedConcurrentExecutions"] == 1
    for function_id in (scaler_id, reconciler_id):
        synth.template.has_resource_properties(
            "AWS::Events::Rule",
            {
                "ScheduleExpression": "rate(1 minute)",
                "Targets": [
                    {
                        "Arn": {"Fn::GetAtt": [function_id, "Arn"]},
                        "Id": "Target0",
                        "RetryPolicy": {"MaximumRetryAttempts": 0},
                    }
                ],
            },
        )


def test_the_reconciler_drains_the_dead_letter_queue(synth: Synth) -> None:
    dlq_id, _ = only(synth, "AWS::SQS::Queue", "WorkersDeadLetters")
    consume = [
        s for s in statements_of(synth, "WorkersReconciler") if "sqs:DeleteMessage" in actions(s)
    ]
    assert [resources(s) for s in consume] == [[{"Fn::GetAtt": [dlq_id, "Arn"]}]]


def test_the_dashboard_shows_queue_fleet_durations_and_losses(synth: Synth) -> None:
    _, dashboard = only(synth, "AWS::CloudWatch::Dashboard", "WorkersDashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        "ApproximateNumberOfMessagesVisible",
        "RunningWorkers",
        "BoundWorkers",
        "BoundFromReserve",
        "ActiveProjects",
        "CommandDuration",
        "CommandFailures",
        "LostCommands",
        "UndeliverableCommands",
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


def test_the_worker_image_holds_every_module_the_worker_imports(tmp_path: Path) -> None:
    """The Dockerfile copies the functions modules the worker needs one by one: a module
    the worker starts importing must be copied too, or every worker task exits at once."""
    app = assemble(ROOT, ROOT / "containers/worker/Dockerfile", None, tmp_path / "image")
    imported = subprocess.run(
        [sys.executable, "-c", "import berth_worker.__main__"],
        cwd=app,
        env={**os.environ, "PYTHONPATH": str(app)},  # the image's files only, not the repo's
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr


def test_the_commands_api_makes_and_sends_to_users_queues_which_workers_poll(
    synth: Synth,
) -> None:
    prefix = f"{synth.stack.settings.prefix}-u-"
    env = environment(worker_container(synth))
    assert env["BERTH_USER_QUEUE_PREFIX"] == prefix
    assert env["BERTH_KEEP_WARM_SECONDS"] == str(synth.stack.settings.workers.keep_warm_seconds)
    _, function = only(synth, "AWS::Lambda::Function", "WorkersApi")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["BERTH_USER_QUEUE_PREFIX"] == prefix
    dlq_id, _ = only(synth, "AWS::SQS::Queue", "WorkersDeadLetters")
    assert variables["BERTH_DEAD_LETTER_QUEUE_ARN"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    (queueing,) = [s for s in role_statements(synth, role_id) if "sqs:SendMessage" in actions(s)]
    assert actions(queueing) == {
        "sqs:CreateQueue",
        "sqs:GetQueueUrl",
        "sqs:SetQueueAttributes",
        "sqs:TagQueue",
        "sqs:SendMessage",
    }
    assert [json.dumps(r) for r in resources(queueing)] == [user_queues(synth)]
