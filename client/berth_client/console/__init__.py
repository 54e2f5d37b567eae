"""``berth console``: a web console on 127.0.0.1 that calls berth's API as the caller.

The browser talks only to this process: ``/api/<path>`` is forwarded through ``BerthClient``
(SigV4 with the caller's own credentials, as the CLI signs), so no AWS key ever reaches the
page and nothing new is exposed in AWS. Live updates come from berth's WebSocket API, opened
by the page itself with a single-use ticket the API minted for the caller.

A page on another site must not be able to use this proxy with the caller's credentials:
``/api`` answers only requests carrying this run's secret in ``X-Berth-Console`` (a header
no cross-site form can send, and the page is the only place it is written) and addressed to
127.0.0.1/localhost (a rebound DNS name is refused).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import secrets
import threading
import urllib.error
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from berth_client.client import ApiError, BerthClient

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "vendor"
"""xterm.js and its fit add-on, copied from node_modules at build time (``make install``)."""
SECRET_HEADER = "X-Berth-Console"  # noqa: S105 - a header name; the secret is per run
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MAX_BODY = 1024 * 1024
METHODS = {"GET", "POST", "PUT", "DELETE"}

log = logging.getLogger("berth.console")


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class ConsoleServer:
    """Serves the console for ``client`` on ``host:port`` (0: any free port)."""

    def __init__(self, client: BerthClient, host: str = "127.0.0.1", port: int = 0) -> None:
        self.client = client
        self.secret = secrets.token_urlsafe(24)
        self.httpd = ConsoleHttpServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """In this thread, until interrupted (``berth console``)."""
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stops the thread ``start`` began (shutdown waits for a loop that runs: none ran,
        or it ended with the interrupt, it would wait forever) and frees the port."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()

    # --- what the handler calls ---------------------------------------------------------------

    def forward(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        """One API call as the caller; berth's error shape, never a traceback."""
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return 400, _error("invalid_request", "the body is not JSON")
        try:
            answer = self.client.request(method, path, payload, dict(parse_qsl(query)) or None)
        except ApiError as error:
            return _failed(error)
        return 200, json.dumps(answer).encode()

    def download(self, job_id: str, kind: str) -> tuple[int, bytes]:
        """A job's result or failure ZIP (200), fetched here from its presigned URL; else
        berth's error shape."""
        try:
            job = self.client.job(job_id)
        except ApiError as error:
            return _failed(error)
        url = job.result_url if kind == "result" else (job.error.failure_url if job.error else None)
        if not url or urlsplit(url).scheme not in {"http", "https"}:
            return 404, _error("not_found", f"job {job_id} has no {kind} to download")
        try:
            with urllib.request.urlopen(url, timeout=self.client.timeout) as response:  # noqa: S310 - the API's presigned URL
                return 200, response.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            return 502, _error("unreachable", f"cannot fetch the {kind} of {job_id}: {reason}")


def _failed(error: ApiError) -> tuple[int, bytes]:
    """An API call's failure as the console answers it: the API's status (502 when it was
    not reached) and its code and message."""
    status = error.status if 400 <= error.status <= 599 else HTTPStatus.BAD_GATEWAY
    return int(status), _error(error.code, error.message)


class ConsoleHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], console: ConsoleServer) -> None:
        self.console = console
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    """One request to the console: a page, a download, or an API call forwarded as the
    caller (its ``server`` knows the console)."""

    server: ConsoleHttpServer
    server_version = "berth-console"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: bytes) -> None:
        self._send(status, body, "application/json")

    def _local(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in LOCAL_HOSTS

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        if not self._local():
            return self._json(403, _error("forbidden", "open the console on 127.0.0.1"))
        if parts.path.startswith("/api/"):
            return self._api(parts.path[4:], parts.query)
        if self.command != "GET":
            return self._json(405, _error("method_not_allowed", "pages are read only"))
        if parts.path.startswith("/download/jobs/"):
            return self._download(parts.path, parts.query)
        return self._static(parts.path)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def _api(self, path: str, query: str) -> None:
        if self.command not in METHODS:
            return self._json(405, _error("method_not_allowed", "GET, POST, PUT, DELETE"))
        given = self.headers.get(SECRET_HEADER) or ""
        if not secrets.compare_digest(given, self.server.console.secret):
            return self._json(403, _error("forbidden", "reload the console's page"))
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._json(413, _error("too_large", "at most 1 MiB"))
        body = self.rfile.read(length) if length else b""
        status, answer = self.server.console.forward(self.command, path, query, body)
        self._json(status, answer)

    def _download(self, path: str, query: str) -> None:
        given = dict(parse_qsl(query)).get("secret", "")
        if not secrets.compare_digest(given, self.server.console.secret):
            return self._json(403, _error("forbidden", "reload the console's page"))
        _, _, _, job_id, kind = [*path.split("/"), "", ""][:5]
        if kind not in {"result", "failure"}:
            return self._json(404, _error("not_found", "result or failure"))
        status, body = self.server.console.download(job_id, kind)
        if status != 200:
            return self._json(status, body)
        attachment = f'attachment; filename="{job_id}-{kind}.zip"'
        self._send(200, body, "application/zip", Content_Disposition=attachment)

    def _static(self, path: str) -> None:
        name = "index.html" if path in {"/", "/index.html"} else path.lstrip("/")
        folder, _, rest = name.partition("/")
        root, leaf = (VENDOR, rest) if folder == "vendor" else (STATIC, name)
        file = (root / leaf).resolve()
        if root.resolve() not in file.parents or not file.is_file():
            if folder == "vendor":
                message = "xterm.js is not bundled: run `make install` in the checkout"
                return self._json(404, _error("not_bundled", message))
            return self._json(404, _error("not_found", f"no page {path}"))
        body = file.read_bytes()
        if name == "index.html":
            body = body.replace(b"{{SECRET}}", self.server.console.secret.encode())
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        # the example page keeps its script inline: one file a product can copy
        scripts = "'self' 'unsafe-inline'" if name == "terminal.html" else "'self'"
        csp = (
            f"default-src 'self'; script-src {scripts}; connect-src 'self' ws: wss:; "
            "img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'"
        )
        self._send(200, body, kind, Content_Security_Policy=csp)
