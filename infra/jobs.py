"""Jobs: a Step Functions chooser that runs each job on Lambda or Fargate.

The state machine trusts nothing but the catalogue in the settings: its first state checks
the input's shape and the job name; an unknown name can never reach a runtime. Every failure
(bad input, unknown job, Lambda error, task error, non-zero exit, timeout) goes through the
failure writer, so each execution leaves ``results/<id>.zip`` or ``failures/<id>.zip``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

import berth_jobs.environment as runner_env_names
from infra.compute import acknowledge_task_definition, cluster_task_arns, fargate_task_definition
from infra.events import deliver_events
from infra.functions import AWS_RETRIES, LambdaBaseline
from infra.nag import acknowledge_wildcard
from infra.network import Network
from infra.platform import Platform
from infra.settings import CONTAINERS_DIR, JobSettings, JobsSettings
from infra.storage import add_listing_index, grant_objects, secure_table
from infra.workflow import retry_anything, retry_passing_trouble, standard_state_machine
from jobs.config import JobsConfig, JobSpec
from jobs.repository import BY_USER
from jobs.routes import router as jobs_router
from shared.api import routes_of

JOBS_IMAGE_DIR = CONTAINERS_DIR / "jobs"
CONTAINER_NAME = "job"
FAILURE_HANDLER = "berth_jobs.failure.handler"
STRING = dynamodb.AttributeType.STRING


ECS_TRANSIENT_ERRORS = [
    "ECS.AmazonECSException",
    "ECS.ServerException",
    "ECS.LimitExceededException",
    "ECS.ThrottlingException",
]


JOB_ID = sfn.JsonPath.string_at("$$.Execution.Name")
"""A job's id is its execution's name."""


class Jobs(Construct):
    """Exposes ``state_machine``, ``job_function``, ``failure_function``,
    ``task_definition`` and ``table``."""

    def __init__(self, scope: Construct, construct_id: str, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        self.platform = platform
        self.settings = settings = platform.settings.jobs
        self.results_bucket = platform.storage.results_bucket
        self.failures_bucket = platform.storage.failures_bucket
        self.job_function, self.failure_function = self._lambda_runtime(settings.catalogue)
        self.task_definition = self._task_definition(
            {k: v for k, v in settings.catalogue.items() if v.runtime == "fargate"},
            self._runner_environment(),
            platform.log_retention,
            platform.removal_policy,
            platform.name,
        )
        self._grant_runners()
        self.state_machine = self._state_machine(
            settings.catalogue,
            platform.network,
            platform.cluster,
            platform.log_retention,
            platform.removal_policy,
        )
        self._tighten_state_machine_policy(platform.cluster)
        self.table = secure_table(self, "Table", removal_policy=platform.removal_policy)
        add_listing_index(self.table, BY_USER, "user")
        self.api_function = self._api(settings)
        self.ends_function = self._execution_ends(platform.baseline)
        CfnOutput(
            self,
            "StateMachineArn",
            key="JobsStateMachineArn",
            value=self.state_machine.state_machine_arn,
            description="Start jobs directly: aws stepfunctions start-execution",
        )

    def _runner_environment(self) -> dict[str, str]:
        return {
            runner_env_names.RESULTS_BUCKET: self.results_bucket.bucket_name,
            runner_env_names.FAILURES_BUCKET: self.failures_bucket.bucket_name,
        }

    def _lambda_runtime(
        self, catalogue: Mapping[str, JobSettings]
    ) -> tuple[lambda_.Function, lambda_.Function]:
        """The runner of the catalogue's Lambda jobs, and the writer of every failure ZIP."""
        lambda_jobs = {k: v for k, v in catalogue.items() if v.runtime == "lambda"}
        baseline, runner_env = self.platform.baseline, self._runner_environment()
        job_function = baseline.image_function(
            self,
            "JobFunction",
            code=lambda_.Code.from_asset_image(
                str(JOBS_IMAGE_DIR),
                target="lambda-image",
                platform=ecr_assets.Platform.LINUX_ARM64,
                exclude=["**/__pycache__", "**/*.pyc"],
            ),
            service="jobs-runner",
            description="Runs the catalogue's Lambda jobs (sized for the largest)",
            environment=runner_env,
            timeout=Duration.seconds(
                max((j.timeout_seconds for j in lambda_jobs.values()), default=60)
            ),
            memory_mb=self._lambda_memory(lambda_jobs),
        )
        failure_function = baseline.image_function(
            self,
            "FailureWriter",
            code=lambda_.Code.from_asset_image(
                str(JOBS_IMAGE_DIR),
                target="lambda-image",
                platform=ecr_assets.Platform.LINUX_ARM64,
                exclude=["**/__pycache__", "**/*.pyc"],
                cmd=[FAILURE_HANDLER],
            ),
            service="jobs-failures",
            description="Writes failures/<job_id>.zip on every failed job",
            environment=runner_env,
            timeout=Duration.seconds(60),
            memory_mb=256,
        )
        return job_function, failure_function

    def _grant_runners(self) -> None:
        """Runners write results and failures; the failure writer also reads them."""
        results, failures = self.results_bucket, self.failures_bucket
        runners: list[lambda_.Function | iam.IRole] = [
            self.job_function,
            self.task_definition.task_role,
        ]
        for runner in runners:
            self._grant(runner, results, "results/", ["s3:PutObject"])
            self._grant(runner, failures, "failures/", ["s3:PutObject"])
        self._grant(self.failure_function, failures, "failures/", ["s3:GetObject", "s3:PutObject"])
        # to see whether a job whose answer was lost had stored its result after all
        self._grant(self.failure_function, results, "results/", ["s3:GetObject"])

    def _api(self, settings: JobsSettings) -> lambda_.Function:
        """Start a job, read it (with presigned result URLs), list them."""
        results, failures = self.results_bucket, self.failures_bucket
        self.environment = JobsConfig.environment(
            jobs_table=self.table.table_name,
            state_machine_arn=self.state_machine.state_machine_arn,
            results_bucket=results.bucket_name,
            failures_bucket=failures.bucket_name,
            catalogue=Stack.of(self).to_json_string(
                {k: self._spec(v).model_dump() for k, v in settings.catalogue.items()}
            ),
            result_url_seconds=settings.result_url_seconds,
        )
        function = self.platform.baseline.function(
            self,
            "Api",
            handler="jobs.handler.handler",
            service="jobs",
            description="Jobs API: start, status with presigned result URLs, list",
            environment=self.environment,
        )
        self.table.grant_read_write_data(function)
        acknowledge_wildcard(
            function,
            f"{self.table.table_arn}/index/*",
            "Covers only this table's own index (by_user).",
        )
        self.state_machine.grant_start_execution(function)
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution"], resources=[self._execution_arns()]
            )
        )
        acknowledge_wildcard(
            function,
            self._execution_arns(),
            "Execution names are job ids made at run time; scoped to this state machine.",
        )
        self._grant(function, results, "results/", ["s3:GetObject"])
        self._grant(function, failures, "failures/", ["s3:GetObject"])
        self.platform.api.add_routes(function, routes_of(jobs_router))
        return function

    def _spec(self, job: JobSettings) -> JobSpec:
        """What the functions know of a job: where it runs and what it is billed for (a
        Lambda job: the shared function's memory)."""
        if job.runtime == "lambda":
            lambda_jobs = {
                k: j for k, j in self.settings.catalogue.items() if j.runtime == "lambda"
            }
            return JobSpec(runtime="lambda", memory=self._lambda_memory(lambda_jobs))
        return JobSpec(runtime="fargate", memory=job.memory, cpu=job.cpu)

    @staticmethod
    def _lambda_memory(lambda_jobs: dict[str, JobSettings]) -> int:
        """The shared Lambda runner is sized for the largest Lambda job."""
        return max((j.memory for j in lambda_jobs.values()), default=512)

    def _execution_ends(self, baseline: LambdaBaseline) -> lambda_.Function:
        """Each ended execution → its job's usage (``jobs.on_execution_end``)."""
        function = baseline.function(
            self,
            "ExecutionEnds",
            handler="jobs.on_execution_end.handler",
            service="jobs-usage",
            description="Records each ended job execution's time as its user's usage",
            environment=self.environment,
        )
        function.add_to_role_policy(  # its record, by key
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[self.table.table_arn])
        )
        deliver_events(
            self,
            "ExecutionEndRule",
            dead_letter_id="ExecutionEndsDlq",
            description="berth: the jobs chooser's executions, ended",
            source="aws.states",
            detail_type="Step Functions Execution Status Change",
            detail={
                "stateMachineArn": [self.state_machine.state_machine_arn],
                "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
            },
            function=function,
        )
        return function

    def _grant(
        self,
        target: lambda_.Function | iam.IRole,
        bucket: s3.IBucket,
        prefix: str,
        actions: list[str],
    ) -> None:
        resource = grant_objects(bucket, target, prefix, actions)
        acknowledge_wildcard(
            target,
            resource,
            "Object keys are job ids made at run time; scoped to one prefix of one bucket.",
        )

    def _tighten_state_machine_policy(self, cluster: ecs.ICluster) -> None:
        """CDK's task integrations grant more than the chooser uses: invoke on every
        version (``<fn>:*``; berth invokes the unqualified function) and ECS
        Describe/StopTask on ``*`` (berth's tasks run in one cluster). Rewrite the role's
        policy to exactly what runs; the rest of ``*`` is what AWS requires (log delivery,
        X-Ray)."""
        policy = self.state_machine.role.node.find_child("DefaultPolicy")
        cfn_policy = policy.node.default_child
        if not isinstance(cfn_policy, iam.CfnPolicy):
            raise TypeError("the state machine role has no CloudFormation policy")
        stack = Stack.of(self)
        document = stack.resolve(policy.document)  # type: ignore[attr-defined]
        task_actions = {"ecs:DescribeTasks", "ecs:StopTask"}
        statements = []
        for statement in document["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else list(actions)
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            if actions == ["lambda:InvokeFunction"]:
                resources = [r for r in resources if "Fn::Join" not in r]
            if resources == ["*"]:
                actions = [a for a in actions if a not in task_actions]
            conditions = dict(statement.get("Condition") or {})
            if "ecs:RunTask" in actions or "iam:PassRole" in actions:
                if len(actions) != 1:
                    raise ValueError(f"expected RunTask/PassRole in a statement alone: {actions}")
                conditions |= (
                    {"ArnEquals": {"ecs:cluster": stack.resolve(cluster.cluster_arn)}}
                    if actions == ["ecs:RunTask"]
                    else {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
                )
            if actions:
                statements.append(
                    {
                        **statement,
                        "Action": actions if len(actions) > 1 else actions[0],
                        "Resource": resources if len(resources) > 1 else resources[0],
                        **({"Condition": conditions} if conditions else {}),
                    }
                )
        statements.append(
            {
                "Action": sorted(task_actions),
                "Effect": "Allow",
                "Resource": stack.resolve(cluster_task_arns(self, cluster)),
            }
        )
        cfn_policy.policy_document = {"Version": "2012-10-17", "Statement": statements}
        acknowledge_wildcard(
            self.state_machine.role,
            cluster_task_arns(self, cluster),
            "The .sync integration polls and stops the task it started; task ids are made at "
            "run time, scoped to berth's cluster.",
        )

    def _execution_arns(self) -> str:
        return Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _task_definition(
        self,
        fargate_jobs: dict[str, JobSettings],
        runner_env: dict[str, str],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        name: str,
    ) -> ecs.FargateTaskDefinition:
        # Sized for the largest Fargate job; each job's own size comes as a RunTask override.
        largest = max(fargate_jobs.values(), key=lambda j: (j.cpu, j.memory), default=None)
        cpu, memory = (largest.cpu, largest.memory) if largest else (256, 512)
        log_group = logs.LogGroup(
            self, "JobLogs", retention=log_retention, removal_policy=removal_policy
        )
        definition = fargate_task_definition(
            self,
            "JobTask",
            family=f"{name}-job-runner",
            capability="jobs",
            cpu=cpu,
            memory=memory,
        )
        definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=ecs.ContainerImage.from_asset(
                str(JOBS_IMAGE_DIR),
                target="fargate-image",
                platform=ecr_assets.Platform.LINUX_ARM64,
                exclude=["**/__pycache__", "**/*.pyc"],
            ),
            memory_limit_mib=memory,
            environment={
                **AWS_RETRIES,
                **runner_env,
                runner_env_names.LOG_GROUP: log_group.log_group_name,
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="job", log_group=log_group),
        )
        acknowledge_task_definition(
            definition,
            "The environment holds bucket names and the log group (not secrets); the job "
            "itself comes as RunTask overrides.",
        )
        return definition

    def _state_machine(
        self,
        catalogue: dict[str, JobSettings],
        network: Network,
        cluster: ecs.ICluster,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> sfn.StateMachine:
        """Valid input? → Known job? (the catalogue's runtime and limits) → Choose runtime →
        run on Lambda | on Fargate → succeeded, or the failure ZIP and Fail."""
        succeeded = sfn.Succeed(self, "Job succeeded")
        write_failure = self._failure_path(succeeded)
        choose_runtime = (
            sfn.Choice(self, "Choose runtime")
            .when(
                sfn.Condition.string_equals("$.runtime", "lambda"),
                self._run_on_lambda(write_failure, succeeded),
            )
            .when(
                sfn.Condition.string_equals("$.runtime", "fargate"),
                self._run_on_fargate(network, cluster, write_failure, succeeded),
            )
        )
        validate = self._entry(catalogue, choose_runtime, write_failure)
        longest = max(j.timeout_seconds for j in catalogue.values())
        return standard_state_machine(
            self,
            "StateMachine",
            start=validate,
            comment="berth job chooser: Lambda or Fargate by job name, result or failure ZIP",
            timeout=Duration.seconds(longest + 15 * 60),
            log_retention=log_retention,
            removal_policy=removal_policy,
        )

    def _failure_path(self, succeeded: sfn.IChainable) -> sfn.Chain:
        """Every failure's way out: write the failure ZIP, then Fail — or, when the job's
        result is stored after all (its runner's answer was lost), succeed."""
        # A Fail state may not raise "States.*" errors (Step Functions' own): one name, and
        # the original error and cause in the message.
        failed = sfn.Fail(
            self,
            "Job failed",
            error="JobFailed",
            cause_path=sfn.JsonPath.format(
                "{}: {}",
                sfn.JsonPath.string_at("$.error.Error"),
                sfn.JsonPath.string_at("$.error.Cause"),
            ),
        )
        write_failure = tasks.LambdaInvoke(
            self,
            "Write failure ZIP",
            lambda_function=self.failure_function,
            payload=sfn.TaskInput.from_object(
                {
                    "job_id": sfn.JsonPath.string_at("$.job_id"),
                    "name": sfn.JsonPath.string_at("$.name"),
                    "input": sfn.JsonPath.object_at("$.input"),
                    "error": sfn.JsonPath.object_at("$.error"),
                    "logs": sfn.JsonPath.format(
                        "Step Functions execution {}", sfn.JsonPath.string_at("$$.Execution.Id")
                    ),
                }
            ),
            # {"failure_key"} — or {"result_key"} when the result is stored after all
            result_selector={"written": sfn.JsonPath.object_at("$.Payload")},
            result_path="$.failure",
            retry_on_service_exceptions=True,
        )
        retry_anything(write_failure)  # the failure ZIP is the one trace a failed job leaves
        return write_failure.next(
            sfn.Choice(self, "Result stored after all?")
            .when(sfn.Condition.is_present("$.failure.written.result_key"), succeeded)
            .otherwise(failed)
        )

    def _run_on_lambda(
        self, write_failure: sfn.IChainable, succeeded: sfn.IChainable
    ) -> tasks.LambdaInvoke:
        run_on_lambda = tasks.LambdaInvoke(
            self,
            "Run on Lambda",
            lambda_function=self.job_function,
            payload=sfn.TaskInput.from_object(
                {
                    "job_id": sfn.JsonPath.string_at("$.job_id"),
                    "name": sfn.JsonPath.string_at("$.name"),
                    "input": sfn.JsonPath.object_at("$.input"),
                }
            ),
            result_selector={"result_key": sfn.JsonPath.string_at("$.Payload.result_key")},
            result_path="$.result",
            task_timeout=sfn.Timeout.at("$.timeout_seconds"),
            retry_on_service_exceptions=True,
        )
        retry_passing_trouble(run_on_lambda)  # a job's result is stored under one key
        run_on_lambda.add_catch(write_failure, errors=["States.ALL"], result_path="$.error")
        run_on_lambda.next(succeeded)

        return run_on_lambda

    def _run_on_fargate(
        self,
        network: Network,
        cluster: ecs.ICluster,
        write_failure: sfn.IChainable,
        succeeded: sfn.IChainable,
    ) -> tasks.EcsRunTask:
        """RunTask.sync with the job in container overrides; a non-zero exit is a failure
        even where .sync reports success."""
        run_on_fargate = self._run_task(network, cluster)
        run_on_fargate.add_retry(
            errors=ECS_TRANSIENT_ERRORS,
            interval=Duration.seconds(5),
            backoff_rate=2,
            max_attempts=4,
            jitter_strategy=sfn.JitterType.FULL,
        )
        run_on_fargate.add_catch(write_failure, errors=["States.ALL"], result_path="$.error")
        # The task's one container, taken out with an intrinsic so the Choice compares a
        # plain field (an indexed path in a Choice is evaluated as a list by some runners).
        first_container = sfn.Pass(
            self,
            "Job container",
            parameters={
                "container": sfn.JsonPath.array_get_item(
                    sfn.JsonPath.list_at("$.task.Containers"), 0
                )
            },
            result_path="$.job",
        )
        run_on_fargate.next(first_container).next(
            sfn.Choice(self, "Exit code 0?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.job.container.ExitCode"),
                    sfn.Condition.number_equals("$.job.container.ExitCode", 0),
                ),
                succeeded,
            )
            .otherwise(self._non_zero_exit(write_failure))
        )
        return run_on_fargate

    def _run_task(self, network: Network, cluster: ecs.ICluster) -> tasks.EcsRunTask:
        """The job's task: its id, name and input as the container's environment."""
        container = self.task_definition.default_container
        if container is None:
            raise ValueError("the job task definition has no container")
        variables = {
            runner_env_names.JOB_ID: sfn.JsonPath.string_at("$.job_id"),
            runner_env_names.JOB_NAME: sfn.JsonPath.string_at("$.name"),
            runner_env_names.JOB_INPUT: sfn.JsonPath.json_to_string(
                sfn.JsonPath.object_at("$.input")
            ),
        }
        return tasks.EcsRunTask(
            self,
            "Run on Fargate",
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            cluster=cluster,
            task_definition=self.task_definition,
            launch_target=tasks.EcsFargateLaunchTarget(
                platform_version=ecs.FargatePlatformVersion.LATEST
            ),
            assign_public_ip=network.assign_public_ip,
            subnets=network.vpc_subnets(),
            security_groups=[
                network.workload_security_group(
                    self, "TaskSecurityGroup", description="berth job tasks: no inbound"
                )
            ],
            cpu=sfn.JsonPath.string_at("$.cpu"),
            memory_mib=sfn.JsonPath.string_at("$.memory"),
            container_overrides=[
                tasks.ContainerOverride(
                    container_definition=container,
                    environment=[
                        tasks.TaskEnvironmentVariable(name=name, value=value)
                        for name, value in variables.items()
                    ],
                )
            ],
            result_path="$.task",
            task_timeout=sfn.Timeout.at("$.timeout_seconds"),
            propagated_tag_source=ecs.PropagatedTagSource.TASK_DEFINITION,
        )

    def _non_zero_exit(self, write_failure: sfn.IChainable) -> sfn.Pass:
        """A job whose container exited non-zero: its failure, with the container's state."""
        non_zero = sfn.Pass(
            self,
            "Non-zero exit",
            parameters={
                "job_id": sfn.JsonPath.string_at("$.job_id"),
                "name": sfn.JsonPath.string_at("$.name"),
                "input": sfn.JsonPath.object_at("$.input"),
                "error": {
                    "Error": "NonZeroExit",
                    "Cause": sfn.JsonPath.format(
                        "the job container exited non-zero: {}",
                        sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$.job.container")),
                    ),
                },
            },
        )
        non_zero.next(write_failure)
        return non_zero

    def _entry(
        self,
        catalogue: dict[str, JobSettings],
        choose_runtime: sfn.IChainable,
        write_failure: sfn.IChainable,
    ) -> sfn.Choice:
        """The input's shape, then its name against the catalogue: the runtime and limits
        come from the catalogue, never from the caller."""
        pick_job = self._pick_job(catalogue, choose_runtime, write_failure)
        return (
            sfn.Choice(self, "Valid input?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present("$.name"),
                    sfn.Condition.is_string("$.name"),
                    sfn.Condition.is_present("$.input"),
                ),
                pick_job,
            )
            .otherwise(
                self._rejected(
                    "Invalid input",
                    "InvalidInput",
                    'the input must be {"name": "<job>", "input": {...}}',
                    name="",
                ).next(write_failure)
            )
        )

    def _pick_job(
        self,
        catalogue: dict[str, JobSettings],
        choose_runtime: sfn.IChainable,
        write_failure: sfn.IChainable,
    ) -> sfn.Choice:
        """One branch per catalogue entry, carrying its runtime and limits; else UnknownJob."""
        pick_job = sfn.Choice(self, "Known job?")
        for job_name, job in sorted(catalogue.items()):
            pick_job.when(
                sfn.Condition.string_equals("$.name", job_name),
                sfn.Pass(
                    self,
                    f"Job {job_name}",
                    comment="runtime and limits from the catalogue, never from the caller",
                    parameters={
                        "job_id": JOB_ID,
                        "name": job_name,
                        "input": sfn.JsonPath.object_at("$.input"),
                        "runtime": job.runtime,
                        "timeout_seconds": job.timeout_seconds,
                        "cpu": str(job.cpu),
                        "memory": str(job.memory),
                    },
                ).next(choose_runtime),
            )
        pick_job.otherwise(
            self._rejected(
                "Unknown job",
                "UnknownJob",
                "the job name is not in the deployment's catalogue",
                name=None,
            ).next(write_failure)
        )
        return pick_job

    def _rejected(self, state_id: str, error: str, cause: str, name: str | None) -> sfn.Pass:
        """A job refused before it ran, shaped as a failure for the failure writer."""
        return sfn.Pass(
            self,
            state_id,
            parameters={
                "job_id": JOB_ID,
                "name": sfn.JsonPath.string_at("$.name") if name is None else name,
                "input": sfn.JsonPath.object_at("$.input" if name is None else "$"),
                "error": {"Error": error, "Cause": cause},
            },
        )
