"""Before a command touches the tracking store: is it usable, and is it the store the user meant?

MLflow would otherwise turn a mistyped SQLite path into a new empty store (and `run` would promote a v1 into
it), a file standing where a folder should be into a `FileExistsError` traceback, garbage or a truncated file
into `database disk image is malformed`, and a dead PostgreSQL into ~100 s of retried engine creation. Here
each is one line naming the store (secrets redacted):

- a SQLite file that does not exist: refused (exit 2) unless it is MLflow's default store in the working
  folder (`mlflow.db`, MLFLOW_TRACKING_URI unset), the command runs under `mlflow run` (which made it), or
  the command was asked to create it (`retrain run --create`, or RETRAIN_CREATE_STORE=true for any command);
- a SQLite path that cannot hold a database (a file as a parent folder, a folder as the file, an unwritable
  place, not SQLite, truncated): exit 7;
- a database server (PostgreSQL, MySQL): one connection attempt with a short timeout, retried briefly
  (RETRAIN_STORE_CONNECT_TIMEOUT seconds, default 3; RETRAIN_STORE_CONNECT_RETRIES, default 1): exit 7, or
  exit 4 when it refuses the credentials;
- a tracking server URI with a query string: exit 2, because MLflow appends its API paths to the URI (a
  query string turns every request into a request for `/`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from retrain.errors import ConfigError, ServiceError
from retrain.redaction import redact_uri

CREATE_ENV = "RETRAIN_CREATE_STORE"
CONNECT_TIMEOUT_ENV = "RETRAIN_STORE_CONNECT_TIMEOUT"
CONNECT_RETRIES_ENV = "RETRAIN_STORE_CONNECT_RETRIES"
SQLITE_HEADER = b"SQLite format 3\x00"
DATABASE_SCHEMES = ("postgresql", "mysql", "mariadb")


def check_store(create: bool = False) -> None:
    """Refuse (one line) a tracking or registry store that cannot be used or that does not exist yet."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    create = (
        create
        or not is_tracking_uri_set()  # MLflow's default store in the working folder
        or bool(os.environ.get("MLFLOW_RUN_ID"))  # `mlflow run` made the store before this step started
        or os.environ.get(CREATE_ENV, "").strip().lower() in ("1", "true", "yes")
    )
    for uri in dict.fromkeys([mlflow.get_tracking_uri(), mlflow.get_registry_uri()]):
        check_uri(uri, create=create)


def check_uri(uri: str, create: bool = False) -> None:
    """Refuse `uri` when it cannot be a tracking store; `create`: a SQLite file may be made there."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        _check_server_uri(uri)
    elif scheme == "sqlite":
        _check_sqlite(uri, create)
    elif scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        _check_database(uri)


def _check_server_uri(uri: str) -> None:
    from urllib.parse import urlsplit

    if urlsplit(uri).query:
        raise ConfigError(
            f"the tracking URI {redact_uri(uri)} has a query string, which MLflow cannot use (it appends its API "
            "paths to the URI, so every request would go to `/`); pass a token as MLFLOW_TRACKING_TOKEN, a user "
            "and password as MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD, and drop the query from the URI"
        )


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` URI (None for an in-memory database)."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    rest = rest.split("?", 1)[0]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:])  # sqlite:///relative.db, sqlite:////absolute.db


def _check_sqlite(uri: str, create: bool) -> None:
    path = sqlite_path(uri)
    if path is None:
        return
    shown = redact_uri(uri)
    if path.exists():
        _check_sqlite_file(path, shown)
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ServiceError(
            f"the tracking store {shown} cannot be used: {ancestor} is a file, not a folder; fix MLFLOW_TRACKING_URI"
        )
    import tempfile

    try:  # what MLflow will do there: create folders and a file (a probe, removed at once)
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".retrain-store-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ServiceError(
            f"the tracking store {shown} cannot be created in {ancestor}: {exc.strerror or exc}; fix "
            "MLFLOW_TRACKING_URI"
        ) from None
    if not create:
        raise ConfigError(
            f"the tracking store {shown} does not exist (no file {path}): it would be a new, empty store with "
            "no registry; check MLFLOW_TRACKING_URI, or start a new store there with `retrain run --create`"
        )


def _check_sqlite_file(path: Path, shown: str) -> None:
    if path.is_dir():
        raise ServiceError(f"the tracking store {shown} cannot be used: {path} is a folder; fix MLFLOW_TRACKING_URI")
    try:
        with path.open("rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except OSError as exc:
        raise ServiceError(
            f"the tracking store {shown} cannot be read: {exc.strerror or exc}; fix its permissions or "
            "MLFLOW_TRACKING_URI"
        ) from None
    if size == 0:
        return  # SQLite's own empty database: MLflow makes its tables
    if not header.startswith(SQLITE_HEADER):
        raise ServiceError(
            f"the tracking store {shown} is not an SQLite database (the file holds something else); "
            "point MLFLOW_TRACKING_URI at the right file or restore it from a backup"
        )
    expected = _sqlite_size(header)
    if expected is not None and size < expected:
        raise ServiceError(
            f"the tracking store {shown} is truncated ({size} of {expected} bytes); restore it from a backup"
        )


def _sqlite_size(header: bytes) -> int | None:
    """The size the database's header promises (page size x page count), when the header's count is valid."""
    if len(header) < 100:
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages == 0 or header[24:28] != header[92:96]:  # the count is valid only when both counters agree
        return None
    return page_size * pages


def _check_database(uri: str) -> None:
    """One short connection attempt (retried briefly) before MLflow's engine retries for ~100 s."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    from retrain.service_errors import service_error

    timeout = _env_int(CONNECT_TIMEOUT_ENV, 3)
    retries = _env_int(CONNECT_RETRIES_ENV, 1)  # at worst 2 x 3 s + 0.5 s: a dead database named in seconds
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args={"connect_timeout": timeout})
    except Exception as exc:  # a driver that is not installed, a malformed URL
        raise ConfigError(f"the tracking store {redact_uri(uri)} cannot be used: {exc}") from None
    try:
        for attempt in range(retries + 1):
            try:
                with engine.connect():
                    return
            except Exception as exc:
                error = exc
                if "authentication failed" in str(exc) or "Access denied" in str(exc) or attempt == retries:
                    break
                time.sleep(0.5 * 2**attempt)
    finally:
        engine.dispose()
    raise service_error(error, uri) or ServiceError(
        f"the tracking database {redact_uri(uri)} is unreachable: {type(error).__name__}; check that it is up "
        "and that MLFLOW_TRACKING_URI is right"
    ) from None


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number of seconds/attempts") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name}={value} is out of range 0..3600")
    return value
