"""Storage: the jobs' results and failures buckets and their access-log bucket,
and the one way berth makes a bucket or a table."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.settings import StorageSettings


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    removal_policy: RemovalPolicy,
    access_logs: s3.IBucket | None,
    log_prefix: str = "",
    lifecycle_rules: list[s3.LifecycleRule] | None = None,
    versioned: bool = True,
) -> s3.Bucket:
    """The one way berth makes a bucket: encrypted, private, TLS-only, versioned, logged."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=versioned,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=log_prefix or None,
        lifecycle_rules=lifecycle_rules,
        removal_policy=removal_policy,
        auto_delete_objects=False,
    )


def grant_objects(
    bucket: s3.IBucket, grantee: iam.IGrantable, prefix: str, actions: Sequence[str]
) -> str:
    """Exactly ``actions`` on the objects under ``prefix`` (CDK's grant_* add more); returns
    the resource ARN pattern so callers can acknowledge its wildcard."""
    resource = bucket.arn_for_objects(f"{prefix}*")
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=list(actions), resources=[resource])
    )
    return resource


def secure_table(
    scope: Construct,
    construct_id: str,
    *,
    removal_policy: RemovalPolicy,
    partition_key: str = "pk",
    sort_key: str | None = None,
    ttl_attribute: str | None = None,
) -> dynamodb.Table:
    """The one way berth makes a table: on-demand, PITR, KMS-encrypted, string keys."""
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=(
            dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING)
            if sort_key
            else None
        ),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=ttl_attribute,
        removal_policy=removal_policy,
    )


def add_listing_index(table: dynamodb.Table, index: str, partition: str) -> None:
    """The one way berth lists a table: ``partition`` (the owner, a project) and
    ``created_at`` (newest first when read backwards)."""
    table.add_global_secondary_index(
        index_name=index,
        partition_key=dynamodb.Attribute(name=partition, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="created_at", type=dynamodb.AttributeType.NUMBER),
        projection_type=dynamodb.ProjectionType.ALL,
    )


class Storage(Construct):
    """Exposes ``results_bucket``, ``failures_bucket`` and ``access_logs_bucket``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StorageSettings,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=removal_policy,
        )
        self.results_bucket = secure_bucket(
            self,
            "Results",
            removal_policy=removal_policy,
            access_logs=self.access_logs_bucket,
            log_prefix="results/",
            lifecycle_rules=self._lifecycle(settings),
        )
        self.failures_bucket = secure_bucket(
            self,
            "Failures",
            removal_policy=removal_policy,
            access_logs=self.access_logs_bucket,
            log_prefix="failures/",
            lifecycle_rules=self._lifecycle(settings),
        )
        CfnOutput(
            self,
            "ResultsBucketName",
            key="ResultsBucketName",
            value=self.results_bucket.bucket_name,
            description="Bucket that receives results/<job_id>.zip",
        )
        CfnOutput(
            self,
            "FailuresBucketName",
            key="FailuresBucketName",
            value=self.failures_bucket.bucket_name,
            description="Bucket that receives failures/<job_id>.zip",
        )

    @staticmethod
    def _lifecycle(settings: StorageSettings) -> list[s3.LifecycleRule]:
        return [
            s3.LifecycleRule(
                id="expire",
                expiration=(
                    Duration.days(settings.object_expiry_days)
                    if settings.object_expiry_days
                    else None
                ),
                noncurrent_version_expiration=Duration.days(
                    settings.noncurrent_version_expiry_days
                ),
                abort_incomplete_multipart_upload_after=Duration.days(7),
            )
        ]
