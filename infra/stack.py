"""The berth stack: composes the capability constructs, grants across them, attaches cdk-nag."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.api import BerthApi
from infra.compute import ComputeCore
from infra.functions import LambdaBaseline
from infra.instances import Instances
from infra.jobs import Jobs
from infra.live import LiveUpdates
from infra.network import Network
from infra.routing import SessionRouting
from infra.sessions import Sessions
from infra.settings import LOG_RETENTION_DAYS, Settings
from infra.storage import Storage
from infra.usage import Usage
from infra.workers import WorkerFleet
from openapi.config import OpenApiConfig


def log_retention(days: int) -> logs.RetentionDays:
    """CloudWatch's retention enum for a number of days (settings allow only valid ones)."""
    finite = [member for member in logs.RetentionDays if member.name != "INFINITE"]
    return dict(zip(LOG_RETENTION_DAYS, finite, strict=True))[days]


class BerthStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any):
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        removal = (
            RemovalPolicy.RETAIN
            if settings.storage.removal_policy == "retain"
            else RemovalPolicy.DESTROY
        )
        retention = log_retention(settings.logs.retention_days)
        profiles = settings.sessions.profiles

        self.network = Network(
            self,
            "Network",
            settings=settings.vpc,
            log_retention=retention,
            removal_policy=removal,
        )
        self.storage = Storage(self, "Storage", settings=settings.storage, removal_policy=removal)
        self.compute = ComputeCore(
            self,
            "Compute",
            network=self.network,
            image_dirs=[profile.image for profile in profiles.values()],
        )
        self.baseline = LambdaBaseline(
            self,
            "Functions",
            settings=settings.functions,
            log_level=settings.logs.level,
            log_retention=retention,
            removal_policy=removal,
        )
        self.api = BerthApi(
            self,
            "Api",
            settings=settings.api,
            baseline=self.baseline,
            document=OpenApiConfig(
                profiles=sorted(profiles),
                jobs=sorted(settings.jobs.catalogue),
                max_ttl_seconds=max(p.max_ttl_seconds for p in profiles.values()),
                max_file_bytes=settings.workers.max_file_bytes,
            ),
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        self.live = LiveUpdates(
            self,
            "Live",
            settings=settings.api,
            baseline=self.baseline,
            api=self.api,
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        self.routing = (
            SessionRouting(
                self,
                "Routing",
                settings=settings.routing,
                network=self.network,
                access_logs=self.storage.access_logs_bucket,
                name=settings.prefix,
            )
            if settings.routing.mode == "alb"
            else None
        )
        self.sessions = Sessions(
            self,
            "Sessions",
            settings=settings.sessions,
            limits=settings.limits,
            network=self.network,
            ingress_cidrs=settings.vpc.ingress_cidrs,
            routing=self.routing,
            max_routes=settings.routing.max_routes,
            cluster=self.compute.cluster,
            images=self.compute.images,
            baseline=self.baseline,
            api=self.api,
            live=self.live,
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        self.jobs = Jobs(
            self,
            "Jobs",
            settings=settings.jobs,
            network=self.network,
            cluster=self.compute.cluster,
            results_bucket=self.storage.results_bucket,
            failures_bucket=self.storage.failures_bucket,
            baseline=self.baseline,
            api=self.api,
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        self.instances = Instances(
            self,
            "Instances",
            settings=settings.instances,
            max_per_user=settings.limits.max_instances_per_user,
            network=self.network,
            baseline=self.baseline,
            api=self.api,
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        self.workers = WorkerFleet(
            self,
            "Workers",
            settings=settings.workers,
            max_tasks=settings.limits.max_worker_tasks,
            max_pending_per_user=settings.limits.max_queued_commands_per_user,
            max_workers_per_user=settings.limits.max_workers_per_user,
            noncurrent_version_expiry_days=settings.storage.noncurrent_version_expiry_days,
            network=self.network,
            cluster=self.compute.cluster,
            live=self.live,
            access_logs=self.storage.access_logs_bucket,
            baseline=self.baseline,
            api=self.api,
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        self.usage = Usage(
            self,
            "Usage",
            settings=settings.usage,
            limits=settings.limits,
            pricing=settings.pricing,
            baseline=self.baseline,
            api=self.api,
            removal_policy=removal,
        )
        # each capability meters its own compute and checks budgets before starting more
        self.usage.meter(
            [
                self.sessions.api_function,
                self.sessions.events_function,
                self.sessions.reaper_function,
                self.jobs.api_function,
                self.jobs.ends_function,
                self.instances.api_function,
                self.instances.state_function,
                self.workers.api_function,
                self.workers.stopped_function,
                self.workers.reconciler,
            ]
        )
        Tags.of(self).add("berth:app", settings.prefix)
