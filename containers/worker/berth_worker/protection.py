"""ECS task scale-in protection, through the ECS agent inside the task."""

from __future__ import annotations

import json
import logging
import urllib.request

log = logging.getLogger("berth.worker")


class TaskProtection:
    """Protected while a message is in flight, so nothing scales the task in mid-command.

    Outside ECS (no ``ECS_AGENT_URI``, e.g. the local sandbox) this does nothing.
    """

    def __init__(self, agent_uri: str | None, minutes: int) -> None:
        self.agent_uri = agent_uri
        self.minutes = max(1, minutes)
        self.protected = False

    def set(self, protected: bool) -> None:
        self.protected = protected
        if not self.agent_uri:
            return
        body = {"ProtectionEnabled": protected}
        if protected:
            body["ExpiresInMinutes"] = self.minutes  # type: ignore[assignment]
        request = urllib.request.Request(  # noqa: S310 - the ECS agent's task endpoint
            f"{self.agent_uri}/task-protection/v1/state",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                pass
        except OSError:
            log.exception("could not %s task protection", "set" if protected else "clear")
