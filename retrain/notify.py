"""Cycle events: one JSON line each in the events file, a log message, and an optional Slack-compatible webhook.

Events are dicts with a `kind` and the caller's fields. `format_message` knows these shapes:
- `{"kind": "promoted", "model", "version", "metric", "before", "after"}` (`before` None for a first model);
- `{"kind": "rolled_back", "model", "version", "from_version", "reason"}`;
- registry moves (`retrain promote`, `rollback`, `status --repair`) add `seq` and `actor`; a forced
  promotion is `promoted` with the reason "forced: ...", a repair is `repaired`;
- any other kind: `"<kind> <model> v<version>: <reason>"` with whichever of those fields are present.
The webhook URL is read from the environment variable named by `notify.webhook_env`; it is never logged
or written to the events file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrain.config import Settings
from retrain.errors import NotifyError

log = logging.getLogger("retrain")


@dataclass(frozen=True)
class NotifyResult:
    """The message sent, where the event was appended, and what happened to the webhook."""

    message: str
    events_path: str
    webhook: str  # "not configured", "sent", or "failed: <reason>"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_message(event: dict[str, Any]) -> str:
    """One readable line for an event, e.g. "promoted churn-classifier v3 (roc_auc 0.812 -> 0.845, +4.1%)"."""
    kind = event.get("kind", "event")
    model = f" {event['model']}" if event.get("model") else ""
    version = f" v{event['version']}" if event.get("version") is not None else ""
    reason = f": {event['reason']}" if event.get("reason") else ""
    if kind == "promoted" and event.get("metric") and event.get("after") is not None:
        metric, before, after = event["metric"], event.get("before"), float(event["after"])
        if before is None:
            return f"promoted{model}{version} ({metric} {after:.3f}; first production model)"
        before = float(before)
        change = f", {(after - before) / abs(before):+.1%}" if before else ""
        return f"promoted{model}{version} ({metric} {before:.3f} -> {after:.3f}{change})"
    if kind == "rolled_back":
        source = f" from v{event['from_version']}" if event.get("from_version") is not None else ""
        return f"rolled back{model} to{version}{source}{reason}"
    return f"{kind}{model}{version}{reason}"


def _append(events_path: str, text: str) -> Path:
    path = Path(events_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise NotifyError(
            f"cannot append events to {path}: {exc.strerror or exc}; set notify.events_path (or "
            f"${EVENTS_PATH_ENV}) to a writable file"
        ) from None
    return path


EVENTS_PATH_ENV = "RETRAIN_EVENTS_PATH"


def events_path(settings: Settings) -> str:
    """Where events go: $RETRAIN_EVENTS_PATH when set (a container's volume), else notify.events_path
    (relative paths count from the working folder)."""
    return os.environ.get(EVENTS_PATH_ENV, "").strip() or settings.notify.events_path


def ensure_writable(settings: Settings) -> None:
    """Fail before a cycle does any work if its events file cannot be appended to."""
    _append(events_path(settings), "")


def notify(settings: Settings, event: dict[str, Any]) -> NotifyResult:
    """Append the event to the events file, log its message, POST it to the webhook if one is configured.

    An events file that cannot be written raises NotifyError; a failing webhook is reported, never raised.
    """
    from retrain.store import safe_text

    spec = settings.notify
    event = {k: safe_text(v) if isinstance(v, str) else v for k, v in event.items()}  # no secrets in events
    message = format_message(event)
    record = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "event",
        **event,
        "message": message,
    }
    path = _append(events_path(settings), json.dumps(record, default=str, sort_keys=True) + "\n")
    log.info(message)
    url = os.environ.get(spec.webhook_env, "").strip()
    webhook = _post(url, message, spec.timeout_s, spec.retries) if url else "not configured"
    if webhook != "sent" and url:
        log.warning("webhook from $%s %s", spec.webhook_env, webhook)
    return NotifyResult(message, str(path), webhook)


def _post(url: str, message: str, timeout_s: float, retries: int) -> str:
    """POST {"text": message} with bounded retries and capped exponential backoff; "sent" or "failed: ..."."""
    import urllib.error
    import urllib.parse
    import urllib.request

    try:
        parsed = urllib.parse.urlsplit(url)
        usable = parsed.scheme in ("http", "https") and bool(parsed.netloc)
    except ValueError:
        usable = False
    if not usable:  # never echo the URL: it may hold a secret token
        return "failed: the webhook URL is not an http(s)://host/... URL; fix the variable's value (not sent)"
    body = json.dumps({"text": message}).encode()
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        try:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=timeout_s):
                return "sent"
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code != 429:
                break  # the request itself is wrong: retrying cannot help
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        except Exception as exc:
            reason = f"{type(exc).__name__} (the URL cannot be used)"
            break
    # Error texts rarely carry the URL, but it may hold a secret token: never let it through.
    return f"failed: {reason.replace(url, '<webhook>')} after {attempt + 1} attempt(s)"
