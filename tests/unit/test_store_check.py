"""The store pre-flight: which SQLite paths, database URIs and server URIs a command refuses, in one line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from retrain.errors import ConfigError, ServiceError
from retrain.store_check import check_uri, sqlite_path


def test_sqlite_paths_relative_absolute_and_in_memory():
    assert sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert sqlite_path("sqlite:////tmp/x/mlflow.db") == Path("/tmp/x/mlflow.db")
    assert sqlite_path("sqlite:////tmp/x/mlflow.db?timeout=5") == Path("/tmp/x/mlflow.db")
    assert sqlite_path("sqlite://") is None and sqlite_path("sqlite:///:memory:") is None


def _database(path: Path, rows: int = 2000) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("create table t (x text)")
        db.executemany("insert into t values (?)", [("x" * 100,)] * rows)
    return path


def test_usable_stores_pass(tmp_path):
    check_uri(f"sqlite:///{_database(tmp_path / 'ok.db')}")
    (tmp_path / "empty.db").touch()  # SQLite's own empty database: MLflow makes its tables
    check_uri(f"sqlite:///{tmp_path / 'empty.db'}")
    check_uri(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'mlflow.db'}", create=True)
    assert not (tmp_path / "new").exists()  # the check creates nothing
    check_uri("http://user:pw@127.0.0.1:5000")  # credentials in a server URI are fine (and never shown)


@pytest.mark.parametrize(
    ("make", "error", "says"),
    [
        (lambda d: d / "settings.yaml" / "mlflow.db", ServiceError, "settings.yaml is a file, not a folder"),
        (lambda d: d / "folder.db", ServiceError, "folder.db is a folder"),
        (lambda d: d / "garbage.db", ServiceError, "is not an SQLite database"),
        (lambda d: d / "truncated.db", ServiceError, "is truncated"),
        (lambda d: d / "missing" / "mlflow.db", ConfigError, "does not exist"),
        (lambda d: Path("/proc/nope/mlflow.db"), ServiceError, "cannot be created in /proc"),
    ],
)
def test_unusable_or_missing_sqlite_stores_are_one_line(make, error, says, tmp_path):
    (tmp_path / "settings.yaml").write_text("a: 1\n")
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "garbage.db").write_bytes(b"not SQLite at all" * 50)
    whole = _database(tmp_path / "whole.db").read_bytes()
    (tmp_path / "truncated.db").write_bytes(whole[: len(whole) // 2])
    path = make(tmp_path)
    with pytest.raises(error) as info:
        check_uri(f"sqlite:///{path}", create=error is ServiceError)  # unusable even where a store may be new
    message = str(info.value)
    assert says in message and f"sqlite:///{path}" in message and "\n" not in message
    assert not (tmp_path / "missing").exists()


def test_a_query_string_in_a_server_uri_is_refused_with_its_token_masked():
    with pytest.raises(ConfigError) as info:
        check_uri("https://u:SECRET@mlflow.example.com/?token=SECRET2")
    message = str(info.value)
    assert "has a query string, which MLflow cannot use" in message and "MLFLOW_TRACKING_TOKEN" in message
    assert "SECRET" not in message and "https://u:***@mlflow.example.com/?token=***" in message
