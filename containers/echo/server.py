"""Echo backend: answers every request with what it received, plus who it belongs to; a
WebSocket (``Upgrade: websocket``) gets every text message back.

Standard library only, so the image stays tiny. Configured through the environment:
PORT (listen port), BERTH_SESSION_ID and BERTH_USER (set by berth when it starts the task
for a session; a warm-pool task has neither, only BERTH_WARM_POOL). When the profile keeps
storage, BERTH_STORAGE_PATH names the user's volume: ``PUT /storage/<name>`` keeps the body
there as a file, ``GET /storage/<name>`` answers it (404 when there is none).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024
STORED_NAME = re.compile(r"/storage/([A-Za-z0-9_-][A-Za-z0-9._-]{0,99})")
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Echo(BaseHTTPRequestHandler):
    server_version = "berth-echo/1"
    protocol_version = "HTTP/1.1"  # a WebSocket handshake answers HTTP/1.1 101

    def _answer(self) -> None:
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
            return
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        stored = STORED_NAME.fullmatch(self.path)
        if stored and os.environ.get("BERTH_STORAGE_PATH"):
            self._storage(os.path.join(os.environ["BERTH_STORAGE_PATH"], stored.group(1)), body)
            return
        payload = {
            "session": os.environ.get("BERTH_SESSION_ID"),
            "user": os.environ.get("BERTH_USER"),
            "method": self.command,
            "path": self.path,
            "body": body,
        }
        self._json(200, payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def _storage(self, path: str, body: str) -> None:
        """A file in the user's volume: PUT keeps ``body``, GET answers it."""
        if self.command == "PUT":
            with open(path, "w", encoding="utf-8") as out:
                out.write(body)
            self._json(200, {"stored": os.path.basename(path)})
        elif os.path.isfile(path):
            with open(path, encoding="utf-8") as kept:
                self._json(200, {"name": os.path.basename(path), "content": kept.read()})
        else:
            self._json(404, {"missing": os.path.basename(path)})

    def _json(self, status: int, payload: dict[str, str | None]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _websocket(self) -> None:
        """RFC 6455, just enough: the handshake, then each text frame echoed until close."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest())  # noqa: S324 - the protocol's own
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self.rfile.read(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self.rfile.read(8))
            if length > MAX_BODY:
                return
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 0x8:  # close
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 0x9:  # ping → pong
                opcode = 0xA
            size = len(data)
            prefix = bytes([0x80 | opcode])
            if size < 126:
                prefix += bytes([size])
            else:
                prefix += bytes([126]) + struct.pack(">H", size)
            self.wfile.write(prefix + data)
            self.wfile.flush()


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    host = os.environ.get("BIND", "0.0.0.0")  # noqa: S104 - a container's port (make local: loopback)
    server = ThreadingHTTPServer((host, port), Echo)
    print(f"berth-echo listening on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
