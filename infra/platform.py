"""What every capability builds on, made once by the stack and handed to each capability's
construct whole: the network, the cluster and its images, the buckets, the Lambda baseline,
the REST API, live updates, settings, and the naming and lifetime rules of the deployment.

A capability construct reads what it needs from here (its own settings at
``platform.settings.<capability>``) instead of a dozen parameters, so adding a shared part
changes one object, not every construct's signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs

from infra.api import BerthApi
from infra.functions import LambdaBaseline
from infra.live import LiveUpdates
from infra.network import Network
from infra.settings import Settings
from infra.storage import Storage


@dataclass(frozen=True)
class Platform:
    settings: Settings
    network: Network
    cluster: ecs.ICluster
    images: Mapping[str, ecr_assets.DockerImageAsset]
    """The session profiles' images, by image directory."""
    storage: Storage
    """The result, failure and access-log buckets."""
    baseline: LambdaBaseline
    api: BerthApi
    live: LiveUpdates
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy

    @property
    def name(self) -> str:
        """The deployment's prefix: every physical name and family starts with it."""
        return self.settings.prefix
