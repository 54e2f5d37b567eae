"""Idle means nobody uses it, against ``make local``: a session whose owner sends no
heartbeat is kept while requests reach it through its route, and reaped once they stop.

The "brief" profile (the echo server, idle after 6 s) exists only in the fast sandbox's
settings; the reaper runs every second there, and the local router counts each request per
second where the load balancer counts per minute.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.e2e.conftest import FAST_CONTEXT, FAST_ENV, Sandbox
from tests.e2e.test_storage_local import through, until

pytestmark = pytest.mark.e2e

SANDBOX_CONTEXT = FAST_CONTEXT
SANDBOX_ENV = FAST_ENV
PROFILE = "brief"
IDLE = FAST_CONTEXT[f"berth:sessions.profiles.{PROFILE}"]["idle_timeout_seconds"]


def shown(sandbox: Sandbox, user: str, session_id: str) -> dict[str, Any]:
    code, session = sandbox.request("GET", f"/sessions/{session_id}", user=user)
    assert code == 200, session
    return dict(session)


def test_routed_traffic_keeps_a_session_without_heartbeats_until_it_stops(
    sandbox: Sandbox,
) -> None:
    code, created = sandbox.request("POST", "/sessions", {"profile": PROFILE}, user="ivy")
    assert code in (200, 201), created
    # its start takes as long as its idle timeout: the idle clock starts when it runs
    session = until(sandbox, "ivy", created["id"], "RUNNING")
    assert session["last_active_at"] > session["last_heartbeat_at"]
    deadline = time.monotonic() + 30
    while through(sandbox, session, "GET", "/work")[0] != 200:  # its server starts listening
        assert time.monotonic() < deadline, f"{session['url']} never answered"
        time.sleep(0.2)

    # requests (a steady browser, on its own thread), never a heartbeat, for three timeouts
    answers: list[int] = []
    stop = threading.Event()

    def browse() -> None:
        while not stop.wait(0.25):
            answers.append(through(sandbox, session, "GET", "/work")[0])

    browser = threading.Thread(target=browse, daemon=True)
    browser.start()
    try:
        busy_until = time.monotonic() + 3 * IDLE
        while time.monotonic() < busy_until:
            assert shown(sandbox, "ivy", session["id"])["status"] == "RUNNING"
            time.sleep(0.5)
    finally:
        stop.set()
        browser.join()
    assert len(answers) > 3 * IDLE and set(answers) == {200}  # its route stayed open
    last_request = time.time()
    kept = shown(sandbox, "ivy", session["id"])
    assert kept["last_heartbeat_at"] == session["last_heartbeat_at"]  # no heartbeat was sent
    assert kept["last_active_at"] > session["last_active_at"]  # the reaper saw the traffic
    assert kept["idle_expires_at"] > session["idle_expires_at"]

    # silence: reaped after the idle timeout (the reaper runs every second here)
    ended = until(sandbox, "ivy", session["id"], "STOPPED")
    assert time.time() - last_request >= IDLE - 1  # not before its time
    assert through(sandbox, ended, "GET", "/work")[0] == 404  # its route is gone
