"""Session routing in the template (``routing.mode``), asserted fact by fact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings, SettingsError
from tests.infra.test_sessions_infra import actions, resources, statements_of
from tests.synth import Synth, deployment_context, synthesize

CERTIFICATE = "arn:aws:acm:eu-west-1:111122223333:certificate/0a1b2c3d-1111-2222-3333-444455556666"
ROUTED = {
    "routing.mode": "alb",
    "routing.domain": "sessions.example.com",
    "routing.certificate_arn": CERTIFICATE,
    "routing.hosted_zone_id": "Z0123456789ABCDEFGHIJ",
    "env.account": "111122223333",
    "env.region": "eu-west-1",
}


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(deployment_context(**ROUTED), tmp_path_factory.mktemp("routed"))


def one(synth: Synth, type_name: str, **properties: Any) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (key, r["Properties"])
        for key, r in synth.resources(type_name).items()
        if all(r["Properties"].get(k) == v for k, v in properties.items())
    ]
    return found


def test_without_routing_there_is_no_load_balancer(synth: Synth) -> None:
    assert synth.resources("AWS::ElasticLoadBalancingV2::LoadBalancer") == {}
    assert synth.resources("AWS::ElasticLoadBalancingV2::Listener") == {}


def test_alb_without_a_certificate_fails_with_one_line() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_context(deployment_context(**{"routing.mode": "alb"}))
    (line,) = str(raised.value).splitlines()
    assert "routing.mode 'alb' needs routing.certificate_arn" in line


def test_an_internet_facing_alb_in_public_subnets_with_access_logs(routed: Synth) -> None:
    _, balancer = one(routed, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert balancer["Scheme"] == "internet-facing" and balancer["Type"] == "application"
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    public = {
        key
        for key, subnet in routed.resources("AWS::EC2::Subnet").items()
        if subnet["Properties"].get("MapPublicIpOnLaunch") is True
    }
    assert {s["Ref"] for s in balancer["Subnets"]} == public


def test_https_with_the_certificate_a_current_policy_and_a_404_default(routed: Synth) -> None:
    _, https = one(routed, "AWS::ElasticLoadBalancingV2::Listener", Port=443)
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    (default,) = https["DefaultActions"]
    assert default["Type"] == "fixed-response"
    response = default["FixedResponseConfig"]
    assert (response["StatusCode"], response["ContentType"]) == ("404", "application/json")
    assert json.loads(response["MessageBody"])["error"]["code"] == "not_found"


def test_http_redirects_to_https(routed: Synth) -> None:
    _, http = one(routed, "AWS::ElasticLoadBalancingV2::Listener", Port=80)
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"


def test_a_wildcard_alias_in_the_hosted_zone(routed: Synth) -> None:
    _, record = one(routed, "AWS::Route53::RecordSet")
    assert record["Name"] == "*.sessions.example.com."
    assert record["HostedZoneId"] == "Z0123456789ABCDEFGHIJ"
    assert "AliasTarget" in record


def test_session_tasks_admit_only_the_load_balancer(routed: Synth) -> None:
    (alb_group,) = [
        key
        for key in routed.resources("AWS::EC2::SecurityGroup")
        if key.startswith("RoutingSecurityGroup")
    ]
    (task_group,) = [
        key
        for key in routed.resources("AWS::EC2::SecurityGroup")
        if key.startswith("SessionsTaskSecurityGroup")
    ]
    ingress = [
        r["Properties"]
        for r in routed.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [task_group, "GroupId"]}
    ]
    inline = routed.data["Resources"][task_group]["Properties"].get("SecurityGroupIngress", [])
    assert inline == []
    assert ingress and all(
        rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [alb_group, "GroupId"]} for rule in ingress
    )
    assert sorted(rule["FromPort"] for rule in ingress) == [8000, 8080]


def test_route_permissions_are_scoped_to_the_listener_and_berths_tag(routed: Synth) -> None:
    (listener_id,) = [
        key
        for key, r in routed.resources("AWS::ElasticLoadBalancingV2::Listener").items()
        if r["Properties"]["Port"] == 443
    ]
    for function in ("SessionsTaskEvents", "SessionsApi", "SessionsReaper"):
        statements = [
            s
            for s in statements_of(routed, function)
            if any(a.startswith("elasticloadbalancing:") for a in actions(s))
        ]
        by_action = {a: s for s in statements for a in actions(s)}
        create_rule = by_action["elasticloadbalancing:CreateRule"]
        assert resources(create_rule) == [{"Ref": listener_id}]
        assert create_rule["Condition"] == {
            "StringEquals": {"aws:RequestTag/berth:routing": "berth"}
        }
        for action in (
            "elasticloadbalancing:DeleteRule",
            "elasticloadbalancing:ModifyRule",
            "elasticloadbalancing:RegisterTargets",
            "elasticloadbalancing:DeleteTargetGroup",
        ):
            assert by_action[action]["Condition"] == {
                "StringEquals": {"aws:ResourceTag/berth:routing": "berth"}
            }, action
        assert by_action["elasticloadbalancing:CreateTargetGroup"]["Condition"] == {
            "StringEquals": {"aws:RequestTag/berth:routing": "berth"}
        }
        unscoped = [s for s in statements if resources(s) == ["*"]]
        assert {a for s in unscoped for a in actions(s) if a.startswith("elastic")} == {
            "elasticloadbalancing:DescribeRules",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTags",
        }


def test_only_the_reaper_reads_request_counts(routed: Synth, synth: Synth) -> None:
    """Routed traffic is use: the reaper reads each session's target group's request count
    (metric reads take no resource); no other function, and nothing without routing."""
    for function in ("SessionsApi", "SessionsTaskEvents", "SessionsReaper"):
        reading = [
            s
            for s in statements_of(routed, function)
            if "cloudwatch:GetMetricStatistics" in actions(s)
        ]
        if function != "SessionsReaper":
            assert reading == [], function
            continue
        (statement,) = reading
        assert resources(statement) == ["*"]  # merged with the Describe* that take none too
        assert {a for a in actions(statement) if a.startswith("cloudwatch:")} == {
            "cloudwatch:GetMetricStatistics"
        }
    plain = {a for s in statements_of(synth, "SessionsReaper") for a in actions(s)}
    assert "cloudwatch:GetMetricStatistics" not in plain


def test_sessions_functions_know_the_listener_and_domain(routed: Synth) -> None:
    for key, function in routed.resources("AWS::Lambda::Function").items():
        if key.startswith(("SessionsApi", "SessionsTaskEvents", "SessionsReaper")):
            env = function["Properties"]["Environment"]["Variables"]
            assert env["BERTH_ROUTING_DOMAIN"] == "sessions.example.com"
            assert env["BERTH_MAX_ROUTES"] == "45"
            assert "Ref" in json.dumps(env["BERTH_ROUTING_LISTENER_ARN"])


def test_routed_template_passes_cdk_nag_and_cfn_lint(routed: Synth) -> None:
    report = json.loads((routed.outdir / "validation-report.json").read_text())
    violations = [v for p in report.get("pluginReports", []) for v in p.get("violations", [])]
    assert violations == []
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert cfn_lint
    # alb mode pins the stack to a region (access logs), so the created VPC names its AZs
    # (from cdk.context.json, as CDK records them): W3010 is about exactly that, nothing else.
    result = subprocess.run(
        [
            cfn_lint,
            str(routed.outdir / "berth.template.json"),
            "--format",
            "parseable",
            "--ignore-checks",
            "W3010",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.stdout, result.returncode) == ("", 0)
