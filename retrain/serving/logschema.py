"""What the prediction log is: its tables, the rows handed to it (`Batch`, `LoggedRequest`), its engine.

Table `predictions`: one row per record and variant that scored it: request id, record index, time,
model name, entity id, assignment (`entity` = sticky by id, `request` = per request), variant
(`production`, `candidate`, `shadow`), version, served (whether this row is the answer), prediction,
probability, latency of the variant's scoring call (ms), error, and the record's fields once per record
(on the row that answered it): `features` is a JSON list of values, `feature_set` the id of their
names in table `feature_sets` (one row per distinct list: `{"columns": [...], "entity": NAME}`; the
field NAME, the record's entity id as sent, is not repeated in `features`: it is the row's `entity_id`).
Table `feedback`: late labels by request id and record (an entity id is resolved to its latest
prediction when the label arrives).
Table `requests` is only read: logs written before the features moved onto the rows kept each request's
body there (see `logmigrate`). On SQLite times are integer microseconds since the epoch (8 bytes, not a
26-character text); on other databases a native timestamp. Reads see naive UTC either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


EPOCH = datetime(1970, 1, 1)


def _timestamp_type():
    """Naive UTC datetimes: integer microseconds on SQLite, a native timestamp elsewhere."""
    from sqlalchemy import BigInteger, DateTime, TypeDecorator

    class Timestamp(TypeDecorator):
        impl = DateTime
        cache_ok = True

        def load_dialect_impl(self, dialect):
            return dialect.type_descriptor(BigInteger() if dialect.name == "sqlite" else DateTime())

        def process_bind_param(self, value, dialect):
            if value is None or dialect.name != "sqlite":
                return value
            return to_micros(value)

        def process_result_value(self, value, dialect):
            if value is None or dialect.name != "sqlite":
                return value
            if isinstance(value, str):  # a log from before the migration, read before it ran
                return datetime.fromisoformat(value)
            return EPOCH + timedelta(microseconds=int(value))

    return Timestamp


def to_micros(at: datetime) -> int:
    """A naive UTC datetime as integer microseconds since the epoch (how SQLite logs store times)."""
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def tables():
    from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, SmallInteger, String, Table, Text

    DateTime = _timestamp_type()
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
        Column("feature_set", Integer),
        Column("features", Text),
        Index("ix_predictions_request", "request_id", "record"),
        Index("ix_predictions_at", "at"),
        Index("ix_predictions_entity_id", "entity_id"),
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
        Index("ix_feedback_request_id", "request_id", "record", "id"),
    )
    feature_sets = Table(
        "feature_sets",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("names", Text, nullable=False, unique=True),
    )
    return metadata, requests, predictions, feedback, feature_sets


def utcnow() -> datetime:
    """Naive UTC (what the log stores: the same in SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_request_id(at: datetime, entropy: bytes | None = None) -> str:
    """A new request id: a UUID version 7 (RFC 9562) of naive-UTC time `at`, as standard UUID text.

    48 bits of milliseconds since the epoch, then 74 random bits (`entropy`: 10 bytes, `os.urandom` by default).
    Ids sort by time, so a window's predictions and their labels lie together in the log's request-id indexes
    (a watch or report reads a range, not pages scattered over the whole log); the random part keeps them unique.
    """
    ms = (at - EPOCH) // timedelta(milliseconds=1)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | int.from_bytes(entropy or os.urandom(10), "big") & (1 << 80) - 1
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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

    def rows(self, at: Any = None, features: dict[int, tuple[int, str]] | None = None) -> list[tuple]:
        """One tuple per record in `COLUMNS` order (`at` overrides the time value, e.g. integer micros for SQLite;
        `features` maps a record index to the (feature set id, features JSON) this row carries)."""
        n = len(self.records)
        carried = [features.get(i, (None, None)) for i in self.records] if features else [(None, None)] * n
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
                (c[0] for c in carried),
                (c[1] for c in carried),
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
    "feature_set",
    "features",
)


@dataclass
class LoggedRequest:
    """One request as the client sent it; the writer turns its body into one features list per record."""

    request_id: str
    at: datetime
    model: str
    records: int
    body: str


@dataclass
class Counters:
    """Rows handed to the log, rows written, failed write attempts, rows given up on at shutdown."""

    rows_in: int = 0
    rows_out: int = 0
    batches_failed: int = 0
    last_error: str | None = None
    lost: int = 0
