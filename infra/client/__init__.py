"""berth's Python client and the ``berth`` CLI over it.

The client signs every request with SigV4 from the standard AWS credential chain (a profile,
environment variables, an instance role) — against a deployed stack and ``make local`` alike
(``make local`` issues ``berth-local-<user>`` profiles). It lives beside the CDK app so that
one ``pip install`` gives operators and clients the same tool.
"""

from infra.client.client import ApiError, BerthClient, Settings

__all__ = ["ApiError", "BerthClient", "Settings"]
