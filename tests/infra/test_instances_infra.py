"""Instances infrastructure facts: the document's guard, the hardened template, scoped IAM."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.instances import BLOB_USER, SSM_AGENT_ACTIONS
from instances.models import BLOB_ID_PATTERN
from tests.infra.test_sessions_infra import actions, resources, statements_of
from tests.synth import Synth


def document(synth: Synth) -> dict[str, Any]:
    (doc,) = synth.resources("AWS::SSM::Document").values()
    return dict(doc["Properties"])


def test_document_takes_the_blob_id_only_as_a_pattern_checked_env_var(synth: Synth) -> None:
    props = document(synth)
    assert props["DocumentType"] == "Command"
    params = props["Content"]["parameters"]
    assert params["blobId"]["allowedPattern"] == BLOB_ID_PATTERN == "^[A-Za-z0-9_-]{1,128}$"
    assert params["blobId"]["interpolationType"] == "ENV_VAR"
    assert params["aggregatorUrl"]["interpolationType"] == "ENV_VAR"
    assert params["aggregatorUrl"]["default"] == synth.stack.settings.instances.aggregator_url
    (step,) = props["Content"]["mainSteps"]
    script = "\n".join(step["inputs"]["runCommand"])
    assert "{{" not in script, "no textual interpolation of parameters into the script"
    assert '"${SSM_aggregatorUrl}/v1/blobs/by-object-id/${SSM_blobId}"' in script
    # every use of the blob id is inside double quotes
    for use in re.finditer(r"\$\{SSM_blobId\}", script):
        line = script[script.rfind("\n", 0, use.start()) + 1 : script.find("\n", use.end())]
        assert line.count('"') >= 2, line


def test_launch_template_requires_imdsv2_encrypts_and_has_no_ssh_key(synth: Synth) -> None:
    (template,) = synth.resources("AWS::EC2::LaunchTemplate").values()
    data = template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (device,) = data["BlockDeviceMappings"]
    assert device["Ebs"]["Encrypted"] is True
    assert "KeyName" not in data
    assert data["InstanceType"] == synth.stack.settings.instances.instance_type
    assert "al2023" in json.dumps(data["ImageId"]).lower()


def test_instance_security_group_has_no_inbound_rules(synth: Synth) -> None:
    (group,) = [
        g
        for k, g in synth.resources("AWS::EC2::SecurityGroup").items()
        if k.startswith("InstancesSecurityGroup")
    ]
    assert "SecurityGroupIngress" not in group["Properties"]
    ingress = [
        r
        for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()
        if "Instances" in json.dumps(r["Properties"].get("GroupId"))
    ]
    assert ingress == []


def test_instance_role_grants_the_ssm_agent_its_channel_and_nothing_more(synth: Synth) -> None:
    (role_id,) = [
        k for k in synth.resources("AWS::IAM::Role") if k.startswith("InstancesInstanceRole")
    ]
    role = synth.data["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role  # no AmazonSSM* policy: it reads every parameter
    (statement, register) = [
        s
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert actions(statement) == set(SSM_AGENT_ACTIONS)
    assert not any(
        a.startswith(("ssm:", "s3:", "kms:")) or a.endswith("*") for a in actions(statement)
    )
    # the one SSM action with resource-level permissions is scoped to instances
    assert actions(register) == {"ssm:UpdateInstanceInformation"}
    assert register["Resource"] != "*"
    assert json.dumps(register["Resource"]).endswith(':instance/*"]]}')


def test_the_blob_script_runs_unprivileged_with_the_metadata_service_closed(
    synth: Synth,
) -> None:
    (step,) = document(synth)["Content"]["mainSteps"]
    lines = step["inputs"]["runCommand"]
    script = "\n".join(lines)
    block = next(i for i, line in enumerate(lines) if "skuid != 0 reject" in line)
    fallback = next(i for i, line in enumerate(lines) if "! --uid-owner 0 -j REJECT" in line)
    refuse = next(i for i, line in enumerate(lines) if "refusing to run the blob" in line)
    start = next(i for i, line in enumerate(lines) if "./script.sh" in line and "nohup" in line)
    assert "169.254.169.254" in lines[block]
    assert block < fallback < refuse < start  # closed first, or the script never starts
    assert f"runuser -u {BLOB_USER} -- env -i" in lines[start]
    assert f"chown -R {BLOB_USER}:" in script
    (template,) = synth.resources("AWS::EC2::LaunchTemplate").values()
    metadata = template["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert metadata["HttpTokens"] == "required"
    assert metadata.get("HttpPutResponseHopLimit", 1) == 1


def test_launches_cannot_override_the_templates_subnet_security_group_or_image(
    synth: Synth,
) -> None:
    statements = [
        s for s in statements_of(synth, "InstancesStep") if "ec2:RunInstances" in actions(s)
    ]
    rendered = [json.dumps(r) for s in statements for r in resources(s)]
    for r in rendered:
        if "*" in r:  # only what a launch creates may be a wildcard
            assert re.search(r":(instance|volume|network-interface)/\*", r), r
    (group_id,) = [
        k for k in synth.resources("AWS::EC2::SecurityGroup") if k.startswith("InstancesSecurity")
    ]
    assert (
        [r for r in rendered if ":security-group/" in r]
        == [r for r in rendered if ":security-group/" in r and group_id in r]
        != []
    )
    images = [r for r in rendered if ":image/" in r]
    assert len(images) == 1 and "SsmParameterValue" in images[0]  # the template's own AMI
    subnets = [r for r in rendered if ":subnet/" in r]
    assert len(subnets) == len(synth.stack.network.task_subnet_ids)
    everything = json.dumps([resources(s) for s in statements])
    for kind in ("subnet", "security-group", "image"):
        assert f":{kind}/*" not in everything


def test_run_instances_needs_berths_launch_template_and_tag(synth: Synth) -> None:
    statements = [
        s for s in statements_of(synth, "InstancesStep") if "ec2:RunInstances" in actions(s)
    ]
    assert len(statements) == 3
    for statement in statements:
        rendered = json.dumps(statement)
        assert "launch-template" in rendered
    (instance_statement,) = [s for s in statements if ":instance/" in json.dumps(resources(s))]
    assert instance_statement["Condition"]["StringEquals"] == {"aws:RequestTag/berth:app": "berth"}
    assert "ec2:LaunchTemplate" in instance_statement["Condition"]["ArnLike"]


def test_pass_role_only_for_the_instance_role(synth: Synth) -> None:
    (passing,) = [s for s in statements_of(synth, "InstancesStep") if "iam:PassRole" in actions(s)]
    (role,) = resources(passing)
    assert role["Fn::GetAtt"][0].startswith("InstancesInstanceRole")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def test_send_command_only_with_berths_document_on_berth_instances(synth: Synth) -> None:
    sends = [s for s in statements_of(synth, "InstancesStep") if "ssm:SendCommand" in actions(s)]
    rendered = sorted(json.dumps(s) for s in sends)
    assert len(sends) == 2
    (document_statement,) = [s for s in sends if ":document/" in json.dumps(resources(s))]
    assert "Condition" not in document_statement
    (instance_statement,) = [s for s in sends if ":instance/" in json.dumps(resources(s))]
    assert instance_statement["Condition"] == {
        "StringEquals": {"ssm:resourceTag/berth:app": "berth"}
    }
    assert rendered


def test_terminate_only_berth_tagged_instances(synth: Synth) -> None:
    for function in ("InstancesStep", "InstancesApi"):
        (terminate,) = [
            s for s in statements_of(synth, function) if "ec2:TerminateInstances" in actions(s)
        ]
        assert terminate["Condition"] == {"StringEquals": {"ec2:ResourceTag/berth:app": "berth"}}


def workflow(synth: Synth) -> dict[str, Any]:
    (machine,) = [
        m
        for k, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if k.startswith("Instances")
    ]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return dict(json.loads("".join(p if isinstance(p, str) else '"x"'[1:-1] for p in parts)))


def test_workflow_waits_have_timeouts_and_failures_are_recorded(synth: Synth) -> None:
    asl = workflow(synth)
    states = asl["States"]
    assert asl["TimeoutSeconds"] > 0
    for name in ("instance", "agent", "command"):
        check = states[f"Check {name}"]
        (catch,) = check["Catch"]
        assert catch["Next"] == "Record failure"
        choice = states[f"{name.capitalize()} done?"]
        assert {c["StringEquals"] for c in choice["Choices"]} >= {"wait", "stopped"}
        assert choice["Default"] == "Provisioning failed"
    assert states["Record failure"]["Next"] == "Provisioning failed"


def test_every_step_retries_aws_trouble_and_the_failure_record_retries_anything(
    synth: Synth,
) -> None:
    """Found by make chaos at 30%: an instance stayed waiting_for_instance for good — a step
    failed on AWS's passing trouble, and so did the step recording the failure, which nothing
    retried. Each step looks once (looking again is harmless): AwsUnavailable and a
    throttled invoke are retried; the failure record retries anything, last."""
    from shared.errors import AwsUnavailable

    states = workflow(synth)["States"]
    steps = {n: s for n, s in states.items() if s.get("Resource", "").endswith(":lambda:invoke")}
    assert set(steps) == {"Launch", "Check instance", "Check agent", "Check command",
                          "Record failure"}  # fmt: skip
    for name, step in steps.items():
        errors = [e for retry in step["Retry"] for e in retry["ErrorEquals"]]
        assert AwsUnavailable.__name__ in errors and "Lambda.TooManyRequestsException" in errors
        assert "Sandbox.Timedout" in errors  # its answer lost after its work: run it again
        if name == "Record failure":
            assert step["Retry"][-1]["ErrorEquals"] == ["States.ALL"]  # last, as required
        else:  # anything else is a failure to record, not to retry
            assert "States.ALL" not in errors


def test_the_launch_waits_for_the_record_past_the_api_calls_timeout(synth: Synth) -> None:
    """The API starts the workflow, then records the instance: the launch step retries
    NotRecordedYet (no jitter) for longer than the API's function may run."""
    from instances.provisioning import NotRecordedYet

    (retry,) = [
        r
        for r in workflow(synth)["States"]["Launch"]["Retry"]
        if r["ErrorEquals"] == [NotRecordedYet.__name__]
    ]
    waited = sum(
        retry["IntervalSeconds"] * retry["BackoffRate"] ** n for n in range(retry["MaxAttempts"])
    )
    assert "JitterStrategy" not in retry
    assert waited >= synth.stack.settings.functions.timeout_seconds + 10
