"""Compute core: the ECS cluster every Fargate task runs in, and the container images.

Images are ``DockerImageAsset``s built from ``containers/<dir>``: synth only copies the
directory into cdk.out (no Docker daemon needed); ``cdk deploy`` builds and pushes them.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from infra.network import Network
from infra.settings import CONTAINERS_DIR


class ComputeCore(Construct):
    """Exposes ``cluster`` and ``images`` (container dir name → image asset)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        image_dirs: Iterable[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )
        self.images: dict[str, ecr_assets.DockerImageAsset] = {
            name: ecr_assets.DockerImageAsset(
                self,
                f"Image-{name}",
                directory=str(CONTAINERS_DIR / name),
                platform=ecr_assets.Platform.LINUX_ARM64,
                exclude=["**/__pycache__", "**/*.pyc"],
            )
            for name in sorted(set(image_dirs))
        }
