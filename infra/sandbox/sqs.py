"""moto's SQS FIFO queues made to keep a promise SQS makes, for the sandbox and tests.

On SQS a FIFO message's sequence number increases in the order messages enter the queue;
moto 5.2 draws them at random. berth reports a command's sequence number as its place in the
order of acceptance, so the emulator numbers them in order here. (Group ordering and
one-in-flight-per-group, the other FIFO promises berth relies on, moto keeps.)

``tests/unit/test_sandbox_sqs.py`` checks this still holds, so a moto upgrade that changes
these internals fails loudly rather than making the sandbox quietly unfaithful.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

_PATCHED = "_berth_fifo"
_lock = threading.Lock()
_numbers = itertools.count(1)


def number_fifo_messages_in_order() -> None:
    """Patches moto's SQS backend in this process (idempotent)."""
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.send_message, _PATCHED, False):
        return
    send = SQSBackend.send_message

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:  # the number and the place in the queue are taken together
            message = send(self, *args, **kwargs)
            if message.sequence_number is not None:
                message.sequence_number = f"{next(_numbers):020d}"
            return message

    setattr(send_message, _PATCHED, True)
    SQSBackend.send_message = send_message  # type: ignore[method-assign]
