"""The job chooser's facts: both branches, every task caught, retries, scoped IAM, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.app import build_app
from infra.settings import Settings, SettingsError
from tests.infra.test_sessions_infra import actions, resources, statements_of
from tests.synth import Synth, deployment_context

TASK_STATES = ("Run on Lambda", "Run on Fargate", "Write failure ZIP")


def job_chooser(synth: Synth) -> dict[str, Any]:
    (machine,) = [
        m
        for key, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if key.startswith("Jobs")
    ]
    return machine


def definition(synth: Synth) -> dict[str, Any]:
    """The state machine's ASL with CloudFormation references replaced by their logical ids."""
    machine = job_chooser(synth)
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    text = "".join(
        part
        if isinstance(part, str)
        else f"<{part['Fn::GetAtt'][0]}>"
        if "Fn::GetAtt" in part
        else f"<{part['Ref']}>"
        for part in parts
    )
    return dict(json.loads(text))


def reachable(states: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo += [c["Next"] for c in state.get("Choices", [])]
        todo += [c["Next"] for c in state.get("Catch", [])]
        todo += [state[k] for k in ("Next", "Default") if k in state]
    return seen


def test_first_state_validates_then_a_choice_picks_lambda_or_fargate(synth: Synth) -> None:
    asl = definition(synth)
    states = asl["States"]
    assert asl["StartAt"] == "Valid input?"
    assert states["Valid input?"]["Type"] == "Choice"
    branches = {c["StringEquals"]: c["Next"] for c in states["Choose runtime"]["Choices"]}
    assert branches == {"lambda": "Run on Lambda", "fargate": "Run on Fargate"}
    assert states["Run on Lambda"]["Resource"].endswith(":states:::lambda:invoke")
    assert states["Run on Fargate"]["Resource"].endswith(":states:::ecs:runTask.sync")


def test_runtime_comes_from_the_catalogue_not_the_caller(synth: Synth) -> None:
    states = definition(synth)["States"]
    catalogue = synth.stack.settings.jobs.catalogue
    for name, job in catalogue.items():
        params = states[f"Job {name}"]["Parameters"]
        assert params["runtime"] == job.runtime
        assert params["timeout_seconds"] == job.timeout_seconds
        assert "runtime.$" not in params


def test_a_job_name_not_in_the_catalogue_can_never_reach_a_runtime(synth: Synth) -> None:
    states = definition(synth)["States"]
    known = states["Known job?"]
    assert known["Default"] == "Unknown job"
    assert {c["StringEquals"] for c in known["Choices"]} == set(synth.stack.settings.jobs.catalogue)
    for dead_end in ("Unknown job", "Invalid input"):
        assert not ({"Run on Lambda", "Run on Fargate"} & reachable(states, dead_end))
        assert "Write failure ZIP" in reachable(states, dead_end)


def test_every_task_state_catches_into_the_failure_writer(synth: Synth) -> None:
    states = definition(synth)["States"]
    for name in ("Run on Lambda", "Run on Fargate"):
        (catch,) = states[name]["Catch"]
        assert catch == {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.error",
            "Next": "Write failure ZIP",
        }
    assert states["Write failure ZIP"]["Next"] == "Result stored after all?"
    after = states["Result stored after all?"]
    # a runner whose answer was lost after it stored the result (a Lambda timed out after
    # its side effect): the writer finds the result, and the job succeeded
    assert after["Choices"] == [
        {"Variable": "$.failure.written.result_key", "IsPresent": True, "Next": "Job succeeded"}
    ]
    assert after["Default"] == "Job failed"
    assert states["Job failed"]["Type"] == "Fail"
    # a Fargate task that exits non-zero is a failure too
    check = states["Exit code 0?"]
    assert check["Default"] == "Non-zero exit"
    assert states["Non-zero exit"]["Next"] == "Write failure ZIP"


def test_transient_errors_are_retried_with_backoff(synth: Synth) -> None:
    states = definition(synth)["States"]
    for name, error in (
        ("Run on Lambda", "Lambda.TooManyRequestsException"),
        ("Run on Lambda", "AwsUnavailable"),  # the job ran; storing its result failed
        ("Run on Fargate", "ECS.ThrottlingException"),
    ):
        (retry,) = [r for r in states[name]["Retry"] if error in r["ErrorEquals"]]
        assert retry["BackoffRate"] == 2
        assert retry["MaxAttempts"] >= 3
        assert "States.ALL" not in retry["ErrorEquals"]


def test_steps_raise_aws_trouble_under_the_one_name_the_state_machines_retry() -> None:
    from berth_jobs.runner import AwsUnavailable as JobsUnavailable
    from infra.workflow import AWS_UNAVAILABLE, PASSING_TROUBLE
    from shared.errors import AwsUnavailable

    assert AwsUnavailable.__name__ == JobsUnavailable.__name__ == AWS_UNAVAILABLE
    assert AWS_UNAVAILABLE in PASSING_TROUBLE


def test_the_failure_writer_retries_anything_so_a_failed_job_always_leaves_its_zip(
    synth: Synth,
) -> None:
    """Found by the chaos run (all=0.3, seed 2): one throttled invoke of the failure writer
    (Lambda.TooManyRequestsException) ended an execution with no ZIP at all."""
    retries = definition(synth)["States"]["Write failure ZIP"]["Retry"]
    assert retries[-1]["ErrorEquals"] == ["States.ALL"]  # last, as Step Functions requires
    assert retries[-1]["MaxAttempts"] >= 5 and retries[-1]["BackoffRate"] == 2
    assert "Catch" not in definition(synth)["States"]["Write failure ZIP"]


def test_each_jobs_timeout_bounds_its_task(synth: Synth) -> None:
    states = definition(synth)["States"]
    for name in ("Run on Lambda", "Run on Fargate"):
        assert states[name]["TimeoutSecondsPath"] == "$.timeout_seconds"


def test_state_machine_logs_and_traces(synth: Synth) -> None:
    props = job_chooser(synth)["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] in {"ERROR", "ALL"}


def test_state_machine_role_is_scoped_to_what_it_runs(synth: Synth) -> None:
    (machine_id,) = [
        k for k in synth.resources("AWS::StepFunctions::StateMachine") if k.startswith("Jobs")
    ]
    role_id = synth.data["Resources"][machine_id]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    (policy,) = [
        p
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {a: s for s in statements for a in actions(s)}

    invoke = by_action["lambda:InvokeFunction"]
    assert sorted(r["Fn::GetAtt"][0] for r in resources(invoke)) == sorted(
        k
        for k in synth.resources("AWS::Lambda::Function")
        if k.startswith(("JobsJobFunction", "JobsFailureWriter"))
    )
    (task_def,) = [
        k for k in synth.resources("AWS::ECS::TaskDefinition") if k.startswith("JobsJobTask")
    ]
    assert resources(by_action["ecs:RunTask"]) == [{"Ref": task_def}]
    (cluster,) = [k for k in synth.resources("AWS::ECS::Cluster")]
    assert by_action["ecs:RunTask"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster, "Arn"]}}
    }
    assert by_action["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    passed = {r["Fn::GetAtt"][0] for r in resources(by_action["iam:PassRole"])}
    props = synth.data["Resources"][task_def]["Properties"]
    assert passed == {
        props["TaskRoleArn"]["Fn::GetAtt"][0],
        props["ExecutionRoleArn"]["Fn::GetAtt"][0],
    }
    rule = json.dumps(resources(by_action["events:PutRule"]))
    assert "rule/StepFunctionsGetEventsForECSTaskRule" in rule
    # Describe/StopTask only on berth's cluster's tasks; only AWS-required actions on "*"
    assert ":task/" in json.dumps(resources(by_action["ecs:StopTask"]))
    wildcard = {a for s in statements if resources(s) == ["*"] for a in actions(s)}
    assert wildcard <= {
        "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
        "logs:PutResourcePolicy", "logs:UpdateLogDelivery", "xray:GetSamplingRules",
        "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments",
    }  # fmt: skip


def test_runners_may_only_put_their_zips(synth: Synth) -> None:
    for prefix in ("JobsJobFunction", "JobsFailureWriter"):
        s3_actions = {
            a for s in statements_of(synth, prefix) for a in actions(s) if a.startswith("s3:")
        }
        assert s3_actions <= {"s3:PutObject", "s3:GetObject"}
    api = {a for s in statements_of(synth, "JobsApi") for a in actions(s) if a.startswith("s3:")}
    assert api == {"s3:GetObject"}


def test_state_machine_arn_is_a_stack_output(synth: Synth) -> None:
    assert "JobsStateMachineArn" in synth.data["Outputs"]


def test_definition_renders_deterministically(synth: Synth, tmp_path: Path) -> None:
    app, _ = build_app(deployment_context(), outdir=str(tmp_path))
    app.synth()
    again = json.loads((tmp_path / "berth.template.json").read_text())
    first = job_chooser(synth)
    (second,) = [
        r
        for k, r in again["Resources"].items()
        if r["Type"] == "AWS::StepFunctions::StateMachine" and k.startswith("Jobs")
    ]
    assert first["Properties"]["DefinitionString"] == second["Properties"]["DefinitionString"]


def test_a_lambda_job_over_15_minutes_fails_synth() -> None:
    context = deployment_context(**{"jobs.catalogue.checksum.timeout_seconds": "901"})
    with pytest.raises(SettingsError, match="over Lambda's 15-minute cap"):
        Settings.from_context(context)
