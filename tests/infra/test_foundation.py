"""Facts about the shared core that users and operators rely on, asserted one by one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from infra.functions import POWERTOOLS_ACCOUNT
from tests.synth import Synth, mask_asset_hashes


def _by_output(synth: Synth, output: str) -> tuple[str, dict[str, Any]]:
    logical_id = synth.data["Outputs"][output]["Value"]["Ref"]
    return logical_id, synth.data["Resources"][logical_id]


# --- network -------------------------------------------------------------------------------


def test_default_deployment_has_no_nat_gateway_load_balancer_or_always_on_service(
    synth: Synth,
) -> None:
    synth.template.resource_count_is("AWS::EC2::NatGateway", 0)
    synth.template.resource_count_is("AWS::ElasticLoadBalancingV2::LoadBalancer", 0)
    synth.template.resource_count_is("AWS::ElasticLoadBalancing::LoadBalancer", 0)
    synth.template.resource_count_is("AWS::ECS::Service", 0)


def test_created_vpc_spans_two_azs_with_public_and_isolated_subnets(synth: Synth) -> None:
    subnets = synth.resources("AWS::EC2::Subnet")
    kinds = sorted(
        tag["Value"]
        for subnet in subnets.values()
        for tag in subnet["Properties"]["Tags"]
        if tag["Key"] == "aws-cdk:subnet-type"
    )
    assert kinds == ["Isolated", "Isolated", "Public", "Public"]


def test_vpc_has_s3_gateway_endpoint_and_flow_logs(synth: Synth) -> None:
    synth.template.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "ServiceName": Match.object_like({"Fn::Join": ["", Match.array_with([".s3"])]}),
        },
    )
    synth.template.has_resource_properties(
        "AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL"}
    )
    # no interface endpoints (billed hourly) unless asked for
    interface = [
        e
        for e in synth.resources("AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert interface == []


# --- storage -------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["ResultsBucketName", "FailuresBucketName"])
def test_result_buckets_are_encrypted_private_versioned_logged_and_expire(
    synth: Synth, output: str
) -> None:
    _, bucket = _by_output(synth, output)
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == synth.stack.settings.storage.object_expiry_days
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert bucket["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("output", ["ResultsBucketName", "FailuresBucketName"])
def test_result_buckets_deny_requests_without_tls(synth: Synth, output: str) -> None:
    logical_id, _ = _by_output(synth, output)
    (policy,) = [
        p
        for p in synth.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": logical_id}
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        and s["Principal"] == {"AWS": "*"}
        for s in statements
    )


def test_bucket_names_are_stack_outputs(synth: Synth) -> None:
    assert {"ResultsBucketName", "FailuresBucketName", "ApiUrl"} <= set(synth.data["Outputs"])


# --- compute -------------------------------------------------------------------------------


def test_cluster_has_container_insights_and_fargate_capacity_providers(synth: Synth) -> None:
    synth.template.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )
    synth.template.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations",
        {"CapacityProviders": Match.array_with(["FARGATE", "FARGATE_SPOT"])},
    )


def test_profile_images_are_docker_assets_built_from_containers(synth: Synth) -> None:
    assets = json.loads((synth.outdir / "berth.assets.json").read_text())
    images = [image["source"] for image in assets["dockerImages"].values()]
    # synth only copies each containers/<dir> into cdk.out: no Docker daemon is involved
    for source in images:
        dockerfile = source.get("dockerFile", "Dockerfile")
        assert (synth.outdir / source["directory"] / dockerfile).is_file()
    targets = sorted(source.get("dockerBuildTarget", "") for source in images)
    profiles = {p.image for p in synth.stack.settings.sessions.profiles.values()}
    # one untargeted image per profile and the worker's, and the jobs Dockerfile's two targets
    assert targets == sorted([""] * (len(profiles) + 1) + ["fargate-image", "lambda-image"])


# --- functions -----------------------------------------------------------------------------


def scheduled_functions(synth: Synth) -> set[str]:
    """The functions a schedule (not a request or an event) runs, as bench/idle_cost.py
    prices them."""
    from bench.idle_cost import scheduled

    return set(scheduled(synth.data))


def test_every_function_is_arm64_traced_with_its_own_log_group(synth: Synth) -> None:
    functions = synth.resources("AWS::Lambda::Function")
    assert functions, "the API must have at least its health function"
    scheduled = scheduled_functions(synth)
    for logical_id, function in functions.items():
        props = function["Properties"]
        assert props["Architectures"] == ["arm64"], logical_id
        if logical_id not in scheduled:
            assert props["TracingConfig"] == {"Mode": "Active"}, logical_id
        assert "Ref" in json.dumps(props["LoggingConfig"]["LogGroup"]), logical_id
        env = props["Environment"]["Variables"]
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"} <= set(env)
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "berth"


def test_berths_own_code_retries_aws_in_standard_mode_set_once(synth: Synth) -> None:
    """Throttles and 5xx from AWS are retried by botocore (backoff, full jitter) in every
    function and in berth's own containers; session images (users' code) are not berth's."""
    expected = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "5"}
    for logical_id, function in synth.resources("AWS::Lambda::Function").items():
        env = function["Properties"]["Environment"]["Variables"]
        assert expected.items() <= env.items(), logical_id
    containers = {
        definition["Properties"]["Family"]: definition["Properties"]["ContainerDefinitions"][0]
        for definition in synth.resources("AWS::ECS::TaskDefinition").values()
    }
    berths = [family for family in containers if family.endswith(("-worker", "-job-runner"))]
    assert len(berths) == 2, sorted(containers)
    for family in berths:
        env = {e["Name"]: e["Value"] for e in containers[family]["Environment"]}
        assert expected.items() <= env.items(), family


