"""A fake berth API on loopback, for the client's and the CLI's tests: every request is
answered by ``respond(method, path, headers) -> (status, JSON body)``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[str, str, dict[str, str]], tuple[int, Any]]


BODY = "X-Fake-Body"
"""Where the request's body reaches ``respond``, beside its headers."""


@contextmanager
def serving(respond: Respond) -> Iterator[str]:
    """The fake API's base URL while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def _answer(self) -> None:
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items()) | {BODY: sent.decode("utf-8", "replace")}
            status, body = respond(self.command, self.path, headers)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
