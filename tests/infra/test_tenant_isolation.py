"""Tenants fenced, read from the template: each kind of workload has its own security group,
session containers admit only their clients, and nothing that runs users' code admits
anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.synth import Synth, deployment_context, synthesize

WORKLOADS = {  # logical id prefix of each workload's security group
    "sessions": "SessionsTaskSecurityGroup",
    "session clients": "SessionsClientSecurityGroup",
    "workers": "WorkersSecurityGroup",
    "jobs": "JobsTaskSecurityGroup",
    "instances": "InstancesSecurityGroup",
}


def group_id(synth: Synth, prefix: str) -> str:
    (found,) = [k for k in synth.resources("AWS::EC2::SecurityGroup") if k.startswith(prefix)]
    return found


def ingress(synth: Synth, logical_id: str) -> list[dict[str, Any]]:
    """Inline and stand-alone ingress rules of one security group."""
    group = synth.data["Resources"][logical_id]["Properties"]
    rules = list(group.get("SecurityGroupIngress", []))
    rules += [
        r["Properties"]
        for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [logical_id, "GroupId"]}
    ]
    return rules


def test_every_kind_of_workload_has_a_security_group_of_its_own(synth: Synth) -> None:
    ids = {name: group_id(synth, prefix) for name, prefix in WORKLOADS.items()}
    assert len(set(ids.values())) == len(WORKLOADS)


@pytest.mark.parametrize("workload", ["session clients", "workers", "jobs", "instances"])
def test_what_runs_users_code_admits_nothing(synth: Synth, workload: str) -> None:
    assert ingress(synth, group_id(synth, WORKLOADS[workload])) == []


def test_session_containers_admit_their_ports_only_from_session_clients(synth: Synth) -> None:
    clients = group_id(synth, WORKLOADS["session clients"])
    rules = ingress(synth, group_id(synth, WORKLOADS["sessions"]))
    ports = {p.port for p in synth.stack.settings.sessions.profiles.values()}
    assert sorted(r["FromPort"] for r in rules) == sorted(ports)
    for rule in rules:
        assert (rule["IpProtocol"], rule["ToPort"]) == ("tcp", rule["FromPort"])
        assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [clients, "GroupId"]}
        assert "CidrIp" not in rule  # not the VPC, which holds workers and instances
    assert synth.data["Outputs"]["SessionClientsSecurityGroupId"]["Value"] == {
        "Fn::GetAtt": [clients, "GroupId"]
    }


def test_each_workload_runs_in_its_own_group(synth: Synth) -> None:
    def env_of(prefix: str) -> dict[str, Any]:
        (function,) = [
            f for k, f in synth.resources("AWS::Lambda::Function").items() if k.startswith(prefix)
        ]
        return dict(function["Properties"]["Environment"]["Variables"])

    def ref(workload: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [group_id(synth, WORKLOADS[workload]), "GroupId"]}

    assert env_of("SessionsApi")["BERTH_TASK_SECURITY_GROUPS"] == ref("sessions")
    assert env_of("WorkersScaler")["BERTH_TASK_SECURITY_GROUPS"] == ref("workers")
    (machine,) = [
        m for k, m in synth.resources("AWS::StepFunctions::StateMachine").items()
        if k.startswith("JobsStateMachine")
    ]  # fmt: skip
    definition = json.dumps(machine["Properties"]["DefinitionString"])
    assert group_id(synth, WORKLOADS["jobs"]) in definition
    for other in ("sessions", "workers", "instances"):
        assert group_id(synth, WORKLOADS[other]) not in definition
    (template,) = synth.resources("AWS::EC2::LaunchTemplate").values()
    assert json.dumps(ref("instances")) in json.dumps(template["Properties"])


def test_operator_cidrs_are_let_in_on_session_ports_only(tmp_path: Path) -> None:
    context = deployment_context(**{"vpc.ingress_cidrs": '["10.99.0.0/16"]'})
    synth = synthesize(context, tmp_path)
    rules = ingress(synth, group_id(synth, WORKLOADS["sessions"]))
    ports = {p.port for p in synth.stack.settings.sessions.profiles.values()}
    assert sorted(r["FromPort"] for r in rules if r.get("CidrIp") == "10.99.0.0/16") == sorted(
        ports
    )
    for workload in ("workers", "jobs", "instances"):
        assert ingress(synth, group_id(synth, WORKLOADS[workload])) == []
