"""Session routes on the routing load balancer (``routing.mode: alb``): ELBv2 access only.

A RUNNING session gets an IP target group (its ``private_ip:port``) and two rules on the
HTTPS listener, both requiring the host ``<session id>.<domain>`` and the session's token —
one in a ``berth-session`` cookie, one in an ``X-Berth-Session-Token`` header (a rule's
conditions are ANDed, so each way of carrying the token is a rule of its own). Everything is
tagged ``berth:routing = <prefix>`` and ``berth:session-id``: IAM lets berth change only what
carries its tag, and the reaper finds strays by it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

ROUTING_TAG = "berth:routing"
SESSION_TAG = "berth:session-id"
COOKIE = "berth-session"
HEADER = "X-Berth-Session-Token"
PRIORITY_SLOTS = 24_999  # two rules a slot: priorities 1..49_998 (ALB allows 1..50_000)


@dataclass(frozen=True)
class Route:
    target_group: str
    rules: tuple[str, ...]

    def stored(self) -> str:
        """How the session record keeps it (one string: the group, then its rules)."""
        return " ".join((self.target_group, *self.rules))

    @classmethod
    def parse(cls, stored: str | None) -> Route | None:
        if not stored:
            return None
        group, *rules = stored.split()
        return cls(group, tuple(rules))


def target_group_name(session_id: str) -> str:
    """``ses-<28 hex>``: 32 characters, ELB's limit (names take no underscore)."""
    return session_id.replace("_", "-")[:32]


