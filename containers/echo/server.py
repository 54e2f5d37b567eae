"""Echo backend: answers every request with what it received, plus who it belongs to.

Standard library only, so the image stays tiny. Configured through the environment:
PORT (listen port), BERTH_SESSION_ID and BERTH_USER (set by berth when it starts the task
for a session; a warm-pool task has neither, only BERTH_WARM_POOL).
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024


class Echo(BaseHTTPRequestHandler):
    server_version = "berth-echo/1"

    def _answer(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        payload = {
            "session": os.environ.get("BERTH_SESSION_ID"),
            "user": os.environ.get("BERTH_USER"),
            "method": self.command,
            "path": self.path,
            "body": body,
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer(("0.0.0.0", port), Echo).serve_forever()  # noqa: S104 - a container's port


if __name__ == "__main__":
    main()
