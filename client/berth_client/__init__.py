"""berth's Python client and the ``berth`` CLI over it.

The client signs every request with SigV4 from the standard AWS credential chain (a profile,
environment variables, an instance role) — against a deployed stack and ``make local`` alike
(``make local`` issues ``berth-local-<user>`` profiles). It depends on botocore, pydantic,
typer/rich and websockets only: ``pipx install ./client`` gives it to anyone.
"""

from berth_client.client import Answered, ApiError, BerthClient, Settings

__all__ = ["Answered", "ApiError", "BerthClient", "Settings"]
