"""A worker's lease on the command it runs, kept alive by a heartbeat.

The command's record holds the lease (``lease_expires_at``, renewed only by the worker that
holds it); the queue message's visibility follows it, so a message whose worker died is
visible again within one lease. Every ``lease_seconds / 3`` the heartbeat renews both, stores
the tail of the output so far and uploads the log written so far (so a lost command keeps the
output it had). Every ``check_seconds`` it reads whether the command's owner asked to cancel.
When a renewal is refused (the command was declared lost meanwhile) the lease is ``lost``
and the worker must stop and write nothing more for this command. A renewal that AWS could
not take (throttled or a 5xx after botocore's retries) is tried again at the next tick, not a
whole interval later: a lease outlives a run of failed calls, not just two of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from workers.repository import StaleCommand, WorkersRepository

log = logging.getLogger("berth.worker")


class Lease:
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        receipt: str,
        repository: WorkersRepository,
        command_id: str,
        worker: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
        progress: Callable[[], str | None] = lambda: None,
        flush: Callable[[], None] = lambda: None,
        check_seconds: float = 1.0,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.receipt = receipt
        self.repository = repository
        self.command_id = command_id
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.progress = progress
        self.flush = flush
        self.check_seconds = check_seconds
        self.lost = False
        self.cancel_requested = False
        self.renewals = 0
        self.missed = 0
        """Renewals AWS could not take (each tried again at the next tick)."""
        self._due = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease", daemon=True)

    @property
    def interval(self) -> float:
        return self.lease_seconds / 3

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def renew(self) -> bool:
        """One renewal now (also used right before the results are written)."""
        if self.lost:
            return False
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=self.receipt,
                VisibilityTimeout=int(self.lease_seconds),
            )
        except Exception:  # the record's lease is what counts; the message follows it
            log.warning("could not extend the message of %s", self.command_id, exc_info=True)
        try:
            tail = self.progress()
        except Exception:
            log.warning("could not save the output of %s so far", self.command_id, exc_info=True)
            tail = None
        try:
            record = self.repository.renew(
                self.command_id, self.worker, self.clock(), self.lease_seconds, tail
            )
        except StaleCommand:
            log.warning("lost the lease on %s: it was ended elsewhere", self.command_id)
            self.lost = True
            return False
        except Exception:  # a passing fault: the next tick retries, well within the lease
            log.warning("could not renew the lease on %s", self.command_id, exc_info=True)
            self.missed += 1
            self._due = True
            return True
        self._due = False
        self.renewals += 1
        self.cancel_requested = bool(record.cancel_requested)
        return True

    def _beat(self) -> None:
        next_renewal = time.monotonic() + self.interval
        while not self._stop.wait(min(self.check_seconds, self.interval)):
            if self._due or time.monotonic() >= next_renewal:
                self.renew()
                next_renewal = time.monotonic() + self.interval
            elif not self.cancel_requested and not self.lost:
                try:
                    self.flush()
                    current = self.repository.get(self.command_id)
                except Exception:  # a passing fault: look again at the next tick
                    log.debug("could not read %s", self.command_id, exc_info=True)
                    continue
                if current is not None:
                    self.cancel_requested = bool(current.cancel_requested)
            if self.lost:
                return
