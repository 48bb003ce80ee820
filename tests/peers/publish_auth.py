"""A stream-key checker for nginx-rtmp's ``on_publish`` (notify_method get): 2xx for an allowed stream
name, 403 otherwise. A thread with http.server, so sync and async tests can both use it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class PublishAuth:
    server: ThreadingHTTPServer
    allowed: set[str]
    refused: list[str] = field(
        default_factory=list
    )  # how many publishes were refused (names kept for asserts)
    accepted: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/on_publish"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_publish_auth(allowed: set[str]) -> PublishAuth:
    auth: PublishAuth

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = parse_qs(urlparse(self.path).query).get("name", [""])[0]
            ok = name in auth.allowed
            (auth.accepted if ok else auth.refused).append(name)
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    auth = PublishAuth(server, allowed)
    threading.Thread(target=server.serve_forever, name="publish-auth", daemon=True).start()
    return auth
