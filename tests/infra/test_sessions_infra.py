"""Facts about the sessions capability's infrastructure, asserted explicitly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from tests.synth import Synth, deployment_context, synthesize


def statements_of(synth: Synth, function_prefix: str) -> list[dict[str, Any]]:
    (function,) = [
        f
        for key, f in synth.resources("AWS::Lambda::Function").items()
        if key.startswith(function_prefix)
    ]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements: list[dict[str, Any]] = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def logical_ids(synth: Synth, type_name: str, prefix: str) -> list[str]:
    return sorted(k for k in synth.resources(type_name) if k.startswith(prefix))


def test_session_table_is_encrypted_with_pitr_ttl_and_user_index(synth: Synth) -> None:
    (table_id,) = logical_ids(synth, "AWS::DynamoDB::Table", "SessionsTable")
    table = synth.data["Resources"][table_id]
    props = table["Properties"]
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": "expires_record_at",
        "Enabled": True,
    }
    indexes = {i["IndexName"]: i["KeySchema"] for i in props["GlobalSecondaryIndexes"]}
    assert indexes["by_user_created"] == [
        {"AttributeName": "user", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert table["DeletionPolicy"] == "Retain"


def session_task_definitions(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        key: d
        for key, d in synth.resources("AWS::ECS::TaskDefinition").items()
        if key.startswith("Sessions")
    }


def test_one_fargate_task_definition_per_profile_with_empty_task_role(synth: Synth) -> None:
    definitions = session_task_definitions(synth)
    families = sorted(d["Properties"]["Family"] for d in definitions.values())
    assert families == ["berth-session-chroma", "berth-session-default"]
    for definition in definitions.values():
        props = definition["Properties"]
        assert props["RequiresCompatibilities"] == ["FARGATE"]
        assert props["NetworkMode"] == "awsvpc"
        assert props["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
        (container,) = props["ContainerDefinitions"]
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        task_role_id = props["TaskRoleArn"]["Fn::GetAtt"][0]
        task_role = synth.data["Resources"][task_role_id]
        assert "ManagedPolicyArns" not in task_role["Properties"]
        granted = [
            action
            for p in synth.resources("AWS::IAM::Policy").values()
            if {"Ref": task_role_id} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            for action in actions(s)
        ]
        # nothing — but a profile that keeps storage mounts its user's volume (tested below)
        assert set(granted) <= {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
        keeps = synth.stack.settings.sessions.profiles[
            props["Family"].removeprefix("berth-session-")
        ].storage
        assert bool(granted) == (keeps is not None)


def test_profile_sizes_and_ports_come_from_settings(synth: Synth) -> None:
    profiles = synth.stack.settings.sessions.profiles
    for definition in session_task_definitions(synth).values():
        props = definition["Properties"]
        profile = profiles[props["Family"].removeprefix("berth-session-")]
        assert props["Cpu"] == str(profile.cpu)
        assert props["Memory"] == str(profile.memory)
        (container,) = props["ContainerDefinitions"]
        assert container["PortMappings"] == [{"ContainerPort": profile.port, "Protocol": "tcp"}]


def test_run_task_is_limited_to_the_profiles_task_definitions_in_berths_cluster(
    synth: Synth,
) -> None:
    definitions = logical_ids(synth, "AWS::ECS::TaskDefinition", "Sessions")
    (run,) = [s for s in statements_of(synth, "SessionsApi") if "ecs:RunTask" in actions(s)]
    assert actions(run) == {"ecs:RunTask"}
    profiles = [r for r in resources(run) if "Ref" in r]
    users = [r for r in resources(run) if "Ref" not in r]
    assert sorted(r["Ref"] for r in profiles) == definitions
    # and users' revisions of berth's session families (profiles that keep storage)
    (family,) = users
    assert json.dumps(family).endswith(':task-definition/berth-session-*"]]}')
    (cluster_id,) = logical_ids(synth, "AWS::ECS::Cluster", "Compute")
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster_id, "Arn"]}}}


def test_pass_role_is_limited_to_the_task_and_execution_roles(synth: Synth) -> None:
    (passing,) = [s for s in statements_of(synth, "SessionsApi") if "iam:PassRole" in actions(s)]
    expected = set()
    for definition in session_task_definitions(synth).values():
        props = definition["Properties"]
        expected.add(props["TaskRoleArn"]["Fn::GetAtt"][0])
        expected.add(props["ExecutionRoleArn"]["Fn::GetAtt"][0])
    assert {r["Fn::GetAtt"][0] for r in resources(passing)} == expected
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_the_warm_pool_index_is_sparse_on_the_pooled_profile(synth: Synth) -> None:
    (table_id,) = logical_ids(synth, "AWS::DynamoDB::Table", "SessionsTable")
    props = synth.data["Resources"][table_id]["Properties"]
    indexes = {i["IndexName"]: i["KeySchema"] for i in props["GlobalSecondaryIndexes"]}
    assert indexes["warm_pool"] == [
        {"AttributeName": "pooled", "KeyType": "HASH"},
        {"AttributeName": "warm_since", "KeyType": "RANGE"},
    ]


def test_with_a_warm_pool_the_reaper_may_start_the_profiles_tasks_and_nothing_more(
    tmp_path: Path,
) -> None:
    pooled = synthesize(
        deployment_context(**{"sessions.profiles.default.warm_pool": 2}), tmp_path / "cdk.out"
    )
    (run,) = [s for s in statements_of(pooled, "SessionsReaper") if "ecs:RunTask" in actions(s)]
    definitions = logical_ids(pooled, "AWS::ECS::TaskDefinition", "Sessions")
    assert sorted(r["Ref"] for r in resources(run)) == definitions
    (cluster_id,) = logical_ids(pooled, "AWS::ECS::Cluster", "Compute")
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": [cluster_id, "Arn"]}}}
    (passing,) = [
        s for s in statements_of(pooled, "SessionsReaper") if "iam:PassRole" in actions(s)
    ]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    (reaper,) = [
        f
        for key, f in pooled.resources("AWS::Lambda::Function").items()
        if key.startswith("SessionsReaper")
    ]
    rendered = reaper["Properties"]["Environment"]["Variables"]["BERTH_PROFILES"]
    _, parts = rendered["Fn::Join"]  # the JSON, with the task definitions' ARNs as references
    profiles = json.loads("".join(p if isinstance(p, str) else "arn" for p in parts))
    assert (profiles["default"]["warm_pool"], profiles["chroma"]["warm_pool"]) == (2, 0)


def test_without_a_warm_pool_only_the_api_function_may_start_tasks(synth: Synth) -> None:
    for function in ("SessionsTaskEvents", "SessionsReaper", "LiveHandler", "ApiHealth"):
        granted = set().union(*(actions(s) for s in statements_of(synth, function)))
        assert "ecs:RunTask" not in granted, function
        assert "iam:PassRole" not in granted, function


def test_the_reaper_searches_only_the_session_log_groups_for_activity_lines(
    synth: Synth,
) -> None:
    (searching,) = [
        s for s in statements_of(synth, "SessionsReaper") if "logs:FilterLogEvents" in actions(s)
    ]
    groups = logical_ids(synth, "AWS::Logs::LogGroup", "SessionsLogs")
    assert groups and sorted(r["Fn::GetAtt"][0] for r in resources(searching)) == sorted(
        groups
    )  # every profile's (each has the default marker), nothing else
    for function in ("SessionsApi", "SessionsTaskEvents"):
        granted = set().union(*(actions(s) for s in statements_of(synth, function)))
        assert "logs:FilterLogEvents" not in granted, function


def test_stop_and_describe_are_scoped_to_tasks_of_berths_cluster(synth: Synth) -> None:
    for function in ("SessionsApi", "SessionsTaskEvents", "SessionsReaper"):
        (control,) = [s for s in statements_of(synth, function) if "ecs:StopTask" in actions(s)]
        rendered = json.dumps(resources(control))
        assert ":task/" in rendered
        assert "Compute" in rendered  # the cluster's name, not a wildcard cluster


def test_task_state_rule_is_filtered_to_berths_cluster_and_has_a_dlq(synth: Synth) -> None:
    (cluster_id,) = logical_ids(synth, "AWS::ECS::Cluster", "Compute")
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.ecs"],
                "detail-type": ["ECS Task State Change"],
                "detail": {"clusterArn": [{"Fn::GetAtt": [cluster_id, "Arn"]}]},
            },
            "Targets": [
                Match.object_like(
                    {
                        "DeadLetterConfig": Match.any_value(),
                        "RetryPolicy": {
                            "MaximumRetryAttempts": 4,
                            "MaximumEventAgeInSeconds": 7200,
                        },
                    }
                )
            ],
        },
    )


def test_reaper_runs_on_the_configured_schedule(synth: Synth) -> None:
    minutes = synth.stack.settings.sessions.reaper_interval_minutes
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {"ScheduleExpression": f"rate({minutes} minute{'s' if minutes > 1 else ''})"},
    )


def test_websocket_connect_requires_a_ticket(synth: Synth) -> None:
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synth.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    (authorizer,) = synth.resources("AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.querystring.ticket"]
    assert "LiveAuthorizer" in json.dumps(authorizer["Properties"]["AuthorizerUri"])


def test_tickets_are_minted_and_redeemed_with_nothing_else_of_the_table(synth: Synth) -> None:
    """The authorizer may only delete tickets; POST /live/tickets may only put them; the
    workers API may put grants and tickets — none reads a connection or another's items."""
    expected = {
        "LiveAuthorizer": ({"dynamodb:DeleteItem"}, ["TICKET#*"]),
        "LiveTickets": ({"dynamodb:PutItem"}, ["TICKET#*"]),
        "WorkersApi": ({"dynamodb:PutItem"}, ["GRANT#*", "TICKET#*"]),
    }
    table = [k for k in synth.resources("AWS::DynamoDB::Table") if k.startswith("LiveConnections")]
    for prefix, (allowed, keys) in expected.items():
        statements = [
            statement
            for statement in statements_of(synth, prefix)
            if table[0] in json.dumps(statement["Resource"])
        ]
        assert len(statements) == 1, (prefix, statements)
        (statement,) = statements
        assert actions(statement) == allowed, prefix
        leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert (leading if isinstance(leading, list) else [leading]) == keys, prefix


