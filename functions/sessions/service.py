"""Session logic: launch (cold, or on a warm task), stop, status, task events, routes. The
reaper's scheduled decisions are in ``sessions.reaping`` and act through this service. No AWS
client is made here; the repository, the task runner and the notifier are handed in, so tests
pass moto-backed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from sessions.config import Profile, SessionsConfig
from sessions.logs import ContainerLogs, LogLine, stream_of
from sessions.models import (
    PENDING_GRACE_SECONDS,
    TRANSITIONS,
    Session,
    Status,
    Volume,
    new_session_id,
    new_token,
)
from sessions.repository import Claimed, SessionRepository, StaleRecord
from sessions.routing import Route, Routes
from sessions.storage import Volumes
from sessions.tasks import STARTING_STATES, STOPPING_STATES, TaskInfo, TaskRunner
from sessions.warm import WarmTask, wanted
from shared.errors import Conflict, Invalid, LimitReached, NotFound, Unavailable
from shared.usage import Capability, Metering, Span

logger = Logger(child=True)


class Notifier(Protocol):
    def session_changed(self, session: Session) -> None: ...


class NullNotifier:
    def session_changed(self, session: Session) -> None:
        return None


class SessionService:
    def __init__(
        self,
        *,
        config: SessionsConfig,
        repository: SessionRepository,
        tasks: TaskRunner,
        notifier: Notifier | None = None,
        clock: Callable[[], float],
        routes: Routes | None = None,
        volumes: Volumes | None = None,
        container_logs: ContainerLogs | None = None,
        metering: Metering | None = None,
    ) -> None:
        self.config = config
        self.repo = repository
        self.tasks = tasks
        self.notifier = notifier or NullNotifier()
        self.clock = clock
        self.routes = routes
        """Set when routing is on: a RUNNING session gets a route, a token guards it."""
        self.volumes = volumes
        """Set when a profile keeps storage: users' volumes (``sessions.storage``)."""
        self.container_logs = container_logs
        self.metering = metering
        """Set when usage is on: budgets checked at start, a stopped task's time recorded."""

    # --- API operations -----------------------------------------------------------------------

    def create(self, user: str, profile_name: str, ttl_seconds: int | None) -> tuple[Session, bool]:
        """The caller's live session for the profile: ``(session, True)`` when new."""
        profile = self._profile(profile_name)
        ttl = ttl_seconds or profile.default_ttl_seconds
        if ttl > profile.max_ttl_seconds:
            raise Invalid(
                f"ttl_seconds {ttl} is over profile {profile_name!r}'s maximum "
                f"of {profile.max_ttl_seconds}"
            )
        if self.metering:
            self.metering.check(user)
        now = self.clock()
        session = Session(
            id=new_session_id(now),
            user=user,
            profile=profile_name,
            status=Status.PENDING,
            created_at=now,
            updated_at=now,
            expires_at=now + ttl,
            last_heartbeat_at=now,
            idle_timeout_seconds=profile.idle_timeout_seconds,
            port=profile.port,
            token=new_token() if self.routes else None,
        )
        outcome = self.repo.create(
            session, self.config.max_sessions_per_user, self.config.max_routes if self.routes else 0
        )
        if outcome.routes_full:
            raise LimitReached(
                f"all {self.config.max_routes} session routes are in use; try again when a "
                "session ends (operators: routing.max_routes, within the load balancer's quota "
                "of rules)",
                code="routing_full",
            )
        if outcome.limit_reached:
            raise LimitReached(
                f"you already have {self.config.max_sessions_per_user} live sessions; "
                "stop one (DELETE /sessions/{id}) before starting another",
                code="session_limit",
            )
        if not outcome.created:
            existing = self.repo.get(outcome.existing_id or "")
            if existing is None:  # the live slot's session vanished: a broken record
                raise Conflict("a previous session is still being cleaned up")
            return self._resume_if_stalled(existing, profile), False
        logger.info("session created", extra={"session_id": session.id, "profile": profile_name})
        if profile.warm_pool:
            warm = self._claim_warm(session, profile)
            if warm is not None:
                return warm, True
        return self._launch(session, profile), True

    def get(self, user: str, session_id: str) -> Session:
        session = self._owned(user, session_id)
        if session.status in {Status.STARTING, Status.STOPPING} and session.task_arn:
            task = self.tasks.describe([session.task_arn])[session.task_arn]
            return self.apply_task(session, task)
        return session

    def url_of(self, session: Session) -> str | None:
        """Where a browser reaches the session (routing on), else None."""
        return self.routes.url(session.id) if self.routes else None

    def rotate_token(self, user: str, session_id: str) -> Session:
        """A new token for the session's route; the old one stops working at once."""
        session = self._owned(user, session_id)
        if self.routes is None:
            raise Invalid("routing is off: sessions have no token", code="routing_off")
        if not session.status.live:
            raise Conflict(
                f"session is {session.status.value}; start a new one", code="session_ended"
            )
        rotated = self.transition(
            session, session.moved(session.status, self.clock(), token=new_token())
        )
        route = Route.parse(rotated.route)
        if route and rotated.token:
            self.routes.rotate(rotated.id, route, rotated.token)
        return rotated

    def list_sessions(
        self, user: str, limit: int, token: str | None
    ) -> tuple[list[Session], str | None]:
        return self.repo.list_for_user(user, limit, token)

    def stop(self, user: str, session_id: str) -> tuple[Session, bool]:
        """``(session, True)`` when this call (or an earlier one) has it stopping."""
        session = self._owned(user, session_id)
        if session.status.ended:
            return session, False
        if session.status == Status.STOPPING:
            return session, True
        return self.stop_session(session, reason="stopped by its owner"), True

    def heartbeat(self, user: str, session_id: str) -> Session:
        session = self._owned(user, session_id)
        if not session.status.live:
            raise Conflict(
                f"session is {session.status.value}; start a new one", code="session_ended"
            )
        now = self.clock()
        return self.transition(session, session.moved(session.status, now, last_heartbeat_at=now))

    # --- ECS task state (events and reconciliation) -------------------------------------------

    def on_task_event(self, detail: dict[str, Any]) -> Session | None:
        """Applies an ECS "Task State Change" event to its session, if it has one."""
        task = TaskInfo.from_ecs(detail)
        if task.warm:
            return self._on_warm_task(task)
        if not task.session_id:
            return None
        session = self.repo.get(task.session_id)
        if session is None:
            logger.warning("event for unknown session", extra={"task_arn": task.arn})
            return None
        if session.task_arn and session.task_arn != task.arn:
            return session
        return self.apply_task(session, task)

    def apply_task(self, session: Session, task: TaskInfo | None) -> Session:
        now = self.clock()
        if task is None:
            target = session.moved(
                Status.FAILED, now, error="the session's task no longer exists in ECS"
            )
        elif task.last_status == "RUNNING":
            if session.status == Status.STOPPING:
                return session
            target = session.moved(
                Status.RUNNING,
                now,
                task_arn=task.arn,
                private_ip=task.private_ip or session.private_ip,
                # its idle clock starts when it can be used (a start may outlast the timeout)
                last_active_at=session.last_active_at
                if session.status == Status.RUNNING
                else max(now, session.last_active_at or 0.0),
            )
        elif task.last_status in STARTING_STATES:
            target = session.moved(Status.STARTING, now, task_arn=task.arn)
        elif task.last_status in STOPPING_STATES:
            target = session.moved(Status.STOPPING, now, stop_reason=task.stopped_reason)
        elif task.last_status == "STOPPED":
            self._meter(session, task)
            requested = session.status == Status.STOPPING or task.stop_code == "UserInitiated"
            if requested:
                target = session.moved(Status.STOPPED, now)
            else:
                codes = f" (exit codes {list(task.exit_codes)})" if task.exit_codes else ""
                reason = task.stopped_reason or "the task stopped"
                said = self._last_words(session, task.arn)
                target = session.moved(Status.FAILED, now, error=f"{reason}{codes}{said}")
        else:
            return session
        if target.status == session.status and target.private_ip == session.private_ip:
            return session
        return self.transition(session, target)

    def _meter(self, session: Session, task: TaskInfo) -> None:
        """Records the stopped task's time for the session's owner, once (a replayed event
        finds it recorded). A warm task is theirs from the claim (the session's creation)."""
        if self.metering is None:
            return
        profile = self.config.profiles.get(session.profile)
        if profile is None:
            return
        started = max(task.billed_from or session.created_at, session.created_at)
        ended = max(started, task.stopped_at or self.clock())
        span = Span(
            f"session/{session.id}", session.user, Capability.SESSIONS, session.id, started, ended
        )
        usage = self.metering.meter.fargate(span, cpu=profile.cpu, memory_mib=profile.memory)
        if self.metering.record(usage):
            logger.info("usage recorded", extra={"unit": usage.id, "seconds": usage.seconds})

    # --- warm pools ---------------------------------------------------------------------------

    def _claim_warm(self, session: Session, profile: Profile) -> Session | None:
        """``session`` (just created, PENDING) on a ready warm task, RUNNING; None when the
        pool has none ready (the caller starts a task as usual)."""
        for task in sorted(self.repo.warm_pool(session.profile), key=lambda t: t.warm_since):
            if not task.ready:
                continue
            running = session.moved(
                Status.RUNNING, self.clock(), task_arn=task.task_arn, private_ip=task.private_ip
            )
            try:
                self.repo.claim_warm(task, session, running)
            except Claimed:
                continue  # another caller's: try the next one
            except StaleRecord:
                return self.repo.get(session.id)  # stopped meanwhile: it keeps that state
            logger.info(
                "warm task claimed", extra={"session_id": session.id, "task_arn": task.task_arn}
            )
            self.tasks.label(task.task_arn, session.user)
            routed = self._routed(running)
            if routed is not running:
                self.repo.replace(running, routed)
                running = routed
            self.notifier.session_changed(running)
            if wanted(profile.warm_pool, profile.warm_windows, self.clock()):
                self.launch_warm(session.profile, profile)  # its replacement, in the background
            return running
        return None

    def launch_warm(self, name: str, profile: Profile) -> None:
        result = self.tasks.run_warm(
            profile=name, task_definition=profile.task_definition, container=profile.container
        )
        if result.task_arn is None:
            logger.warning("warm task not started", extra={"profile": name, "error": result.error})
            return
        self.repo.add_warm(
            WarmTask(task_arn=result.task_arn, profile=name, warm_since=self.clock())
        )

    def _on_warm_task(self, task: TaskInfo) -> Session | None:
        warm = self.repo.warm_task(task.arn)
        if warm is None:
            return None
        if warm.claimed_by:  # a session's task now: its events are the session's
            session = self.repo.get(warm.claimed_by)
            if session is None or session.task_arn != task.arn:
                return session
            applied = self.apply_task(session, task)
            if task.last_status == "STOPPED":
                self.repo.forget_warm(task.arn)
            return applied
        if task.last_status == "RUNNING" and task.private_ip:
            self.repo.warm_ready(task.arn, task.private_ip)
        elif task.last_status == "STOPPED":
            self.repo.forget_warm(task.arn)
        return None

    # --- internals ----------------------------------------------------------------------------

    def _profile(self, name: str) -> Profile:
        profile = self.config.profiles.get(name)
        if profile is None:
            known = ", ".join(sorted(self.config.profiles))
            raise Invalid(f"unknown profile {name!r}; known: {known}", code="unknown_profile")
        return profile

    def _owned(self, user: str, session_id: str) -> Session:
        session = self.repo.get(session_id)
        if session is None or session.user != user:
            raise NotFound("session")  # another user's session is indistinguishable from none
        return session

    def _launch(self, session: Session, profile: Profile) -> Session:
        result = self.tasks.run(
            session_id=session.id,
            user=session.user,
            profile=session.profile,
            task_definition=self._task_definition(session, profile),
            container=profile.container,
            environment={"BERTH_SESSION_ID": session.id, "BERTH_USER": session.user},
        )
        now = self.clock()
        if result.task_arn is None:
            logger.warning(
                "RunTask failed", extra={"session_id": session.id, "error": result.error}
            )
            return self.transition(session, session.moved(Status.FAILED, now, error=result.error))
        return self.transition(
            session, session.moved(Status.STARTING, now, task_arn=result.task_arn)
        )

    def _task_definition(self, session: Session, profile: Profile) -> str:
        """The profile's own, or — for a profile that keeps storage — the user's revision of
        it, which mounts their volume (made on their first start)."""
        if not profile.storage_path:
            return profile.task_definition
        if self.volumes is None:
            raise Unavailable("session storage is not configured in this deployment")
        return self.volumes.for_start(session.user, session.profile, profile).task_definition

    # --- logs ---------------------------------------------------------------------------------

    def logs(
        self,
        user: str,
        session_id: str,
        *,
        since: float | None,
        limit: int,
        token: str | None,
    ) -> tuple[list[LogLine], str | None]:
        """What the owner's session's container printed, oldest first, a page at a time."""
        session = self._owned(user, session_id)
        found = self.log_stream(session, session.task_arn)  # none before it has a task
        if self.container_logs is None or found is None:
            return [], None
        return self.container_logs.read(*found, since=since, limit=limit, token=token)

    def _last_words(self, session: Session, task_arn: str) -> str:
        """A failed container's last lines, for its session's ``error`` (empty if none)."""
        found = self.log_stream(session, task_arn)
        if self.container_logs is None or found is None:
            return ""
        lines = self.container_logs.last_lines(*found)
        return "; its last lines: " + " | ".join(lines) if lines else ""

    def log_stream(self, session: Session, task_arn: str | None) -> tuple[str, str] | None:
        """(log group, stream) of the session's container in ``task_arn``, if it logs."""
        profile = self.config.profiles.get(session.profile)
        if profile is None or not profile.log_group or not task_arn:
            return None
        return profile.log_group, stream_of(session.profile, profile.container, task_arn)

    # --- storage ------------------------------------------------------------------------------

    def list_storage(self, user: str) -> list[Volume]:
        """The caller's volumes, one per profile that keeps storage and was started."""
        if self.volumes is None:
            return []
        found = (
            self.volumes.get(user, name)
            for name, profile in sorted(self.config.profiles.items())
            if profile.storage_path
        )
        return [volume for volume in found if volume is not None]

    def wipe_storage(self, user: str, profile_name: str) -> Volume:
        """Deletes the caller's volume of a profile (the next start is empty); 409 while a
        session of that profile is live, 404 when there is none (or no such profile)."""
        known = profile_name in self.config.profiles
        volume = self.volumes.get(user, profile_name) if self.volumes and known else None
        if volume is None or self.volumes is None:
            raise NotFound("volume")
        if self.repo.live_session_id(user, profile_name):
            raise Conflict(
                f"a session of profile {profile_name!r} is live; stop it before wiping its volume",
                code="session_live",
            )
        self.volumes.wipe(volume)
        logger.info("volume wiped", extra={"profile": profile_name})
        return volume

    def _resume_if_stalled(self, session: Session, profile: Profile) -> Session:
        """A retry finds a session whose launcher died before RunTask: launch it now.

        RunTask's client token is the session id, so this can never start a second task.
        """
        stalled = (
            session.status == Status.PENDING
            and not session.task_arn
            and self.clock() - session.created_at > PENDING_GRACE_SECONDS
        )
        return self._launch(session, profile) if stalled else session

    def stop_session(self, session: Session, reason: str) -> Session:
        now = self.clock()
        if not session.task_arn:
            return self.transition(session, session.moved(Status.STOPPED, now, stop_reason=reason))
        stopping = self.transition(session, session.moved(Status.STOPPING, now, stop_reason=reason))
        self.tasks.stop(session.task_arn, reason)
        return stopping

    def transition(self, current: Session, target: Session) -> Session:
        """Moves along the status flow; a move the flow forbids keeps the stored state."""
        for _ in range(3):
            if target.status != current.status and target.status not in TRANSITIONS[current.status]:
                return current
            try:
                return self._write(current, target)
            except StaleRecord:
                fresh = self.repo.get(current.id)
                if fresh is None:
                    raise
                changes = {
                    k: getattr(target, k)
                    for k in (
                        "task_arn",
                        "private_ip",
                        "error",
                        "stop_reason",
                        "last_heartbeat_at",
                        "last_active_at",
                        "token",
                        "route",
                    )
                    if getattr(target, k) != getattr(current, k)
                }
                current = fresh
                target = fresh.moved(target.status, target.updated_at, **changes)
        raise Conflict(f"session {current.id} kept changing; try again")

    def _write(self, current: Session, target: Session) -> Session:
        target = self._routed(target)
        self.repo.replace(current, target)
        if current.route and not target.status.live:
            self._unroute(target)
        if target.status != current.status or target.private_ip != current.private_ip:
            self.notifier.session_changed(target)
        return target

    def _routed(self, session: Session) -> Session:
        """A RUNNING session with an address gets its route (once)."""
        if not (
            self.routes
            and session.status == Status.RUNNING
            and session.private_ip
            and session.token
            and not session.route
        ):
            return session
        try:
            profile = self.config.profiles.get(session.profile)
            route = self.routes.open(
                session.id,
                session.private_ip,
                session.port,
                session.token,
                profile.health_check_path if profile else "/",
            )
        except Exception:  # it runs all the same; the reaper opens the route on its next run
            logger.exception("could not open the route", extra={"session_id": session.id})
            return session
        return replace(session, route=route.stored())

    def _unroute(self, session: Session) -> None:
        route = Route.parse(session.route)
        if self.routes and route:
            try:
                self.routes.close(route)
            except Exception:  # the reaper removes what is left
                logger.exception("could not remove the route", extra={"session_id": session.id})
