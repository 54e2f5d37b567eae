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
from infra.platform import Platform
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
    """The platform first (network, compute, buckets, functions, the APIs), then each
    capability on it, then the usage ledger that meters them."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any):
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.platform = self._platform(settings)
        self.network, self.api = self.platform.network, self.platform.api
        self.routing = self._routing(self.platform)
        self.sessions = Sessions(self, "Sessions", self.platform, routing=self.routing)
        self.jobs = Jobs(self, "Jobs", self.platform)
        self.instances = Instances(self, "Instances", self.platform)
        self.workers = WorkerFleet(self, "Workers", self.platform)
        self.usage = self._usage(self.platform)
        Tags.of(self).add("berth:app", settings.prefix)

    def _platform(self, settings: Settings) -> Platform:
        removal = (
            RemovalPolicy.RETAIN
            if settings.storage.removal_policy == "retain"
            else RemovalPolicy.DESTROY
        )
        retention = log_retention(settings.logs.retention_days)
        profiles = settings.sessions.profiles
        network = Network(
            self, "Network", settings=settings.vpc, log_retention=retention, removal_policy=removal
        )
        storage = Storage(self, "Storage", settings=settings.storage, removal_policy=removal)
        compute = ComputeCore(
            self,
            "Compute",
            network=network,
            image_dirs=[profile.image for profile in profiles.values()],
        )
        baseline = LambdaBaseline(
            self,
            "Functions",
            settings=settings.functions,
            log_level=settings.logs.level,
            log_retention=retention,
            removal_policy=removal,
        )
        api = self._rest_api(settings, baseline, retention, removal)
        live = LiveUpdates(
            self,
            "Live",
            settings=settings.api,
            baseline=baseline,
            api=api,
            log_retention=retention,
            removal_policy=removal,
            name=settings.prefix,
        )
        return Platform(
            settings=settings,
            network=network,
            cluster=compute.cluster,
            images=compute.images,
            storage=storage,
            baseline=baseline,
            api=api,
            live=live,
            log_retention=retention,
            removal_policy=removal,
        )

    def _rest_api(
        self,
        settings: Settings,
        baseline: LambdaBaseline,
        retention: logs.RetentionDays,
        removal: RemovalPolicy,
    ) -> BerthApi:
        """The REST API, with the deployment's names for its OpenAPI document."""
        profiles = settings.sessions.profiles
        return BerthApi(
            self,
            "Api",
            settings=settings.api,
            baseline=baseline,
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

    def _routing(self, platform: Platform) -> SessionRouting | None:
        """The opt-in load balancer that reaches sessions from a browser."""
        if platform.settings.routing.mode != "alb":
            return None
        return SessionRouting(
            self,
            "Routing",
            settings=platform.settings.routing,
            network=platform.network,
            access_logs=platform.storage.access_logs_bucket,
            name=platform.name,
        )

    def _usage(self, platform: Platform) -> Usage:
        """The ledger; each capability meters its own compute and checks budgets before
        starting more."""
        usage = Usage(self, "Usage", platform)
        usage.meter(
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
        return usage
