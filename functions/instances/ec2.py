"""EC2 and SSM access for instances: launch from the template, describe, terminate, run."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from instances.models import (
    APP_TAG,
    CAPABILITY_TAG,
    ID_TAG,
    USER_TAG,
    Ec2Facts,
    Instance,
    MachineLife,
    ScriptOutput,
)
from shared.records import iso

GONE_STATES = {"shutting-down", "terminated", "stopping", "stopped"}


class Machines:
    def __init__(
        self, ec2: Any, ssm: Any, *, launch_template_id: str, subnets: list[str], app_tag: str
    ) -> None:
        self.ec2 = ec2
        self.ssm = ssm
        self.launch_template_id = launch_template_id
        self.subnets = subnets
        self.app_tag = app_tag

    def launch(self, instance: Instance) -> str:
        """The EC2 id of ``instance``'s machine, launched now or by an earlier try whose
        record write failed (found by its id tag; on AWS the client token dedups too)."""
        if earlier := self._launched(instance.id):
            return earlier
        tags = [
            {"Key": "Name", "Value": instance.name},
            {"Key": APP_TAG, "Value": self.app_tag},
            {"Key": ID_TAG, "Value": instance.id},
            {"Key": USER_TAG, "Value": instance.user[:256]},
            {"Key": CAPABILITY_TAG, "Value": "instances"},
        ]
        response = self.ec2.run_instances(
            LaunchTemplate={"LaunchTemplateId": self.launch_template_id, "Version": "$Latest"},
            MinCount=1,
            MaxCount=1,
            SubnetId=self.subnets[0],
            ClientToken=instance.id,  # a retried launch starts no second instance
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        )
        return str(response["Instances"][0]["InstanceId"])

    def _launched(self, instance_id: str) -> str | None:
        reservations = self.ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{ID_TAG}", "Values": [instance_id]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        found = [i["InstanceId"] for r in reservations for i in r.get("Instances", [])]
        return str(found[0]) if found else None

    def describe(self, ec2_ids: list[str]) -> dict[str, Ec2Facts]:
        """Facts per EC2 id; ids EC2 no longer knows come back with state ``missing``."""
        found: dict[str, Ec2Facts] = {}
        for ec2_id in ec2_ids:
            try:
                reservations = self.ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound":
                    raise
                reservations = []
            machines = [i for r in reservations for i in r.get("Instances", [])]
            if not machines:
                found[ec2_id] = Ec2Facts(state="missing")
                continue
            machine = machines[0]
            launched = machine.get("LaunchTime")
            found[ec2_id] = Ec2Facts(
                state=machine["State"]["Name"],
                instance_type=machine.get("InstanceType"),
                private_ip=machine.get("PrivateIpAddress"),
                public_ip=machine.get("PublicIpAddress"),
                launch_time=iso(launched.timestamp()) if hasattr(launched, "timestamp") else None,
            )
        return found

    def life(self, ec2_id: str) -> MachineLife | None:
        """When berth's machine ``ec2_id`` was launched, as what, for which instance; None for
        a machine that is not berth's (of this deployment) or no longer known."""
        try:
            reservations = self.ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound":
                raise
            return None
        for machine in (i for r in reservations for i in r.get("Instances", [])):
            tags = {t["Key"]: t["Value"] for t in machine.get("Tags", [])}
            launched = machine.get("LaunchTime")
            if tags.get(APP_TAG) != self.app_tag or ID_TAG not in tags or launched is None:
                return None
            return MachineLife(
                instance_id=tags[ID_TAG],
                instance_type=str(machine.get("InstanceType", "")),
                launched_at=launched.timestamp(),
            )
        return None

    def terminate(self, ec2_id: str) -> None:
        try:
            self.ec2.terminate_instances(InstanceIds=[ec2_id])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound":
                raise

    def agent_online(self, ec2_id: str) -> bool:
        response = self.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [ec2_id]}]
        )
        return any(
            info.get("PingStatus") == "Online"
            for info in response.get("InstanceInformationList", [])
        )

    def run_document(
        self, ec2_id: str, document: str, parameters: dict[str, list[str]], timeout: int
    ) -> str:
        """The blob id reaches the instance only as a document parameter (validated by the
        document's allowedPattern, read by the script from the environment)."""
        response = self.ssm.send_command(
            InstanceIds=[ec2_id],
            DocumentName=document,
            Parameters=parameters,
            TimeoutSeconds=timeout,
            Comment="berth: fetch blob and start its script",
        )
        return str(response["Command"]["CommandId"])

    def command_status(self, command_id: str, ec2_id: str) -> tuple[str, str]:
        """(status, details) of the command on the instance; ``Pending`` before it exists."""
        try:
            invocation = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=ec2_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":
                return "Pending", ""
            raise
        details = invocation.get("StandardErrorContent") or invocation.get("StatusDetails") or ""
        return str(invocation.get("Status", "Pending")), str(details)[:1000]

    def script_output(self, command_id: str, ec2_id: str) -> ScriptOutput:
        """What the command printed so far (SSM keeps the first 24,000 characters of stdout
        and 8,000 of stderr) and its exit code once it has one."""
        try:
            invocation = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=ec2_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":
                return ScriptOutput("Pending", None, "", "")
            raise
        code = invocation.get("ResponseCode", -1)
        return ScriptOutput(
            status=str(invocation.get("Status", "Pending")),
            exit_code=int(code) if isinstance(code, int) and code >= 0 else None,
            stdout=str(invocation.get("StandardOutputContent") or ""),
            stderr=str(invocation.get("StandardErrorContent") or ""),
        )
