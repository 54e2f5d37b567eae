"""Domain errors: what went wrong, in the domain's words, with no HTTP in sight.

Services raise these; the API layer (``shared.api``) is the one place that maps each kind to
an HTTP status. A non-HTTP caller (a scheduled function, the worker, a CLI) catches them as
plain exceptions. ``code`` is the machine-readable code clients see in
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class DomainError(Exception):
    default_code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class Invalid(DomainError):
    """The caller asked for something that can never succeed as asked."""

    default_code = "invalid_request"


class NotFound(DomainError):
    """No such thing — or one the caller may not see, which must look the same."""

    default_code = "not_found"

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(f"{what} not found" + (f" ({hint})" if hint else ""))


class Forbidden(DomainError):
    """The caller may not do this at all (not one of the principals the operator named)."""

    default_code = "forbidden"


class Conflict(DomainError):
    """The thing is not in a state that allows this (yet, or any more)."""

    default_code = "conflict"


class LimitReached(DomainError):
    """A per-caller quota is used up; it frees up as the caller's work ends."""

    default_code = "limit_reached"


class Unavailable(DomainError):
    """A dependency failed; the same request may succeed later."""

    default_code = "unavailable"


THROTTLED = {
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded", "SlowDown",
    "RequestThrottled", "RequestThrottledException", "LimitExceededException",
}  # fmt: skip
"""AWS's ways of saying "slow down" (botocore has retried them already)."""


def aws_unavailable(exc: Exception) -> bool:
    """An AWS call that failed on AWS's side — throttled or a 5xx — after botocore's own
    retries: the caller may retry; it is not berth's bug. (Read off botocore's ClientError
    shape, so this module need not import botocore.)"""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return type(exc).__name__ in {"EndpointConnectionError", "ConnectTimeoutError",
                                      "ReadTimeoutError", "ConnectionClosedError"}  # fmt: skip
    code = str((response.get("Error") or {}).get("Code", ""))
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return code in THROTTLED or status >= 500


class AwsUnavailable(Exception):
    """Raised by a workflow's Lambda step when AWS refused after botocore's own retries
    (``aws_unavailable``): Step Functions names the error after this class, and the state
    machine retries it with backoff instead of calling the work failed."""


def named_if_unavailable(exc: Exception) -> Exception:
    """``exc`` as ``AwsUnavailable`` when it is AWS's passing trouble, else as it is."""
    return AwsUnavailable(str(exc)) if aws_unavailable(exc) else exc