def test_schedules_are_not_traced_so_an_idle_stack_records_no_traces(synth: Synth) -> None:
    scheduled = scheduled_functions(synth)
    handlers = {synth.data["Resources"][f]["Properties"]["Handler"] for f in scheduled}
    assert handlers == {
        "sessions.reaper.handler",
        "workers.scaler.handler",
        "workers.reconciler.handler",
    }
    policies = synth.resources("AWS::IAM::Policy")
    for logical_id in scheduled:
        props = synth.data["Resources"][logical_id]["Properties"]
        assert "TracingConfig" not in props, logical_id  # Lambda's default: PassThrough
        role = props["Role"]["Fn::GetAtt"][0]
        granted = json.dumps(
            [p for p in policies.values() if {"Ref": role} in p["Properties"]["Roles"]]
        )
        assert "xray:" not in granted, logical_id


def test_the_cold_import_bench_covers_every_python_handler(synth: Synth) -> None:
    from bench.cold_import import HANDLERS

    handlers = {
        f["Properties"]["Handler"]
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Runtime", "").startswith("python")  # image functions: none
    }
    assert {f"{module}.handler" for module in HANDLERS} == handlers


def test_python_functions_use_the_current_runtime_and_the_powertools_layer(
    synth: Synth,
) -> None:
    zipped = {
        key: f["Properties"]
        for key, f in synth.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("PackageType") != "Image"
    }
    assert len(zipped) >= 2
    for logical_id, props in zipped.items():
        assert props["Runtime"] == "python3.14", logical_id
        (layer,) = props["Layers"]
        rendered = json.dumps(layer)
        assert f":{POWERTOOLS_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:" in (
            rendered
        )


def test_container_functions_are_the_job_image_without_a_layer(synth: Synth) -> None:
    images = {
        key: f["Properties"]
        for key, f in synth.resources("AWS::Lambda::Function").items()
        if f["Properties"].get("PackageType") == "Image"
    }
    assert sorted(k.rstrip("0123456789ABCDEF") for k in images) == [
        "JobsFailureWriter",
        "JobsJobFunction",
    ]
    for props in images.values():
        assert "Layers" not in props
        assert "ImageUri" in props["Code"]


def test_log_groups_have_the_configured_retention(synth: Synth) -> None:
    for logical_id, group in synth.resources("AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"] == 30, logical_id


