"""Instances: EC2 from a launch template, provisioned by a Step Functions workflow that waits
for the instance and its SSM agent, then runs the ``berth-fetch-and-run`` document.

The blob id is never part of a command string: it is a document parameter with an
``allowedPattern``, handed to the script as an environment variable (``interpolationType:
ENV_VAR``), and the API refuses a bad one before anything is launched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.compute import CAPABILITY_TAG
from infra.events import deliver_events
from infra.functions import LambdaBaseline
from infra.nag import acknowledge, acknowledge_wildcard
from infra.network import Network
from infra.platform import Platform
from infra.settings import InstancesSettings
from infra.storage import add_listing_index, secure_table
from infra.workflow import retry_anything, retry_passing_trouble, standard_state_machine
from instances.config import InstancesConfig
from instances.models import APP_TAG, BLOB_ID_PATTERN
from instances.provisioning import NotRecordedYet
from instances.repository import BY_USER
from instances.routes import router as instances_router
from shared.api import routes_of

AGGREGATOR_PATTERN = r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*$"

BLOB_USER = "berth-blob"
# Runs as root under the SSM agent. Everything from the blob runs as BLOB_USER, with the
# instance metadata service (where the instance role's credentials are) closed to every user
# but root — fail closed: no firewall rule, no script.
FETCH_AND_RUN = [
    "set -euo pipefail",
    f"id -u {BLOB_USER} >/dev/null 2>&1 || useradd --system --create-home "
    f"--home-dir /var/lib/{BLOB_USER} --shell /sbin/nologin {BLOB_USER}",
    "if command -v nft >/dev/null; then",
    "  nft list table inet berth_imds >/dev/null 2>&1 || {",
    "    nft add table inet berth_imds",
    "    nft add chain inet berth_imds out"
    " '{ type filter hook output priority 0; policy accept; }'",
    "    nft add rule inet berth_imds out ip daddr 169.254.169.254 meta skuid != 0 reject",
    "  }",
    "elif command -v iptables >/dev/null; then",
    "  iptables -C OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT 2>/dev/null"
    " || iptables -A OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT",
    "else",
    '  echo "refusing to run the blob: cannot close the metadata service to it" >&2; exit 4',
    "fi",
    'work="/opt/berth/blobs/${SSM_blobId}"',
    'mkdir -p "$work" && cd "$work"',
    'curl --fail --silent --show-error --location --max-time 600 --output blob.zip "${SSM_aggregatorUrl}/v1/blobs/by-object-id/${SSM_blobId}"',  # noqa: E501
    "python3 -m zipfile -e blob.zip .",
    'test -f script.sh || { echo "the blob has no script.sh" >&2; exit 3; }',
    "chmod +x script.sh",
    f'chown -R {BLOB_USER}: "$work"',
    f'nohup setsid runuser -u {BLOB_USER} -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work" ./script.sh > script.log 2>&1 &',  # noqa: E501
    f'echo "started script.sh as {BLOB_USER} (pid $!) in $work; log: $work/script.log"',
]
# What the SSM agent needs to register and receive Run Command — no Parameter Store, no S3.
SSM_REGISTER_ACTIONS = ["ssm:UpdateInstanceInformation"]
"""Supports instance resources: scoped to this account's and region's instances."""
SSM_AGENT_ACTIONS = [
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:OpenControlChannel",
]


def record_wait_attempts(grace_seconds: int, first: int = 2, rate: int = 2) -> int:
    """Retries (``first`` s, times ``rate`` each, no jitter) whose waits add up to at least
    ``grace_seconds``: the launch step waits this long for the instance's record."""
    attempts, waited = 0, 0
    while waited < grace_seconds:
        waited += first * rate**attempts
        attempts += 1
    return attempts


@dataclass(frozen=True)
class _Ends:
    """Where the provisioning workflow ends: failed, failed after recording it, or ended
    because the instance was deleted meanwhile."""

    failed: sfn.Fail
    record_failure: sfn.Chain
    ended: sfn.Succeed


