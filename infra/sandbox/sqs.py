"""moto's SQS FIFO queues made to keep a promise SQS makes, for the sandbox and tests.

- **Sequence numbers.** On SQS a FIFO message's sequence number increases in the order
  messages enter the queue; moto 5.2 draws them at random. berth reports a command's sequence
  number as its place in the order of acceptance, so the emulator numbers them in order here.
- **One message group in flight at a time.** SQS never hands out a message of a group while
  another message of that group is in flight; berth relies on it to run a project's commands
  one at a time. moto checks the group against a snapshot taken when a long poll *starts*, so
  a worker that began polling before another worker took a message of the group is handed
  the group's next message too: two commands of one project run at once. Here a long poll is
  a series of short ones, each checking the groups in flight at that moment, one at a time.

``tests/unit/test_sandbox_sqs.py`` checks this still holds, so a moto upgrade that changes
these internals fails loudly rather than making the sandbox quietly unfaithful.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

_PATCHED = "_berth_fifo"
_lock = threading.Lock()
_numbers = itertools.count(1)
POLL_SECONDS = 0.1


def keep_fifo_promises() -> None:
    """Patches moto's SQS backend in this process (idempotent)."""
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.send_message, _PATCHED, False):
        return
    send = SQSBackend.send_message
    receive = SQSBackend.receive_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:  # the number and the place in the queue are taken together
            message = send(self, *args, **kwargs)
            if message.sequence_number is not None:
                message.sequence_number = f"{next(_numbers):020d}"
            return message

    def receive_message(
        self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any
    ) -> Any:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _lock:  # which groups are in flight, and taking one, at once
                messages = receive(self, queue_name, count, 0, *args)
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(POLL_SECONDS)

    setattr(send_message, _PATCHED, True)
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign,assignment]