def test_function_roles_have_no_managed_policies_and_write_only_their_log_group(
    synth: Synth,
) -> None:
    functions = synth.resources("AWS::Lambda::Function")
    for function in functions.values():
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        role = synth.data["Resources"][role_id]
        assert "ManagedPolicyArns" not in role["Properties"]
        log_group_ref = function["Properties"]["LoggingConfig"]["LogGroup"]
        log_group_id = log_group_ref["Ref"]
        (policy,) = [
            p
            for p in synth.resources("AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
        ]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        writes = [s for s in statements if any(a.startswith("logs:") for a in _actions(s))]
        reads = {"logs:GetLogEvents", "logs:FilterLogEvents"}
        writes = [s for s in writes if not set(_actions(s)) <= reads]
        assert writes, role_id
        for statement in writes:
            assert statement["Resource"] == {"Fn::GetAtt": [log_group_id, "Arn"]}
        # reading: only the sessions functions, only session containers' output (the API and
        # task events read lines, the reaper searches for activity lines)
        for statement in statements:
            read_actions = reads & set(_actions(statement))
            if read_actions:
                readers: tuple[str, ...] = ("SessionsApi", "SessionsTaskEvents")
                if read_actions == {"logs:FilterLogEvents"}:
                    readers = ("SessionsReaper",)
                assert role_id.startswith(readers), (role_id, read_actions)
                read = statement["Resource"]
                for resource in read if isinstance(read, list) else [read]:
                    assert resource["Fn::GetAtt"][0].startswith("SessionsLogs"), resource


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


# --- API -----------------------------------------------------------------------------------


def test_every_api_method_requires_iam_auth_and_validates_requests(synth: Synth) -> None:
    methods = synth.resources("AWS::ApiGateway::Method")
    assert methods
    for logical_id, method in methods.items():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM", logical_id
        assert "RequestValidatorId" in props, logical_id


def test_stage_has_access_logs_tracing_and_throttling(synth: Synth) -> None:
    (stage,) = synth.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert "DestinationArn" in props["AccessLogSetting"]
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 50
    assert settings["ThrottlingBurstLimit"] == 100
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False


def test_cors_is_off_by_default(synth: Synth) -> None:
    methods = synth.resources("AWS::ApiGateway::Method").values()
    assert all(m["Properties"]["HttpMethod"] != "OPTIONS" for m in methods)


def test_gateway_errors_use_berth_error_shape_and_codes(synth: Synth) -> None:
    """What API Gateway answers itself speaks berth's shape and the codes the functions and
    the sandbox use: an unsigned request is 401 unauthenticated, a bad signature 403
    forbidden, throttling 429 throttled."""
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    codes = {}
    for response_type, props in responses.items():
        template = json.loads(
            props["ResponseTemplates"]["application/json"].replace(
                "$context.error.messageString", '"the message"'
            )
        )
        assert set(template) == {"error"} and set(template["error"]) == {"code", "message"}
        codes[response_type] = (props.get("StatusCode"), template["error"]["code"])
    assert codes["MISSING_AUTHENTICATION_TOKEN"] == ("401", "unauthenticated")
    assert codes["INVALID_SIGNATURE"][1] == codes["ACCESS_DENIED"][1] == "forbidden"
    assert codes["THROTTLED"][1] == "throttled"
    assert codes["REQUEST_TOO_LARGE"][1] == "payload_too_large"
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(codes)


def test_api_gateway_routes_are_exactly_the_openapi_document(synth: Synth) -> None:
    from openapi.handler import document

    documented = {
        (method.upper(), path)
        for path, operations in document()["paths"].items()
        for method in operations
    }
    documented.add(("GET", "/openapi.json"))  # serves the document, not listed in it
    assert set(synth.stack.api.routes) == documented


@pytest.mark.parametrize(
    ("table", "index", "owner"),
    [
        ("SessionsTable", "by_user_created", "user"),
        ("JobsTable", "by_user_created", "user"),
        ("InstancesTable", "by_user_created", "user"),
        ("WorkersTable", "by_project", "project"),
    ],
)
def test_every_listing_is_by_owner_and_creation_time(
    synth: Synth, table: str, index: str, owner: str
) -> None:
    """Lists are newest first by creation time, never by id (keyed ids are hashes)."""
    (props,) = [
        r["Properties"]
        for key, r in synth.resources("AWS::DynamoDB::Table").items()
        if key.startswith(table)
    ]
    indexes = {i["IndexName"]: i["KeySchema"] for i in props["GlobalSecondaryIndexes"]}
    assert indexes[index] == [
        {"AttributeName": owner, "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types["created_at"] == "N"


# --- snapshot (a safety net; every fact above is asserted on its own) ---------------------


def test_template_snapshot(synth: Synth, snapshot: SnapshotAssertion) -> None:
    assert mask_asset_hashes(synth.data) == snapshot.use_extension(JSONSnapshotExtension)
