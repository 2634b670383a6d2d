"""Calls to the tracking store for registry work: lock contention retried, every other failure one line.

`GuardedClient` wraps an MlflowClient. "Does not exist", "already exists" and "invalid parameter"
answers pass through as MlflowException, because callers decide what they mean (no model, a lost
claim, a bad version number). A busy SQLite file or a PostgreSQL deadlock is retried with capped,
jittered backoff: under concurrent writers it is contention, not an answer. A service that cannot be
reached or refuses us (connection refused, 401/403, its database down) becomes the project's
ServiceError (exit 7, `tracking.service_error` says which service and what to check); anything else
becomes a RegistryError naming the tracking server (without credentials) and the error. So no command
ever mistakes an unreachable server for an empty registry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator
from typing import Any

from retrain.errors import RegistryError, RetrainError
from retrain.redaction import redact_uri, scrub

PASS_THROUGH = frozenset({"RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE"})
# Registry writes MlflowClient precedes with a get_registered_model (is the name a prompt?), one more
# read per write (11 of a rollback's 25 store calls). Every write of ours follows our own read of the
# model through MlflowClient.get_registered_model, which already answers "does not exist" for a
# prompt, so these go straight to the registry client (same arguments, same store calls otherwise).
DIRECT_WRITES = frozenset(
    {
        "set_registered_model_alias",
        "delete_registered_model_alias",
        "set_registered_model_tag",
        "delete_registered_model_tag",
        "set_model_version_tag",
        "delete_model_version_tag",
        "update_model_version",
        "update_registered_model",
    }
)
CONTENTION = ("database is locked", "deadlock detected", "could not serialize access", "database table is locked")

# MLflow's defaults retry an unreachable server for ~4 minutes (7 retries, backoff factor 2) and wait 120 s
# for each answer, also between retries of a server that accepts and never answers (16 minutes). Our
# commands bound both; a value the user set in the environment wins. Operator commands on the registry fail
# fast (3 tries, 20 s each); the loop's steps ride out a restart of the server (5 tries over ~30 s of
# backoff, 30 s each: a model's artifacts go through the server too).
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
LOOP_HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@contextlib.contextmanager
def bounded_http_retries(bounds: dict[str, str] = HTTP_BOUNDS) -> Iterator[None]:
    """Bound MLflow's HTTP retries and timeout for the duration of one command (settings already made win:
    the user's, or a tighter bound of an enclosing command)."""
    added = [k for k in bounds if k not in os.environ]
    for key in added:
        os.environ[key] = bounds[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


redact = redact_uri  # the one redaction of URIs (retrain.redaction), under the name callers here know


@contextlib.contextmanager
def no_run_links_with_secrets(uris: list[str]) -> Iterator[None]:
    """While a URI in `uris` carries credentials, turn off MLflow's "View run ... at: URL" lines (MLflow prints the
    tracking URI as given, password included), here and in the processes started meanwhile; restored after."""
    from retrain.redaction import has_secrets

    key = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    if key in os.environ or not any(has_secrets(uri) for uri in uris):
        yield
        return
    os.environ[key] = "true"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def store_uris() -> list[str]:
    """The tracking and registry URIs in use (MLflow's, else the environment's): whose secrets never leave."""
    import sys

    mlflow = sys.modules.get("mlflow")
    uris = [os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("MLFLOW_REGISTRY_URI", "")]
    if mlflow is not None:
        uris += [mlflow.get_tracking_uri(), mlflow.get_registry_uri() or ""]
    return [u for u in dict.fromkeys(uris) if u]


def safe_text(text: str) -> str:
    """`text` with URIs redacted and the store's secrets masked: for every line, event, tag and param we write."""
    return scrub(text, store_uris())


def server_uri() -> str:
    import mlflow

    return redact(mlflow.get_registry_uri() or mlflow.get_tracking_uri())


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def ui_url(route: str) -> str:
    """The address of the UI's `route` (`retrain.describe.run_route`, `model_route`): on the tracking server
    when it is one, else where `mlflow ui` serves the local store by default."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    base = redact(uri).rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/{route}"


def is_contention(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in CONTENTION)


def describe(exc: BaseException) -> str:
    """The first meaningful line of an error, without credentials, at most 300 characters."""
    from mlflow.exceptions import MlflowException

    text = str(exc).strip()
    if not isinstance(exc, MlflowException):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = safe_text(text)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    return line[:300]


class _DropHandledLockErrors(logging.Filter):
    """MLflow logs a full traceback for every SQLite lock error before raising it; we retry those."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and is_contention(exc))


_FILTER = _DropHandledLockErrors()


class GuardedClient:
    """An MlflowClient whose calls retry lock contention and turn other failures into RegistryError."""

    def __init__(self, client: Any, attempts: int = 12, first_wait_s: float = 0.02, max_wait_s: float = 1.0) -> None:
        self._client = client
        self.attempts = attempts
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        logging.getLogger("mlflow.store.db.utils").addFilter(_FILTER)

    def __getattr__(self, name: str) -> Any:
        target = self._client
        if name in DIRECT_WRITES:
            from mlflow import MlflowClient

            if isinstance(target, MlflowClient):
                target = target._get_registry_client()
        attr = getattr(target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, attr, args, kwargs)

        return call

    def _call(self, name: str, fn: Any, args: tuple, kwargs: dict) -> Any:
        from mlflow.exceptions import MlflowException

        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except RetrainError:
                raise
            except MlflowException as exc:
                if exc.error_code in PASS_THROUGH:
                    raise
                error: Exception = exc
            except Exception as exc:
                error = exc
            if not is_contention(error) or attempt == self.attempts - 1:
                break
            wait = min(self.max_wait_s, self.first_wait_s * 2**attempt)
            time.sleep(wait * (0.5 + random.random()))
        from retrain.service_errors import service_error

        service = service_error(error)
        if service is not None:
            raise service from None
        raise RegistryError(f"tracking server {server_uri()} failed ({name}): {describe(error)}") from None
