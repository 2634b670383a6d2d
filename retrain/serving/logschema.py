"""What the prediction log is: its tables, the rows handed to it (`Batch`, `LoggedRequest`), its engine.

Table `requests`: one row per request: request id, time (UTC), model name, number of records, and the
body as the client sent it (JSON; the features of every record, read back with `payload.columns_of`).
Table `predictions`: one row per record and variant that scored it: request id, record index, time,
model name, entity id, assignment (`entity` = sticky by id, `request` = per request), variant
(`production`, `candidate`, `shadow`), version, served (whether this row is the answer), prediction,
probability, latency of the variant's scoring call (ms), error. Table `feedback`: late labels by request
id and record (an entity id is resolved to its latest prediction when the label arrives).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def tables():
    from sqlalchemy import Boolean, Column, DateTime, Float, Index, Integer, MetaData, SmallInteger, String, Table, Text

    metadata = MetaData()
    requests = Table(
        "requests",
        metadata,
        Column("request_id", String(36), primary_key=True),
        Column("at", DateTime, nullable=False),
        Column("model", String(256), nullable=False),
        Column("records", Integer, nullable=False),
        Column("body", Text, nullable=False),
    )
    predictions = Table(
        "predictions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("request_id", String(36), nullable=False),
        Column("record", Integer, nullable=False),
        Column("at", DateTime, nullable=False),
        Column("model", String(256), nullable=False),
        Column("entity_id", String(256)),
        Column("assignment", String(16), nullable=False),
        Column("variant", String(16), nullable=False),
        Column("version", String(32), nullable=False),
        Column("served", Boolean, nullable=False),
        Column("prediction", SmallInteger),
        Column("probability", Float),
        Column("latency_ms", Float),
        Column("error", Text),
        Index("ix_predictions_request", "request_id", "record"),
        Index("ix_predictions_model_at", "model", "at"),
        Index("ix_predictions_entity", "model", "entity_id", "at"),
    )
    feedback = Table(
        "feedback",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("request_id", String(36), nullable=False),
        Column("record", Integer, nullable=False),
        Column("label", SmallInteger, nullable=False),
        Column("at", DateTime, nullable=False),
        Column("entity_id", String(256)),
        Index("ix_feedback_request", "request_id", "record"),
    )
    return metadata, requests, predictions, feedback


def utcnow() -> datetime:
    """Naive UTC (what the log stores: the same in SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)


def make_engine(url: str):
    """An engine for `url`; SQLite gets WAL and a busy timeout so the service and readers share the file."""
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - exercised via every SQLite test
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def redact(url: str) -> str:
    """The URL without its password or credential query parameters, for /status and messages (the one
    redaction of every URI we show: `retrain.redaction`)."""
    from retrain.redaction import redact_uri

    return redact_uri(url)


@dataclass
class Batch:
    """One variant's scoring of one request, as handed to the writer (converted to rows off the request path)."""

    request_id: str
    at: datetime
    model: str
    variant: str
    version: str
    served: bool
    records: list[int]
    entity_ids: list[str | None]
    assignment: list[str]
    prediction: np.ndarray | None = None
    probability: np.ndarray | None = None
    latency_ms: float | None = None
    error: str | None = None

    def rows(self, at: Any = None) -> list[tuple]:
        """One tuple per record in `COLUMNS` order (`at` overrides the time value, e.g. pre-formatted for SQLite)."""
        n = len(self.records)
        prediction = self.prediction.tolist() if self.prediction is not None else [None] * n
        probability = self.probability.tolist() if self.probability is not None else [None] * n
        return list(
            zip(
                repeat(self.request_id),
                self.records,
                repeat(self.at if at is None else at),
                repeat(self.model),
                self.entity_ids,
                self.assignment,
                repeat(self.variant),
                repeat(self.version),
                repeat(self.served),
                prediction,
                probability,
                repeat(self.latency_ms),
                repeat(self.error),
            )
        )


COLUMNS = (
    "request_id",
    "record",
    "at",
    "model",
    "entity_id",
    "assignment",
    "variant",
    "version",
    "served",
    "prediction",
    "probability",
    "latency_ms",
    "error",
)
REQUEST_COLUMNS = ("request_id", "at", "model", "records", "body")


@dataclass
class LoggedRequest:
    """One request as the client sent it: the features of its records live in its body."""

    request_id: str
    at: datetime
    model: str
    records: int
    body: str

    def row(self, at: Any = None) -> tuple:
        return (self.request_id, self.at if at is None else at, self.model, self.records, self.body)


@dataclass
class Counters:
    """Rows handed to the log, rows written, failed write attempts, rows given up on at shutdown."""

    rows_in: int = 0
    rows_out: int = 0
    batches_failed: int = 0
    last_error: str | None = None
    lost: int = 0
