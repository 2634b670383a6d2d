"""A tracking "server" that fails on purpose: every request answered with one fault, in a thread of the test.

Faults: `401` and `403` (MLflow's JSON error bodies, as its auth app answers), `html502` (a proxy's error
page), `html200` (a web page where the API should be, e.g. a login portal), `hang` (accepts, never answers).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FAULTS = ("401", "403", "html502", "html200", "hang")
HTML = b"<html><head><title>Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
PORTAL = b"<!doctype html><html><body><form>Sign in to continue</form></body></html>"


def _handler(fault: str, release: threading.Event) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if fault == "hang":
                release.wait(60)
                return
            if fault in ("401", "403"):
                code = int(fault)
                body = json.dumps(
                    {
                        "error_code": "UNAUTHENTICATED" if code == 401 else "PERMISSION_DENIED",
                        "message": "You are not authenticated." if code == 401 else "Permission denied.",
                    }
                ).encode()
                kind = "application/json"
            else:
                code, body, kind = (502, HTML, "text/html") if fault == "html502" else (200, PORTAL, "text/html")
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fault_server(fault: str) -> Iterator[str]:
    """A server on 127.0.0.1 answering every request with `fault`; yields its URL."""
    release = threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fault, release))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
