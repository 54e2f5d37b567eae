"""Usage infrastructure facts: tags for the bill on every task definition and machine, the
admin routes walled to the named principals, metering functions that can only add to the
ledger, and the events each capability meters from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.test_sessions_infra import actions, resources, statements_of
from tests.synth import Synth, deployment_context, synthesize

ADMIN_ROLE = "arn:aws:iam::123456789012:role/berth-ops"
ADMIN_SESSION = "arn:aws:sts::123456789012:assumed-role/berth-admins/dana"
METERING = [
    "SessionsApi", "SessionsTaskEvents", "SessionsReaper", "JobsApi", "JobsExecutionEnds",
    "InstancesApi", "InstancesStateChanges", "WorkersApi", "WorkersStoppedWorkers",
    "WorkersReconciler",
]  # fmt: skip


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """A deployment that names admins and a default budget."""
    context = deployment_context(
        **{"usage.admins": [ADMIN_ROLE, ADMIN_SESSION], "limits.monthly_budget_usd": 25}
    )
    return synthesize(context, Path(tmp_path_factory.mktemp("governed")))


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}


def test_every_task_definition_says_which_capability_it_serves(synth: Synth) -> None:
    definitions = synth.resources("AWS::ECS::TaskDefinition")
    by_capability = {key: tags_of(d).get("berth:capability") for key, d in definitions.items()}
    assert all(by_capability.values()), by_capability
    for prefix, capability in (("SessionsTask", "sessions"), ("WorkersWorker", "workers"),
                               ("JobsJobTask", "jobs")):  # fmt: skip
        found = {v for k, v in by_capability.items() if k.startswith(prefix)}
        assert found == {capability}, (prefix, found)


def test_job_tasks_carry_their_definitions_tags(synth: Synth) -> None:
    (machine,) = [
        m
        for key, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if key.startswith("JobsStateMachine")
    ]
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    assert '\\"PropagateTags\\":\\"TASK_DEFINITION\\"' in definition


def test_machines_and_their_volumes_are_tagged_by_the_launch_template(synth: Synth) -> None:
    (template,) = synth.resources("AWS::EC2::LaunchTemplate").values()
    specifications = {
        spec["ResourceType"]: {t["Key"]: t["Value"] for t in spec["Tags"]}
        for spec in template["Properties"]["LaunchTemplateData"]["TagSpecifications"]
    }
    for kind in ("instance", "volume"):
        assert specifications[kind]["berth:capability"] == "instances", specifications


def api_policy(synth: Synth) -> list[dict[str, Any]]:
    (api,) = synth.resources("AWS::ApiGateway::RestApi").values()
    return list(api["Properties"]["Policy"]["Statement"])


def test_without_admins_the_admin_routes_are_denied_to_everyone(synth: Synth) -> None:
    (deny,) = api_policy(synth)
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == (
        "Deny", {"AWS": "*"}, "execute-api:Invoke"
    )  # fmt: skip
    assert deny["Resource"] == "execute-api:/*/*/admin/*"
    assert "Condition" not in deny  # nobody is excepted


def test_only_the_named_principals_pass_the_admin_wall(governed: Synth) -> None:
    (deny,) = api_policy(governed)
    assert deny["Effect"] == "Deny" and deny["Resource"] == "execute-api:/*/*/admin/*"
    # a session ARN is walled by its role (the function checks the session itself)
    assert deny["Condition"] == {
        "ArnNotLike": {
            "aws:PrincipalArn": [
                "arn:aws:iam::123456789012:role/berth-admins", ADMIN_ROLE,
            ]
        }
    }  # fmt: skip
    (function,) = [
        f for key, f in governed.resources("AWS::Lambda::Function").items()
        if key.startswith("UsageApi")
    ]  # fmt: skip
    environment = function["Properties"]["Environment"]["Variables"]
    assert environment["BERTH_ADMINS"] == f"{ADMIN_ROLE},{ADMIN_SESSION}"
    assert environment["BERTH_MONTHLY_BUDGET_USD"] == "25.0"


def test_the_admin_policy_invokes_the_admin_routes_and_nothing_else(synth: Synth) -> None:
    (policy,) = synth.resources("AWS::IAM::ManagedPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    rendered = json.dumps(statement["Resource"])
    assert rendered.endswith('"/v1/*/admin/*"]]}') and "RestApi" in rendered


def test_metering_functions_only_add_to_the_ledger_and_read_it_by_key(synth: Synth) -> None:
    (table_id,) = [k for k in synth.resources("AWS::DynamoDB::Table") if k.startswith("Usage")]
    for function in METERING:
        on_ledger = [
            s for s in statements_of(synth, function) if table_id in json.dumps(resources(s))
        ]
        assert len(on_ledger) == 1, function
        assert actions(on_ledger[0]) == {
            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"
        }  # fmt: skip
        assert resources(on_ledger[0]) == [{"Fn::GetAtt": [table_id, "Arn"]}]
    # only the usage API reads ranges (Query) and clears budgets (DeleteItem)
    readers = [s for s in statements_of(synth, "UsageApi") if table_id in json.dumps(resources(s))]
    assert {a for s in readers for a in actions(s)} == {
        "dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"
    }  # fmt: skip


def test_each_capability_meters_from_its_own_events(synth: Synth) -> None:
    rules = {
        key: json.loads(json.dumps(rule["Properties"]["EventPattern"]))
        for key, rule in synth.resources("AWS::Events::Rule").items()
        if "EventPattern" in rule["Properties"]
    }
    by_type = {tuple(p["detail-type"]): (k, p) for k, p in rules.items()}
    _, ended = by_type[("Step Functions Execution Status Change",)]
    assert set(ended["detail"]["status"]) == {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
    assert "stateMachineArn" in ended["detail"]
    _, machines = by_type[("EC2 Instance State-change Notification",)]
    assert set(machines["detail"]["state"]) == {
        "shutting-down",
        "terminated",
        "stopping",
        "stopped",
    }
    workers = [p for p in rules.values() if p["detail"].get("startedBy") == ["berth-workers"]]
    (stopped,) = workers
    assert stopped["detail"]["lastStatus"] == ["STOPPED"]
