"""Item 10: an unreachable or unauthorised tracking server is an error naming the server, never "no model".

Such failures are the project's ServiceError: one line naming the server and what to check, exit 7.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from retrain.cli import cli
from tests.conftest import point_mlflow

COMMANDS = [["status"], ["history"], ["rollback"], ["promote", "--candidate", "1", "--force", "--reason", "x"]]


class Server:
    """A real local HTTP server answering every request with one status code; counts requests."""

    def __init__(self, status: int, body: str) -> None:
        outer = self
        self.status = status
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += self.path.startswith("/api/")  # not the health check of the error message
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(request):
    status, body = request.param
    s = Server(status, body)
    yield s
    s.close()


def one_line(result) -> str:
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    return result.output


@pytest.mark.parametrize("server", [(401, "Unauthorized"), (403, "Forbidden")], indirect=True)
def test_an_unauthorised_server_is_one_line_naming_it(server, monkeypatch, tmp_path):
    point_mlflow(monkeypatch, f"http://alice:s3cret@127.0.0.1:{server.port}")
    for args in COMMANDS:
        out = CliRunner().invoke(cli, args)
        line = one_line(out)
        assert out.exit_code == 4, (args, line)  # the credentials, not the service: exit 4
        assert f"the tracking server http://alice:***@127.0.0.1:{server.port} refused the credentials" in line
        assert "s3cret" not in line and f"HTTP {server.status}" in line
        assert "(none)" not in line and "no moves" not in line and "not set" not in line


@pytest.mark.parametrize("server", [(503, "busy")], indirect=True)
def test_http_retries_are_bounded_and_the_users_setting_wins(server, monkeypatch):
    point_mlflow(monkeypatch, f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    out = CliRunner().invoke(cli, ["status"])
    assert out.exit_code == 7 and f"the tracking server http://127.0.0.1:{server.port} is unreachable" in one_line(out)
    assert server.requests == 3  # one request and two retries (MLflow's default: one and seven)
    server.requests = 0
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert CliRunner().invoke(cli, ["history"]).exit_code == 7
    assert server.requests == 1


def test_a_closed_port_is_one_line_naming_the_server(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    point_mlflow(monkeypatch, f"http://127.0.0.1:{port}")
    for args in COMMANDS[:2]:
        out = CliRunner().invoke(cli, args)
        line = one_line(out)
        assert out.exit_code == 7 and f"the tracking server http://127.0.0.1:{port} is unreachable" in line
