"""Usage: the ledger table every capability records its users' compute in, the API that reads
it (``GET /usage`` for a caller, ``/admin/...`` for the operator's named principals) and the
grants that let a capability's functions meter and check budgets.

The admin routes are walled twice: the REST API's resource policy denies ``/admin/*`` to
every principal but ``usage.admins`` (an explicit deny no identity policy overrides), and the
function checks the caller against the same list. ``admin_policy`` is the managed policy an
operator attaches to the admins' roles.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import CfnOutput
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.api import BerthApi
from infra.nag import acknowledge_wildcard
from infra.platform import Platform
from infra.storage import secure_table
from shared.api import routes_of
from shared.usage import UsageConfig
from usage.config import UsageApiConfig, principal_of
from usage.routes import router as usage_router

ADMIN_PATH = "/admin/*"


class Usage(Construct):
    """Exposes ``table``, ``function`` and ``admin_policy``."""

    def __init__(self, scope: Construct, construct_id: str, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        self.platform = platform
        settings, limits = platform.settings.usage, platform.settings.limits
        pricing, baseline, api = platform.settings.pricing, platform.baseline, platform.api
        removal_policy = platform.removal_policy
        self.table = secure_table(self, "Table", removal_policy=removal_policy, sort_key="sk")
        self.environment = UsageConfig.environment(
            usage_table=self.table.table_name,
            pricing=pricing.model_dump_json(),
            monthly_budget_usd=limits.monthly_budget_usd,
            stop_over_budget=limits.stop_over_budget,
        )
        self.function = baseline.function(
            self,
            "Api",
            handler="usage.handler.handler",
            service="usage",
            description="Usage API: a caller's usage; the operator's users, spend and budgets",
            environment={
                **self.environment,
                **UsageApiConfig.environment(admins=settings.admins),
            },
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:Query",
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[self.table.table_arn],
            )
        )
        api.add_routes(self.function, routes_of(usage_router))
        self._wall_admin_routes(api, settings.admins)

    def _wall_admin_routes(self, api: BerthApi, admins: list[str]) -> None:
        principals = sorted({principal_of(arn) for arn in admins})  # aws:PrincipalArn
        api.rest_api.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyBerthAdminsReachAdminRoutes",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=[f"execute-api:/*/*{ADMIN_PATH}"],
                conditions={"ArnNotLike": {"aws:PrincipalArn": principals}} if principals else None,
            )
        )
        self.admin_policy = iam.ManagedPolicy(
            self,
            "AdminPolicy",
            description="berth: call the /admin routes (usage of every user, budgets)",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[api.invoke_arn("*", ADMIN_PATH)],
                )
            ],
        )
        acknowledge_wildcard(
            self.admin_policy,
            api.invoke_arn("*", ADMIN_PATH),
            "The admin routes of this API (any method, any user in the path), nothing else.",
        )
        CfnOutput(
            self,
            "AdminPolicyArn",
            key="AdminPolicyArn",
            value=self.admin_policy.managed_policy_arn,
            description="Attach to the roles named in usage.admins",
        )

    def meter(self, functions: Iterable[lambda_.Function]) -> None:
        """Lets ``functions`` record usage and check budgets: the usage table's environment
        and items written the one way the ledger writes them (a transaction of puts and an
        update), read by key — no query, no delete."""
        for function in functions:
            for key, value in self.environment.items():
                function.add_environment(key, value)
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                    resources=[self.table.table_arn],
                )
            )
