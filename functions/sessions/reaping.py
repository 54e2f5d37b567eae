"""The reaper's logic: what a scheduled run decides about every session, stray task, warm
pool and route, and carries out through the session service (unless in dry run). Every
decision is kept and logged with the signals it used."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sessions.models import PENDING_GRACE_SECONDS, Session, Status
from sessions.repository import StaleRecord
from sessions.routing import Route
from sessions.tasks import TaskInfo
from sessions.warm import ORPHAN_GRACE_SECONDS, WarmTask, plan, wanted
from shared.errors import Conflict

if TYPE_CHECKING:
    from sessions.activity import Activity
    from sessions.config import Profile
    from sessions.service import SessionService

logger = Logger(child=True)

KEEPING = frozenset({"mark_active", "wait", "open_route"})
"""Decisions that keep a session running (an owner over budget with ``stop_over_budget``
on has it stopped instead)."""
STOPPING_GRACE_SECONDS = 15 * 60
"""A STOPPING session whose task never reports STOPPED is closed by the reaper after this."""


@dataclass(frozen=True)
class Decision:
    """One thing the reaper did (or, in dry run, would do), with the signals it used."""

    session_id: str | None
    action: str
    reason: str
    signals: dict[str, Any] = field(default_factory=dict)


def decided(decisions: list[Decision], decision: Decision, dry_run: bool) -> None:
    """Keeps a reaper decision and logs it with the signals it used (every one is logged)."""
    decisions.append(decision)
    logger.info("reaper decision", extra={"dry_run": dry_run, **decision.__dict__})


class Reaper:
    """One scheduled run over the sessions ``service`` keeps: reads through its repository
    and task runner, changes sessions only through its transitions. ``activity`` finds uses
    besides heartbeats (routed requests, a container's activity lines); without it, only
    heartbeats count."""

    def __init__(self, service: SessionService, activity: Activity | None = None) -> None:
        self.service = service
        self.activity = activity
        self.repo = service.repo
        self.tasks = service.tasks
        self.routes = service.routes

    def reap(self, dry_run: bool) -> list[Decision]:
        now = self.service.clock()
        decisions: list[Decision] = []
        active = self.repo.active()
        described = self.tasks.describe(s.task_arn for s in active if s.task_arn)
        metering = self.service.metering
        over = metering.to_stop(s.user for s in active if s.status.live) if metering else {}
        for session in active:
            decision = self._reap_one(session, described, now)
            if (
                session.user in over
                and session.status.live
                and (decision is None or decision.action in KEEPING)
            ):  # limits.stop_over_budget: their running work stops too, saying why
                decision = Decision(session.id, "stop", over[session.user].said(), {})
            if decision:
                decided(decisions, decision, dry_run)
                if not dry_run:
                    self._carry_out(session, decision, described)
        live_ids = {s.id for s in active if s.status.live}
        for task in self.tasks.running_berth_tasks():
            if task.warm and not task.session_id:
                if decision := self._warm_orphan(task, now):
                    decided(decisions, decision, dry_run)
                    if not dry_run:
                        self.tasks.stop(task.arn, f"berth reaper: {decision.reason}")
                continue
            if task.session_id in live_ids or not (task.session_id or "").startswith("ses_"):
                continue
            if self._live_now(task.session_id):
                continue  # started after the sessions were read above: not an orphan
            decision = Decision(
                task.session_id,
                "stop_orphan_task",
                "task runs but its session is not live",
                {"task_arn": task.arn, "last_status": task.last_status},
            )
            decided(decisions, decision, dry_run)
            if not dry_run:
                self.tasks.stop(task.arn, "berth reaper: orphan task (no live session)")
        for name, profile in sorted(self.service.config.profiles.items()):
            if profile.warm_pool:
                decisions += self._tend_pool(name, profile, now, dry_run)
        if self.routes:
            decisions += self._stray_routes(live_ids, dry_run)
        return decisions

    def _live_now(self, session_id: str | None) -> bool:
        """A task's session, read again (consistently) before its task is called an orphan."""
        session = self.repo.get(session_id) if session_id else None
        return session is not None and session.status.live

    # --- sessions -----------------------------------------------------------------------------

    def _reap_one(
        self, session: Session, described: dict[str, TaskInfo | None], now: float
    ) -> Decision | None:
        signals: dict[str, Any] = {
            "status": session.status.value,
            "now": round(now),
            "expires_at": round(session.expires_at),
            "idle_deadline": round(session.idle_deadline),
            "task_arn": session.task_arn,
        }
        task = described.get(session.task_arn) if session.task_arn else None
        if session.task_arn:
            signals["task_last_status"] = task.last_status if task else "MISSING"
        if session.task_arn and task is None:
            return Decision(session.id, "mark_failed", "task vanished", signals)
        if task and task.last_status == "STOPPED":
            return Decision(session.id, "record_task_state", "task already stopped", signals)
        if session.status == Status.STOPPING:
            if now - session.updated_at > STOPPING_GRACE_SECONDS:
                return Decision(session.id, "mark_stopped", "stopping for too long", signals)
            return None
        if session.status == Status.PENDING and not session.task_arn:
            if now - session.created_at > PENDING_GRACE_SECONDS:
                return Decision(session.id, "mark_failed", "never got a task", signals)
            return None
        if now >= session.expires_at:
            return Decision(session.id, "stop", "ttl expired", signals)
        if self.routes and session.status == Status.RUNNING and session.token and not session.route:
            return Decision(session.id, "open_route", "running without its route", signals)
        if session.status == Status.RUNNING and now >= session.idle_deadline:
            # a session still starting cannot be used yet: its idle clock starts when it runs
            return self._idle_or_used(session, signals, now)
        return None

    def _idle_or_used(self, session: Session, signals: dict[str, Any], now: float) -> Decision:
        """Past its heartbeat deadline: in use by another signal since, or idle."""
        profile = self.service.config.profiles.get(session.profile)
        if self.activity is None or profile is None:
            return Decision(session.id, "stop", "idle (no heartbeat)", signals)
        try:
            use = self.activity.last_use(
                Route.parse(session.route),
                self.service.log_stream(session, session.task_arn),
                profile.activity_marker,
                since=session.last_used_at,
                now=now,
            )
        except ClientError as exc:  # unknown is not idle: the next run asks again
            code = exc.response["Error"]["Code"]
            return Decision(session.id, "wait", f"its activity cannot be read ({code})", signals)
        if use is not None:
            signals = {**signals, "signal": use.signal, "last_active_at": use.at, **use.detail}
            if use.at + session.idle_timeout_seconds > now:
                return Decision(session.id, "mark_active", f"in use ({use.signal})", signals)
        return Decision(
            session.id, "stop", "idle (no heartbeat, routed request or activity line)", signals
        )

    def _carry_out(
        self, session: Session, decision: Decision, described: dict[str, TaskInfo | None]
    ) -> None:
        service = self.service
        now = service.clock()
        try:
            if decision.action == "stop":
                service.stop_session(session, reason=f"berth reaper: {decision.reason}")
            elif decision.action == "record_task_state":
                service.apply_task(session, described.get(session.task_arn or ""))
            elif decision.action == "mark_failed":
                failed = session.moved(Status.FAILED, now, error=decision.reason)
                service.transition(session, failed)
            elif decision.action == "mark_stopped":
                service.transition(session, session.moved(Status.STOPPED, now))
            elif decision.action == "mark_active":
                self.repo.mark_used(session, decision.signals["last_active_at"])
            elif decision.action == "open_route":
                service.transition(session, replace(session, updated_at=now))
        except (StaleRecord, Conflict):
            logger.info("session changed while reaping; next run decides again")

    def _stray_routes(self, live_ids: set[str], dry_run: bool) -> list[Decision]:
        """Rules and target groups of sessions that are not live (a crash between a session's
        end and its route's removal, or a route opened for a write that then failed)."""
        decisions: list[Decision] = []
        for arn, session_id in self.routes.strays(live_ids) if self.routes else []:
            fresh = self.repo.get(session_id) if session_id else None
            if fresh is not None and fresh.status.live:
                continue  # live since the worklist was read
            decision = Decision(
                session_id or None, "remove_route", "its session is not live", {"arn": arn}
            )
            decided(decisions, decision, dry_run)
            if not dry_run and self.routes:
                self.routes.remove(arn)
        return decisions

    # --- warm pools ---------------------------------------------------------------------------

    def _warm_orphan(self, task: TaskInfo, now: float) -> Decision | None:
        """A running warm-pool task nobody will use: no item (past a grace for the item's
        write), or its session is over."""
        signals: dict[str, Any] = {"task_arn": task.arn, "last_status": task.last_status}
        warm = self.repo.warm_task(task.arn)
        if warm is None:
            if task.created_at is None or now - task.created_at < ORPHAN_GRACE_SECONDS:
                return None  # too young to judge (or of unknown age: left alone)
            return Decision(None, "stop_orphan_task", "warm task without a pool entry", signals)
        if warm.claimed_by:
            session = self.repo.get(warm.claimed_by)
            if session is None or session.status.ended:
                return Decision(warm.claimed_by, "stop_orphan_task", "its session is over", signals)
        return None

    def _tend_pool(self, name: str, profile: Profile, now: float, dry_run: bool) -> list[Decision]:
        """Keeps a profile's pool at its size: forgets stopped tasks, records addresses events
        missed, recycles tasks warm too long (or over the size outside its windows), refills."""
        decisions: list[Decision] = []
        pool = self.repo.warm_pool(name)
        described = self.tasks.describe(t.task_arn for t in pool)
        alive: list[WarmTask] = []
        for warm in pool:
            info = described.get(warm.task_arn)
            if info is None or info.last_status == "STOPPED":
                forget = Decision(None, "forget_warm_task", "its task stopped", {})
                decided(decisions, forget, dry_run)
                if not dry_run:
                    self.repo.forget_warm(warm.task_arn)
                continue
            missed = warm.private_ip is None and info.last_status == "RUNNING"
            if missed and info.private_ip and not dry_run:  # its RUNNING event was lost
                self.repo.warm_ready(warm.task_arn, info.private_ip)
            alive.append(warm)
        size = wanted(profile.warm_pool, profile.warm_windows, now)
        todo = plan(size, alive, now, profile.max_warm_seconds)
        signals = {"profile": name, "size": size, "warm": len(alive)}
        for warm in todo.retire:
            retire = Decision(None, "retire_warm_task", "warm too long or over the size", signals)
            decided(decisions, retire, dry_run)
            if not dry_run and self.repo.retire_warm(warm):
                self.tasks.stop(warm.task_arn, "berth reaper: warm task recycled")
        for _ in range(todo.launch):
            decided(
                decisions, Decision(None, "launch_warm_task", "the pool is short", signals), dry_run
            )
            if not dry_run:
                self.service.launch_warm(name, profile)
        return decisions