def test_sessions_functions_get_the_environment_their_handlers_read(synth: Synth) -> None:
    from sessions.config import SessionsConfig
    from shared.config import env_name

    required = {
        env_name(name) for name, field in SessionsConfig.model_fields.items() if field.is_required()
    }
    for prefix in ("SessionsApi", "SessionsTaskEvents", "SessionsReaper"):
        (function,) = [
            f
            for key, f in synth.resources("AWS::Lambda::Function").items()
            if key.startswith(prefix)
        ]
        assert required <= set(function["Properties"]["Environment"]["Variables"]), prefix


# --- storage (sessions that keep their data) ------------------------------------------------


def storage_file_system(synth: Synth) -> dict[str, Any]:
    (file_system,) = synth.resources("AWS::EFS::FileSystem").values()
    return dict(file_system)


def file_system_arn(logical_id: str) -> dict[str, Any]:
    """The file system's ARN as berth builds it from its id."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":elasticfilesystem:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":file-system/",
                {"Ref": logical_id},
            ],
        ]
    }


def test_the_volumes_file_system_is_encrypted_tls_only_and_kept(synth: Synth) -> None:
    file_system = storage_file_system(synth)
    props = file_system["Properties"]
    assert props["Encrypted"] is True
    assert file_system["DeletionPolicy"] == "Retain"  # sessions.storage_removal_policy
    assert {"TransitionToIA": "AFTER_30_DAYS"} in props["LifecyclePolicies"]
    statements = {s["Sid"]: s for s in props["FileSystemPolicy"]["Statement"]}
    assert all(s["Effect"] == "Deny" for s in statements.values())  # it allows nothing
    assert statements["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["ThroughAnAccessPointOnly"]["Condition"] == {
        "Null": {"elasticfilesystem:AccessPointArn": "true"}
    }
    assert statements["NoRootAccess"]["Action"] == "elasticfilesystem:ClientRootAccess"


def test_nfs_reaches_the_file_system_from_session_tasks_only(synth: Synth) -> None:
    (group_id,) = logical_ids(synth, "AWS::EC2::SecurityGroup", "SessionsStorageSecurityGroup")
    ingress = [
        r["Properties"]
        for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    inline = synth.data["Resources"][group_id]["Properties"].get("SecurityGroupIngress", [])
    rules = ingress + inline
    (task_group,) = logical_ids(synth, "AWS::EC2::SecurityGroup", "SessionsTaskSecurityGroup")
    assert rules and all(
        (r["FromPort"], r["ToPort"], r["IpProtocol"]) == (2049, 2049, "tcp") for r in rules
    )
    assert all(
        r.get("SourceSecurityGroupId") == {"Fn::GetAtt": [task_group, "GroupId"]} for r in rules
    )
    targets = synth.resources("AWS::EFS::MountTarget").values()
    assert targets and all(
        t["Properties"]["SecurityGroups"] == [{"Fn::GetAtt": [group_id, "GroupId"]}]
        for t in targets
    )


def test_only_profiles_with_storage_may_mount_and_only_through_a_mount_target(
    synth: Synth,
) -> None:
    def mounts(role_prefix: str) -> list[dict[str, Any]]:
        (role_id,) = logical_ids(synth, "AWS::IAM::Role", role_prefix)
        return [
            s
            for p in synth.resources("AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
            if any(a.startswith("elasticfilesystem:") for a in actions(s))
        ]

    (mount,) = mounts("SessionsTaskRolechroma")
    assert actions(mount) == {"elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
    (file_system_id,) = logical_ids(synth, "AWS::EFS::FileSystem", "SessionsStorage")
    assert resources(mount) == [file_system_arn(file_system_id)]
    assert mount["Condition"] == {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}
    assert mounts("SessionsTaskRoledefault") == []  # no storage, no mount


def test_the_api_makes_volumes_on_berths_file_system_and_revisions_of_berths_families(
    synth: Synth,
) -> None:
    statements = statements_of(synth, "SessionsApi")
    by_action = {a: s for s in statements for a in actions(s)}
    (file_system_id,) = logical_ids(synth, "AWS::EFS::FileSystem", "SessionsStorage")
    assert resources(by_action["elasticfilesystem:CreateAccessPoint"]) == [
        file_system_arn(file_system_id)
    ]
    delete = by_action["elasticfilesystem:DeleteAccessPoint"]
    assert delete["Condition"] == {
        "StringEquals": {"aws:ResourceTag/berth:file-system": {"Ref": file_system_id}}
    }
    register = by_action["ecs:RegisterTaskDefinition"]
    assert register["Condition"] == {"StringEquals": {"aws:RequestTag/berth:profile": ["chroma"]}}
    rendered = json.dumps(resources(by_action["ecs:DeregisterTaskDefinition"]))
    assert ":task-definition/berth-session-*" in rendered
    run = [s for s in statements if "ecs:RunTask" in actions(s)]
    assert all("ecs:cluster" in json.dumps(s["Condition"]) for s in run)
    passed = by_action["iam:PassRole"]
    assert passed["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert all("Fn::GetAtt" in r for r in resources(passed))  # berth's own roles, by name


def test_a_profile_with_storage_cannot_keep_a_warm_pool() -> None:
    """A warm task starts before it has a user, and ECS mounts volumes only at start: a
    profile that keeps storage is never pooled (a claim could not mount the user's volume)."""
    import pytest
    from pydantic import ValidationError

    from infra.settings import ProfileSettings, SessionsSettings, VolumeSettings

    with pytest.raises(ValidationError, match="cannot keep a warm pool"):
        ProfileSettings(image="echo", warm_pool=1, storage=VolumeSettings(path="/data"))
    with pytest.raises(ValidationError, match="storage_ia_days must be one of"):
        SessionsSettings(storage_ia_days=3)