class Instances(Construct):
    """Exposes ``launch_template``, ``document``, ``state_machine``, ``table``."""

    def __init__(self, scope: Construct, construct_id: str, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        self.platform = platform
        settings = platform.settings.instances
        self.app_tag = platform.name
        launch_template_arn = self._machine(settings, platform.network)
        document_name = self._document(settings, platform.name)
        self.table = secure_table(self, "Table", removal_policy=platform.removal_policy)
        add_listing_index(self.table, BY_USER, "user")
        environment = self._environment(settings, document_name)
        self.step_function = self._step(environment)
        self._grant_provisioning(self.step_function, launch_template_arn, document_name)
        self.state_machine = self._workflow(
            settings,
            platform.log_retention,
            platform.removal_policy,
            platform.baseline.record_grace_seconds,
        )
        self.api_function = self._api(environment)
        CfnOutput(self, "DocumentName", key="FetchAndRunDocument", value=document_name)
        self.state_function = self._state_changes(platform.baseline, environment)

    def _environment(self, settings: InstancesSettings, document_name: str) -> dict[str, str]:
        return InstancesConfig.environment(
            instances_table=self.table.table_name,
            launch_template_id=self.launch_template_id,
            subnets=self.platform.network.task_subnet_ids,
            document_name=document_name,
            aggregator_url=settings.aggregator_url,
            app_tag=self.platform.name,
            max_instances_per_user=self.platform.settings.limits.max_instances_per_user,
            running_timeout_seconds=settings.running_timeout_seconds,
            ssm_timeout_seconds=settings.ssm_timeout_seconds,
            command_timeout_seconds=settings.command_timeout_seconds,
            terminate_on_failure=settings.terminate_on_failure,
        )

    def _step(self, environment: dict[str, str]) -> lambda_.Function:
        """The workflow's Lambda: one provisioning step per invocation."""
        return self.platform.baseline.function(
            self,
            "Step",
            handler="instances.step.handler",
            service="instances-provisioning",
            description="One step of instance provisioning (launch, check, run, fail)",
            environment=environment,
            timeout=Duration.seconds(60),
        )

    def _api(self, environment: dict[str, str]) -> lambda_.Function:
        """Launch (starts the workflow), list, read with live EC2 data, terminate."""
        function = self.platform.baseline.function(
            self,
            "Api",
            handler="instances.handler.handler",
            service="instances",
            description="Instances API: launch, list, status with live EC2 data, terminate",
            environment={
                **environment,
                **InstancesConfig.environment(
                    state_machine_arn=self.state_machine.state_machine_arn
                ),
            },
        )
        for each in (self.step_function, function):
            self.table.grant_read_write_data(each)
            acknowledge_wildcard(
                each,
                f"{self.table.table_arn}/index/*",
                "Covers only this table's own index (by_user).",
            )
            self._grant_terminate_and_describe(each)
        self.state_machine.grant_start_execution(function)
        function.add_to_role_policy(  # GET /instances/{id}/logs
            iam.PolicyStatement(actions=["ssm:GetCommandInvocation"], resources=["*"])
        )
        execution_arns = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[execution_arns])
        )
        acknowledge_wildcard(
            function,
            execution_arns,
            "Execution names are instance ids made at run time; scoped to this workflow.",
        )
        self.platform.api.add_routes(function, routes_of(instances_router))
        return function

    def _state_changes(
        self, baseline: LambdaBaseline, environment: dict[str, str]
    ) -> lambda_.Function:
        """A machine that stops running → its instance's usage (``instances.on_state_change``).
        EventBridge cannot match on tags: the function ignores machines that are not berth's."""
        function = baseline.function(
            self,
            "StateChanges",
            handler="instances.on_state_change.handler",
            service="instances-usage",
            description="Records each berth machine's running time as its user's usage",
            environment=environment,
        )
        function.add_to_role_policy(  # its record, by key
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[self.table.table_arn])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"])
        )
        if function.role is not None:
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                "ec2:DescribeInstances (and X-Ray) have no resource-level permissions.",
            )
        deliver_events(
            self,
            "StateChangeRule",
            dead_letter_id="StateChangesDlq",
            description="berth: EC2 machines that stopped running (usage)",
            source="aws.ec2",
            detail_type="EC2 Instance State-change Notification",
            detail={"state": ["shutting-down", "terminated", "stopping", "stopped"]},
            function=function,
        )
        return function

    def _machine(self, settings: InstancesSettings, network: Network) -> str:
        """The instance role (the SSM agent's channel only), a security group without inbound,
        and the launch template (or the operator's); returns the template's ARN."""
        self.instance_role = self._instance_role()
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="berth instances: no inbound; outbound for SSM and the blob download",
            allow_all_outbound=True,
        )
        image_id: str | None = None
        if settings.launch_template_id:
            self.launch_template_id = settings.launch_template_id
        else:
            self.launch_template_id, image_id = self._launch_template(settings)
        self._launch_resources(network, image_id)
        return Stack.of(self).format_arn(
            service="ec2", resource="launch-template", resource_name=self.launch_template_id
        )

    def _instance_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="berth instances: the SSM agent's Run Command channel only",
        )
        role.add_to_policy(iam.PolicyStatement(actions=SSM_AGENT_ACTIONS, resources=["*"]))
        instances = Stack.of(self).format_arn(service="ec2", resource="instance", resource_name="*")
        role.add_to_policy(iam.PolicyStatement(actions=SSM_REGISTER_ACTIONS, resources=[instances]))
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "The SSM agent's message channel actions (ec2messages, ssmmessages) have no "
            "resource-level permissions; only root (the agent) can reach the credentials: "
            "metadata is closed to other users.",
        )
        acknowledge_wildcard(
            role,
            instances,
            "The agent registers the instance it runs on, whose id is made at launch; this "
            "account's and region's instances only.",
        )
        return role

    def _launch_template(self, settings: InstancesSettings) -> tuple[str, str]:
        """berth's template (Amazon Linux 2023, IMDSv2, encrypted gp3 root); its id and the
        image's."""
        machine_image = ec2.MachineImage.latest_amazon_linux2023(
            cpu_type=(
                ec2.AmazonLinuxCpuType.ARM_64
                if settings.architecture == "arm64"
                else ec2.AmazonLinuxCpuType.X86_64
            )
        )
        image_id = machine_image.get_image(self).image_id
        template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            machine_image=machine_image,
            instance_type=ec2.InstanceType(settings.instance_type),
            role=self.instance_role,
            security_group=self.security_group,
            require_imdsv2=True,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        settings.root_volume_gb,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        # on the template and, through its tag specifications, each machine and volume
        Tags.of(template).add(CAPABILITY_TAG, "instances")
        return template.launch_template_id or "", image_id

    def _launch_resources(self, network: Network, image_id: str | None) -> None:
        """What a launch may use: berth's subnets always; berth's security group and image
        when berth made the template (an operator's own template brings its own, so any)."""
        stack = Stack.of(self)
        self.launch_pins: list[str] = [
            stack.format_arn(service="ec2", resource="subnet", resource_name=subnet)
            for subnet in network.task_subnet_ids
        ]
        self.launch_wildcards: list[str] = []
        if image_id is None:
            self.launch_wildcards = [
                stack.format_arn(service="ec2", resource="security-group", resource_name="*"),
                stack.format_arn(service="ec2", resource="image", resource_name="*", account=""),
            ]
            return
        self.launch_pins += [
            stack.format_arn(
                service="ec2",
                resource="security-group",
                resource_name=self.security_group.security_group_id,
            ),
            stack.format_arn(service="ec2", resource="image", resource_name=image_id, account=""),
        ]

    def _document(self, settings: InstancesSettings, name: str) -> str:
        """The Run Command document that fetches the blob and starts its script, fenced."""
        self.document = ssm.CfnDocument(
            self,
            "FetchAndRun",
            name=f"{name}-fetch-and-run",
            document_type="Command",
            document_format="JSON",
            update_method="NewVersion",
            content={
                "schemaVersion": "2.2",
                "description": "berth: download a Walrus blob, unzip it, start its script.sh",
                "parameters": {
                    "blobId": {
                        "type": "String",
                        "description": "Walrus blob (object) id, URL-safe base64",
                        "allowedPattern": BLOB_ID_PATTERN,
                        "interpolationType": "ENV_VAR",
                    },
                    "aggregatorUrl": {
                        "type": "String",
                        "description": "Walrus aggregator base URL",
                        "default": settings.aggregator_url,
                        "allowedPattern": AGGREGATOR_PATTERN,
                        "interpolationType": "ENV_VAR",
                    },
                },
                "mainSteps": [
                    {
                        "action": "aws:runShellScript",
                        "name": "fetchAndRun",
                        "inputs": {"timeoutSeconds": "900", "runCommand": FETCH_AND_RUN},
                    }
                ],
            },
        )
        return str(self.document.ref)

    def _grant_provisioning(
        self, function: lambda_.Function, launch_template_arn: str, document_name: str
    ) -> None:
        for statement in self._provisioning_statements(launch_template_arn, document_name):
            function.add_to_role_policy(statement)
        wildcards = [self._arn("ec2", "instance"), self._arn("ec2", "volume")]
        wildcards.append(self._arn("ec2", "network-interface"))
        for resource in wildcards + self.launch_wildcards:
            acknowledge_wildcard(
                function,
                resource,
                "RunInstances needs these resource types; every statement on them requires "
                "berth's launch template (and the berth tag on the instance).",
            )
        if function.role is not None:
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                "ssm:DescribeInstanceInformation and ssm:GetCommandInvocation (and X-Ray) have "
                "no resource-level permissions.",
            )

    def _arn(self, service: str, resource: str, name: str = "*") -> str:
        return Stack.of(self).format_arn(service=service, resource=resource, resource_name=name)

    def _provisioning_statements(
        self, launch_template_arn: str, document_name: str
    ) -> list[iam.PolicyStatement]:
        """Launch only from berth's template, tagged as berth's, into berth's subnets with its
        security group and image; run only berth's document on berth's instances."""
        instances, arn = self._arn("ec2", "instance"), self._arn
        from_template = {"ArnLike": {"ec2:LaunchTemplate": launch_template_arn}}
        return [
            iam.PolicyStatement(actions=["ec2:RunInstances"], resources=[launch_template_arn]),
            iam.PolicyStatement(
                actions=["ec2:RunInstances"],
                resources=[instances],
                conditions={
                    **from_template,
                    "StringEquals": {f"aws:RequestTag/{APP_TAG}": self.app_tag},
                },
            ),
            iam.PolicyStatement(
                actions=["ec2:RunInstances"],
                resources=[arn("ec2", "volume"), arn("ec2", "network-interface")],
                conditions=from_template,
            ),
            # a launch cannot override the template's network placement or AMI
            iam.PolicyStatement(
                actions=["ec2:RunInstances"],
                resources=[*self.launch_pins, *self.launch_wildcards],
                conditions=from_template,
            ),
            iam.PolicyStatement(
                actions=["ec2:CreateTags"],
                resources=[instances, arn("ec2", "volume")],
                conditions={"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.instance_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                actions=["ssm:SendCommand"], resources=[arn("ssm", "document", document_name)]
            ),
            iam.PolicyStatement(
                actions=["ssm:SendCommand"],
                resources=[instances],
                conditions={"StringEquals": {f"ssm:resourceTag/{APP_TAG}": self.app_tag}},
            ),
            iam.PolicyStatement(
                actions=["ssm:DescribeInstanceInformation", "ssm:GetCommandInvocation"],
                resources=["*"],
            ),
        ]

    def _grant_terminate_and_describe(self, function: lambda_.Function) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ec2:TerminateInstances"],
                resources=[
                    Stack.of(self).format_arn(service="ec2", resource="instance", resource_name="*")
                ],
                conditions={"StringEquals": {f"ec2:ResourceTag/{APP_TAG}": self.app_tag}},
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"])
        )
        acknowledge_wildcard(
            function,
            Stack.of(self).format_arn(service="ec2", resource="instance", resource_name="*"),
            "Terminates only instances tagged as berth's (condition on the berth:app tag).",
        )
        if function.role is not None:
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                "ec2:DescribeInstances, ssm:GetCommandInvocation (and X-Ray) have no "
                "resource-level permissions.",
            )

    def _workflow(
        self,
        settings: InstancesSettings,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        record_grace_seconds: int,
    ) -> sfn.StateMachine:
        """Launch, then poll the instance, its SSM agent and the command; any failure is
        recorded (retried until it is) before the execution fails."""
        failed = sfn.Fail(self, "Provisioning failed", error="ProvisioningFailed")
        record = self._invoke_step("Record failure", "fail", with_error=True)
        retry_anything(record)  # the record must not stay in a live phase
        ends = _Ends(
            failed=failed,
            record_failure=record.next(failed),
            ended=sfn.Succeed(self, "Ended", comment="the instance was deleted meanwhile"),
        )
        ready = sfn.Succeed(self, "Ready")
        poll = sfn.WaitTime.duration(Duration.seconds(settings.poll_seconds))
        command = self._polled("command", "check_command", ready, poll, ends)
        agent = self._polled("agent", "check_ssm", command, poll, ends)
        instance = self._polled("instance", "check_instance", agent, poll, ends)
        launch = self._invoke_step("Launch", "launch")
        launch.add_retry(  # the API starts the workflow, then records the instance
            errors=[NotRecordedYet.__name__],
            interval=Duration.seconds(2),
            backoff_rate=2,
            max_attempts=record_wait_attempts(record_grace_seconds),
        )
        launch.add_catch(ends.record_failure, errors=["States.ALL"], result_path="$.error")
        launch.next(
            sfn.Choice(self, "Launched?")
            .when(sfn.Condition.string_equals("$.result.outcome", "next"), instance)
            .when(sfn.Condition.string_equals("$.result.outcome", "stopped"), ends.ended)
            .otherwise(failed)
        )
        longest = (
            settings.running_timeout_seconds
            + settings.ssm_timeout_seconds
            + settings.command_timeout_seconds
        )
        machine = standard_state_machine(
            self,
            "Workflow",
            start=launch,
            comment="berth instance provisioning: launch, wait running, wait SSM, fetch blob",
            timeout=Duration.seconds(longest + 10 * 60),
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        acknowledge_wildcard(
            machine.role,
            f"{self.step_function.function_arn}:*",
            "CDK grants invoke on the step function's versions; the workflow calls only it.",
        )
        return machine

    def _invoke_step(
        self, state_id: str, name: str, with_error: bool = False
    ) -> tasks.LambdaInvoke:
        """One invocation of the step function; each step looks once and moves the record
        conditionally (the launch with a client token): running one again is harmless, even
        after its answer was lost."""
        payload: dict[str, Any] = {
            "step": name,
            "instance_id": sfn.JsonPath.string_at("$.instance_id"),
        }
        if with_error:
            payload["error"] = sfn.JsonPath.object_at("$.error")
        task = tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=self.step_function,
            payload=sfn.TaskInput.from_object(payload),
            result_selector={"outcome": sfn.JsonPath.string_at("$.Payload.outcome")},
            result_path="$.result",
            retry_on_service_exceptions=True,
        )
        retry_passing_trouble(task, rerunnable=True)
        return task

    def _polled(
        self, name: str, step_name: str, then: sfn.IChainable, poll: sfn.WaitTime, ends: _Ends
    ) -> sfn.Wait:
        """Wait, check, and again until the check says next (or done, stopped, failed)."""
        wait = sfn.Wait(self, f"Wait for {name}", time=poll)
        check = self._invoke_step(f"Check {name}", step_name)
        check.add_catch(ends.record_failure, errors=["States.ALL"], result_path="$.error")
        outcome = sfn.JsonPath.string_at("$.result.outcome")
        wait.next(check).next(
            sfn.Choice(self, f"{name.capitalize()} done?")
            .when(sfn.Condition.string_equals(outcome, "wait"), wait)
            .when(sfn.Condition.string_equals(outcome, "next"), then)
            .when(sfn.Condition.string_equals(outcome, "done"), then)
            .when(sfn.Condition.string_equals(outcome, "stopped"), ends.ended)
            .otherwise(ends.failed)
        )
        return wait
