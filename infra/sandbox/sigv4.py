"""SigV4 in the sandbox, as API Gateway checks it: local credentials per user, verified with
botocore's own signer, each key mapped to the same caller ARN ``X-Berth-User`` gives.

``make local`` writes an AWS config and credentials file under the sandbox's state folder
(profiles ``berth-local-<user>``); any SigV4 client — the ``berth`` CLI, ``awscurl``, boto3 —
signs with them, against the REST API and the WebSocket handshake alike. The sandbox's own
components (functions, workers) sign their calls to the management API with the sandbox's
credential, a key no user has.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra.sandbox.account import ACCOUNT, REGION
from infra.sandbox.events import local_user_arn

AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]{1,128})/(?P<date>\d{8})/"
    r"(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request, ?"
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)
MAX_SKEW = timedelta(minutes=15)
DEFAULT_USERS = ("alice", "bob", "cli", "fuzzer", "smoke", "admin", "console")
SANDBOX_PRINCIPAL = "sandbox"
"""Who signs with the sandbox's own credential (its functions and workers, not a user)."""


class Unsigned(Exception):
    """No SigV4 signature at all (API Gateway: 403 MissingAuthenticationToken; here 401)."""


class BadSignature(Exception):
    """A signature that does not verify (API Gateway and the sandbox: 403)."""


@dataclass(frozen=True)
class Key:
    access_key: str
    secret: str
    principal: str
    """A caller ARN, or ``SANDBOX_PRINCIPAL``."""


class LocalCredentials:
    def __init__(self, users: tuple[str, ...] = DEFAULT_USERS) -> None:
        self.keys: dict[str, Key] = {}
        self.profiles: dict[str, Key] = {}
        self.managers: set[str] = {SANDBOX_PRINCIPAL}
        """Principals allowed on the WebSocket management API (as IAM allows the roles
        that hold ``execute-api:ManageConnections``)."""
        self._lock = threading.Lock()
        for user in users:
            key = self._new(local_user_arn(user))
            self.profiles[f"berth-local-{user}"] = key
        self.sandbox = self._new(SANDBOX_PRINCIPAL)

    def _new(self, principal: str) -> Key:
        return self.register(
            f"LOCAL{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30), principal
        )

    def issue(self, principal: str) -> Key:
        """A new key that signs as ``principal`` (a worker task's own role session)."""
        return self._new(principal)

    def register(self, access_key: str, secret: str, principal: str, manages: bool = False) -> Key:
        """A key issued elsewhere (the emulator's STS) that signs as ``principal``."""
        key = Key(access_key, secret, principal)
        with self._lock:
            self.keys[key.access_key] = key
            if manages:
                self.managers.add(principal)
        return key

    def may_manage(self, principal: str) -> bool:
        return principal in self.managers

    def write(self, folder: Path) -> tuple[Path, Path]:
        """An AWS config and credentials file, one profile per local user; both private."""
        config, credentials = folder / "aws-config", folder / "aws-credentials"
        config.write_text(
            "".join(f"[profile {name}]\nregion = {REGION}\n\n" for name in self.profiles)
        )
        credentials.write_text(
            "".join(
                f"[{name}]\naws_access_key_id = {key.access_key}\n"
                f"aws_secret_access_key = {key.secret}\n\n"
                for name, key in self.profiles.items()
            )
        )
        for path in (config, credentials):
            path.chmod(0o600)
        return config, credentials

    def verify(
        self, method: str, url: str, headers: dict[str, str], body: bytes, now: datetime
    ) -> str:
        """The principal that signed this request; ``Unsigned`` or ``BadSignature``."""
        lowered = {k.lower(): v for k, v in headers.items()}
        authorization = lowered.get("authorization")
        if not authorization:
            raise Unsigned()
        found = AUTHORIZATION.match(authorization.strip())
        if not found:
            raise BadSignature("the Authorization header is not AWS4-HMAC-SHA256")
        key = self.keys.get(found["key"])
        if key is None:
            raise BadSignature("the access key is not one this sandbox issued")
        stamp = lowered.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise BadSignature("X-Amz-Date is missing or malformed") from None
        if abs(now - signed_at) > MAX_SKEW or found["date"] != stamp[:8]:
            raise BadSignature("the signature is expired or from the future")
        signed = found["signed"].split(";")
        if "host" not in signed:
            raise BadSignature("the Host header must be signed")
        request = AWSRequest(
            method=method,
            url=url,
            data=body,
            headers={name: lowered[name] for name in signed if name in lowered},
        )
        if set(signed) - set(lowered):
            raise BadSignature("a signed header is missing")
        signer = SigV4Auth(
            Credentials(key.access_key, key.secret), found["service"], found["region"]
        )
        request.context["timestamp"] = stamp
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, found["signature"]):
            raise BadSignature("the signature does not match")
        return key.principal


def url_of(host: str, path: str) -> str:
    """The URL a client signed: ``http://<Host header><path>``."""
    return f"http://{host}{path}" if not urlsplit(path).scheme else path


_registries: list[tuple[LocalCredentials, frozenset[str]]] = []


def know_vended_credentials(credentials: LocalCredentials, managing_roles: set[str]) -> None:
    """Credentials the emulator's STS issues (berth's credentials route vends the tenant
    role) sign here as the assumed role's session, as on AWS; sessions of ``managing_roles``
    may use the WebSocket management API, as IAM lets the roles that hold
    ``execute-api:ManageConnections``."""
    from infra.sandbox.moto_bridges import on_assume_role

    _registries.append((credentials, frozenset(managing_roles)))
    on_assume_role(_register)


def _register(access_key: str, secret: str, role_name: str, session_name: str) -> None:
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{session_name}"
    for registry, managing in list(_registries):
        registry.register(access_key, secret, principal, role_name in managing)