class Routes:
    def __init__(
        self,
        elbv2: Any,
        *,
        listener_arn: str,
        vpc_id: str,
        domain: str,
        tag: str,
        url_format: str = "https://{host}/",
    ) -> None:
        self.elbv2 = elbv2
        self.listener_arn = listener_arn
        self.vpc_id = vpc_id
        self.domain = domain
        self.tag = tag
        self.url_format = url_format

    def url(self, session_id: str) -> str:
        return self.url_format.format(host=self.host(session_id))

    def host(self, session_id: str) -> str:
        return f"{session_id}.{self.domain}"

    def open(
        self, session_id: str, private_ip: str, port: int, token: str, health_path: str = "/"
    ) -> Route:
        """The session's target group (its address registered, its profile's health check)
        and its two rules."""
        tags = [{"Key": ROUTING_TAG, "Value": self.tag}, {"Key": SESSION_TAG, "Value": session_id}]
        name = target_group_name(session_id)
        try:
            group = self.elbv2.create_target_group(
                Name=name,
                Protocol="HTTP",
                Port=port,
                VpcId=self.vpc_id,
                TargetType="ip",
                HealthCheckPath=health_path,
                Matcher={"HttpCode": "200-499"},  # any answer is alive; the app owns its paths
                Tags=tags,
            )["TargetGroups"][0]["TargetGroupArn"]
        except ClientError as exc:  # opened concurrently (AWS itself answers with the group)
            if exc.response["Error"]["Code"] != "DuplicateTargetGroupName":
                raise
            described = self.elbv2.describe_target_groups(Names=[name])["TargetGroups"]
            group = described[0]["TargetGroupArn"]
        self.elbv2.register_targets(
            TargetGroupArn=group, Targets=[{"Id": private_ip, "Port": port}]
        )
        slot = int(hashlib.sha256(session_id.encode()).hexdigest(), 16) % PRIORITY_SLOTS
        for attempt in range(PRIORITY_SLOTS):  # a free pair of priorities, near its hash
            priority = 1 + 2 * ((slot + attempt) % PRIORITY_SLOTS)
            rules: list[str] = []
            created: list[str] = []
            for n, condition in enumerate(self._token_conditions(token)):
                try:
                    rule = self._rule(session_id, group, priority + n, condition, tags)
                    created.append(rule)
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "PriorityInUse":
                        self.delete_rules(created)
                        raise
                    # Its own, from a concurrent open of the same session (the event and a
                    # GET both saw it run): the same rule, not a second one.
                    rule = self._own_rule_at(priority + n, session_id) or ""
                if not rule:
                    break
                rules.append(rule)
            if len(rules) == 2:
                return Route(group, tuple(rules))
            self.delete_rules(created)  # another session's priorities: try the next pair
        raise RuntimeError("the routing listener has no free rule priority")

    def rotate(self, session_id: str, route: Route, token: str) -> None:
        """Points the session's rules at a new token (the old one stops working at once)."""
        for rule, condition in zip(route.rules, self._token_conditions(token), strict=True):
            self.elbv2.modify_rule(
                RuleArn=rule, Conditions=[self._host_condition(session_id), condition]
            )

    def close(self, route: Route) -> None:
        self.delete_rules(route.rules)
        self._delete_group(route.target_group)

    def delete_rules(self, rules: Iterable[str]) -> None:
        for rule in rules:
            try:
                self.elbv2.delete_rule(RuleArn=rule)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "RuleNotFound":
                    raise

    def strays(self, live: set[str]) -> list[tuple[str, str]]:
        """Berth's rules and target groups whose session is not live: ``(arn, session id)``."""
        arns = [r["RuleArn"] for r in self._rules() if not r.get("IsDefault")]
        paginator = self.elbv2.get_paginator("describe_target_groups")
        for page in paginator.paginate():
            arns += [g["TargetGroupArn"] for g in page.get("TargetGroups", [])]
        found = []
        for start in range(0, len(arns), 20):  # DescribeTags takes 20 at a time
            described = self.elbv2.describe_tags(ResourceArns=arns[start : start + 20])
            for entry in described.get("TagDescriptions", []):
                tags = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
                session = tags.get(SESSION_TAG, "")
                if tags.get(ROUTING_TAG) == self.tag and session not in live:
                    found.append((entry["ResourceArn"], session))
        return found

    def remove(self, arn: str) -> None:
        """Removes a stray (a rule before its target group: a group in use can't go)."""
        if ":listener-rule/" in arn:
            self.delete_rules([arn])
        else:
            self._delete_group(arn)

    # --- internals ---------------------------------------------------------------------------

    def _rule(
        self,
        session_id: str,
        group: str,
        priority: int,
        token_condition: dict[str, Any],
        tags: list[dict[str, str]],
    ) -> str:
        created = self.elbv2.create_rule(
            ListenerArn=self.listener_arn,
            Priority=priority,
            Conditions=[
                self._host_condition(session_id),
                token_condition,
            ],
            Actions=[{"Type": "forward", "TargetGroupArn": group}],
            Tags=tags,
        )
        return str(created["Rules"][0]["RuleArn"])

    @staticmethod
    def _token_conditions(token: str) -> list[dict[str, Any]]:
        return [
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "Cookie", "Values": [f"*{COOKIE}={token}*"]},
            },
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": HEADER, "Values": [token]},
            },
        ]

    def _own_rule_at(self, priority: int, session_id: str) -> str | None:
        for rule in self._rules():
            if rule.get("Priority") == str(priority):
                hosts = [c for c in rule["Conditions"] if c["Field"] == "host-header"]
                values = hosts[0].get("HostHeaderConfig", {}).get("Values") if hosts else None
                return str(rule["RuleArn"]) if values == [self.host(session_id)] else None
        return None

    def _host_condition(self, session_id: str) -> dict[str, Any]:
        return {"Field": "host-header", "HostHeaderConfig": {"Values": [self.host(session_id)]}}

    def _rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        request: dict[str, Any] = {"ListenerArn": self.listener_arn, "PageSize": 400}
        while True:
            page = self.elbv2.describe_rules(**request)
            rules += page.get("Rules", [])
            if not page.get("NextMarker"):
                return rules
            request["Marker"] = page["NextMarker"]

    def _delete_group(self, group: str) -> None:
        try:
            self.elbv2.delete_target_group(TargetGroupArn=group)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TargetGroupNotFound":
                raise
