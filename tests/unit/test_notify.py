"""Notifications: events appended as JSON lines, readable messages, a real webhook with bounded retries."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from retrain.config import NotifySpec, Settings
from retrain.errors import NotifyError
from retrain.notify import format_message, notify

PROMOTED = {
    "kind": "promoted",
    "model": "churn-classifier",
    "version": "3",
    "metric": "roc_auc",
    "before": 0.812,
    "after": 0.845,
}


def _settings(path: Path | str, **notify_kw) -> Settings:
    kw = {"events_path": str(path), "webhook_env": "TEST_RETRAIN_WEBHOOK", "timeout_s": 0.5, "retries": 2}
    return Settings(notify=NotifySpec(**{**kw, **notify_kw}))


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1; `statuses` scripts the replies (the last one repeats)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            srv.bodies.append(json.loads(body))
            srv.content_types.append(self.headers["Content-Type"])
            status = srv.statuses[min(len(srv.bodies) - 1, len(srv.statuses) - 1)]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.bodies, srv.content_types, srv.statuses = [], [], [200]
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/hooks/SECRET-TOKEN"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_messages():
    assert format_message(PROMOTED) == "promoted churn-classifier v3 (roc_auc 0.812 -> 0.845, +4.1%)"
    assert format_message({**PROMOTED, "before": None}) == (
        "promoted churn-classifier v3 (roc_auc 0.845; first production model)"
    )
    assert format_message({"kind": "rolled_back", "model": "m", "version": 2, "from_version": 3, "reason": "bad"}) == (
        "rolled back m to v2 from v3: bad"
    )
    assert format_message({"kind": "kept", "model": "m", "version": "2", "reason": "gain 0.004 < 0.01"}) == (
        "kept m v2: gain 0.004 < 0.01"
    )
    assert format_message({"kind": "check", "reason": "no retraining needed"}) == "check: no retraining needed"


def test_events_are_appended_as_json_lines(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_RETRAIN_WEBHOOK", raising=False)
    path = tmp_path / "new" / "folder" / "events.jsonl"
    first = notify(_settings(path), PROMOTED)
    notify(_settings(path), {"kind": "check", "reason": "no retraining needed", "run_id": "abc"})
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    events = [json.loads(line) for line in lines]
    assert events[0]["kind"] == "promoted" and events[0]["after"] == 0.845
    assert events[1] == {**events[1], "kind": "check", "run_id": "abc"}
    assert all(e["time"].endswith("+00:00") for e in events)
    assert first.webhook == "not configured" and first.events_path == str(path)


def test_webhook_receives_slack_compatible_post(tmp_path, monkeypatch, server, caplog):
    monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", server.url)
    with caplog.at_level(logging.INFO, logger="retrain"):
        result = notify(_settings(tmp_path / "events.jsonl"), PROMOTED)
    assert result.webhook == "sent"
    assert server.bodies == [{"text": "promoted churn-classifier v3 (roc_auc 0.812 -> 0.845, +4.1%)"}]
    assert server.content_types == ["application/json"]
    assert result.message in caplog.text
    assert "SECRET-TOKEN" not in caplog.text and "SECRET-TOKEN" not in (tmp_path / "events.jsonl").read_text()


def test_webhook_retries_server_errors(tmp_path, monkeypatch, server):
    server.statuses = [500, 500, 200]
    monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", server.url)
    assert notify(_settings(tmp_path / "e.jsonl"), PROMOTED).webhook == "sent"
    assert len(server.bodies) == 3


def test_failing_webhook_is_reported_not_raised_with_bounded_attempts(tmp_path, monkeypatch, server, caplog):
    server.statuses = [503]
    monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", server.url)
    with caplog.at_level(logging.INFO, logger="retrain"):
        result = notify(_settings(tmp_path / "e.jsonl", retries=2), PROMOTED)
    assert result.webhook == "failed: HTTP 503 after 3 attempt(s)"
    assert len(server.bodies) == 3
    assert any(r.levelno == logging.WARNING and "HTTP 503" in r.getMessage() for r in caplog.records)
    assert "SECRET-TOKEN" not in caplog.text
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 1  # the event is still recorded


def test_client_errors_are_not_retried(tmp_path, monkeypatch, server):
    server.statuses = [404]
    monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", server.url)
    assert notify(_settings(tmp_path / "e.jsonl"), PROMOTED).webhook == "failed: HTTP 404 after 1 attempt(s)"
    assert len(server.bodies) == 1


def test_silent_endpoint_times_out_and_closed_port_is_refused(tmp_path, monkeypatch, caplog):
    with socket.socket() as silent:  # accepts connections (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", f"http://127.0.0.1:{silent.getsockname()[1]}/x?token=SECRET")
        with caplog.at_level(logging.INFO, logger="retrain"):
            result = notify(_settings(tmp_path / "e.jsonl", timeout_s=0.2, retries=1), {"kind": "check"})
    assert result.webhook.startswith("failed: ") and "timed out" in result.webhook
    assert result.webhook.endswith("after 2 attempt(s)")
    assert "SECRET" not in caplog.text and "SECRET" not in result.webhook
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", f"http://127.0.0.1:{port}/x")
    refused = notify(_settings(tmp_path / "e.jsonl", timeout_s=0.2, retries=0), {"kind": "check"})
    assert refused.webhook.startswith("failed: ") and "refused" in refused.webhook.lower()


@pytest.mark.parametrize("kind", ["directory", "under_a_file"])
def test_unwritable_events_path_raises(tmp_path, monkeypatch, kind):
    monkeypatch.delenv("TEST_RETRAIN_WEBHOOK", raising=False)
    (tmp_path / "plain").write_text("x")
    path = tmp_path if kind == "directory" else tmp_path / "plain" / "events.jsonl"
    with pytest.raises(NotifyError, match=f"cannot append events to {path}"):
        notify(_settings(path), PROMOTED)


@pytest.mark.parametrize(
    "url",
    [
        "hooks.example.com/services/SECRET-TOKEN",
        "ftp://hooks.example.com/SECRET-TOKEN",
        "http:///SECRET-TOKEN",
        "http://exa mple.com/SECRET-TOKEN",
        "http://[SECRET-TOKEN/x",
    ],
)
def test_malformed_webhook_url_is_reported_without_the_url(tmp_path, monkeypatch, caplog, url):
    monkeypatch.setenv("TEST_RETRAIN_WEBHOOK", url)
    with caplog.at_level(logging.INFO, logger="retrain"):
        result = notify(_settings(tmp_path / "e.jsonl", timeout_s=0.2, retries=1), PROMOTED)
    assert result.webhook.startswith("failed: ")
    assert "SECRET" not in result.webhook and "SECRET" not in caplog.text
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 1
    assert "SECRET" not in (tmp_path / "e.jsonl").read_text()
