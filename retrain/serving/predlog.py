"""The prediction log on SQLAlchemy (SQLite by default, any SQLAlchemy URL such as PostgreSQL): rows, feedback, queries.

Table `requests`: one row per request: request id, time (UTC), model name, number of records, and the
body as the client sent it (JSON; the features of every record, read back with `payload.columns_of`).
Table `predictions`: one row per record and variant that scored it: request id, record index, time,
model name, entity id, assignment (`entity` = sticky by id, `request` = per request), variant
(`production`, `candidate`, `shadow`), version, served (whether this row is the answer), prediction,
probability, latency of the variant's scoring call (ms), error. Table `feedback`: late labels by request
id and record (an entity id is resolved to its latest prediction when the label arrives).

Rows are written off the request path: the service hands each request's body and batches to
`PredictionLog.add` as one group; a writer thread inserts groups in transactions of about `batch_rows`
prediction rows (a request's rows always together) at least every `flush_s` seconds, and `close()`
writes everything still queued (graceful shutdown loses nothing). Keeping the body instead of one
features document per row spares the writer a serialisation per record. The queue is unbounded on
purpose: a slow database costs memory (shown in /status), never rows.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger("retrain.serving")


def _tables():
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
    """The URL without its password, for /status and messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


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


class PredictionLog:
    """The log's tables on one engine, with a background writer for prediction rows."""

    def __init__(self, url: str, batch_rows: int = 2000, flush_s: float = 0.25, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.metadata, self.requests, self.predictions, self.feedback = _tables()
        if create:
            self.metadata.create_all(self.engine)
        self.batch_rows, self.flush_s = batch_rows, flush_s
        # The writer hands rows to the driver's executemany (a C loop) instead of per-row SQLAlchemy processing:
        # at 1,000-record requests that keeps the writer thread from competing with scoring for the GIL.
        style = self.engine.dialect.paramstyle
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(style)
        self._insert_sql = (
            f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"
            if mark
            else None
        )
        self._request_sql = (
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({', '.join([mark] * len(REQUEST_COLUMNS))})"
            if mark
            else None
        )
        self._sqlite = self.engine.dialect.name == "sqlite"
        self.counters = Counters()
        self._queue: queue.Queue[tuple[LoggedRequest | None, list[Batch]] | None] = queue.Queue()
        self._pending = 0  # groups handed over and not yet written (or given up on)
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @classmethod
    def existing(cls, url: str) -> PredictionLog:
        """A log that `retrain serve` already wrote, for reading; DataError (and nothing created) if there is none."""
        from sqlalchemy import inspect
        from sqlalchemy.engine import make_url

        from retrain.errors import DataError

        where = redact(url)
        try:
            parsed = make_url(url)
        except Exception:
            raise DataError(
                f"{where} is not a database URL; set serving.log_url (or data.path) to the service's log"
            ) from None
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            if not Path(parsed.database).exists():
                raise DataError(
                    f"no prediction log at {where} (file {parsed.database} does not exist); point "
                    "serving.log_url at the log `retrain serve` writes"
                )
        log = cls(url, create=False)
        try:
            found = inspect(log.engine).has_table("predictions") and inspect(log.engine).has_table("requests")
        except Exception as exc:
            log.engine.dispose()
            raise DataError(f"cannot open the prediction log {where}: {str(exc).splitlines()[0][:300]}") from None
        if not found:
            log.engine.dispose()
            raise DataError(
                f"{where} holds no prediction log (no predictions/requests tables); point "
                "serving.log_url at the log `retrain serve` writes"
            )
        return log

    # -- writing

    def start(self) -> PredictionLog:
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        return self

    def add(self, *batches: Batch, request: LoggedRequest | None = None) -> None:
        """Queue one request (its body, if given) and its batches as one group: they land in the same transaction.

        Never blocks, never drops.
        """
        if not batches and request is None:
            return
        with self._idle:
            self._pending += 1
            self.counters.rows_in += sum(len(b.records) for b in batches)
        self._queue.put((request, list(batches)))

    @property
    def backlog(self) -> int:
        return self._pending

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Write everything still queued, stop the writer, release the engine."""
        if self._thread is not None:
            self._stopping = True
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self.counters.lost:
            log.error("prediction log: %d rows could not be written to %s", self.counters.lost, redact(self.url))
        self.engine.dispose()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            groups: list[tuple[LoggedRequest | None, list[Batch]]] = []
            rows = 0
            deadline = time.monotonic() + self.flush_s
            while rows < self.batch_rows:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    while True:  # drain what was queued before the stop
                        try:
                            rest = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if rest is not None:
                            groups.append(rest)
                    break
                groups.append(item)
                rows += sum(len(b.records) for b in item[1])
            if groups:
                self._write(groups, final=stopping)

    def _write(self, groups: list[tuple[LoggedRequest | None, list[Batch]]], final: bool) -> None:
        """Insert the groups' requests and rows in one transaction (about `batch_rows` rows; a request is never
        split); retry with backoff while the database refuses.

        While serving, a refused write is retried until it succeeds (rows wait in memory); once stopping,
        five attempts, then the rows are counted as lost and logged.
        """
        try:
            at = self._sqlite_time if self._sqlite else (lambda value: None)
            requests = [r.row(at(r.at)) for r, _ in groups if r is not None]
            rows = [row for _, batches in groups for batch in batches for row in batch.rows(at(batch.at))]
        except Exception as exc:
            log.exception("prediction log: cannot build rows")
            self._done(groups, lost=sum(len(b.records) for _, g in groups for b in g), error=str(exc))
            return
        failures, delay = 0, 0.2
        while True:
            try:
                with self.engine.begin() as conn:
                    for sql, table, columns, values in (
                        (self._request_sql, self.requests, REQUEST_COLUMNS, requests),
                        (self._insert_sql, self.predictions, COLUMNS, rows),
                    ):
                        if not values:
                            continue
                        if sql:
                            conn.exec_driver_sql(sql, values)
                        else:
                            conn.execute(table.insert(), [dict(zip(columns, v, strict=True)) for v in values])
            except Exception as exc:
                failures += 1
                self.counters.batches_failed += 1
                self.counters.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                log.warning("prediction log: write failed (attempt %d): %s", failures, self.counters.last_error)
                if (final or self._stopping) and failures >= 5:
                    self._done(groups, lost=len(rows))
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.counters.rows_out += len(rows)
            self._done(groups)
            return

    @staticmethod
    def _sqlite_time(at: datetime) -> str:
        """How SQLAlchemy stores a DateTime in SQLite (so reads through SQLAlchemy parse it back)."""
        return at.strftime("%Y-%m-%d %H:%M:%S.%f")

    def _done(
        self, groups: list[tuple[LoggedRequest | None, list[Batch]]], lost: int = 0, error: str | None = None
    ) -> None:
        with self._idle:
            self._pending -= len(groups)
            self.counters.lost += lost
            if error:
                self.counters.last_error = error
            elif not lost:
                self.counters.last_error = None
            self._idle.notify_all()

    # -- feedback

    def find_records(self, model: str, request_id: str) -> int:
        """How many records a logged request had (0 = unknown request id)."""
        from sqlalchemy import select

        r = self.requests
        query = select(r.c.records).where(r.c.request_id == request_id, r.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def latest_for_entity(self, model: str, entity_id: str) -> tuple[str, int] | None:
        """The latest served (request id, record) of an entity, or None."""
        from sqlalchemy import select

        p = self.predictions
        query = (
            select(p.c.request_id, p.c.record)
            .where(p.c.model == model, p.c.entity_id == entity_id, p.c.served.is_(True))
            .order_by(p.c.at.desc(), p.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row[0], int(row[1])) if row else None

    def add_feedback(self, rows: list[dict[str, Any]]) -> None:
        """Write labels now (in one transaction): feedback is rare and must be visible to the next report."""
        with self.engine.begin() as conn:
            conn.execute(self.feedback.insert(), rows)

    # -- reading

    def rows(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        variants: tuple[str, ...] | None = None,
        versions: tuple[str, ...] | None = None,
        features: bool = False,
    ) -> pd.DataFrame:
        """Log rows of `model` with their latest feedback label (NaN = none yet), oldest first."""
        import pandas as pd
        from sqlalchemy import func, select

        p, f = self.predictions, self.feedback
        latest = (
            select(f.c.request_id, f.c.record, func.max(f.c.id).label("fid"))
            .group_by(f.c.request_id, f.c.record)
            .subquery()
        )
        labels = select(f.c.request_id, f.c.record, f.c.label).join(latest, f.c.id == latest.c.fid).subquery()
        columns = [
            p.c.request_id,
            p.c.record,
            p.c.at,
            p.c.entity_id,
            p.c.assignment,
            p.c.variant,
            p.c.version,
            p.c.served,
            p.c.prediction,
            p.c.probability,
            p.c.latency_ms,
            p.c.error,
            labels.c.label,
        ]
        query = (
            select(*columns)
            .outerjoin(labels, (labels.c.request_id == p.c.request_id) & (labels.c.record == p.c.record))
            .where(p.c.model == model)
        )
        if since is not None:
            query = query.where(p.c.at >= since)
        if until is not None:
            query = query.where(p.c.at < until)
        if variants:
            query = query.where(p.c.variant.in_(variants))
        if versions:
            query = query.where(p.c.version.in_(versions))
        query = query.order_by(p.c.at, p.c.id)
        with self.engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        frame["label"] = pd.to_numeric(frame["label"], errors="coerce").astype("float64")
        for col in ("prediction", "probability", "latency_ms"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        frame["served"] = frame["served"].astype(bool)
        if features:
            frame["features"] = self._features(frame)
        return frame

    def _features(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Every row's record as the client sent it (all its fields), from the request bodies."""
        from sqlalchemy import select

        from retrain.serving.payload import columns_of

        ids = frame["request_id"].unique().tolist()
        bodies: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(self.requests.c.request_id, self.requests.c.body).where(
                    self.requests.c.request_id.in_(ids[start : start + 500])
                )
                bodies.update(conn.execute(query).all())
        records: dict[str, list[dict[str, Any]]] = {}
        for request_id, body in bodies.items():
            columns = columns_of(json.loads(body))
            names = list(columns)
            records[request_id] = [
                dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
            ]
        return [
            records[r][i] if r in records else {} for r, i in zip(frame["request_id"], frame["record"], strict=True)
        ]

    def count(self, model: str | None = None) -> int:
        """Rows in the predictions table (of `model`, if given)."""
        from sqlalchemy import func, select

        query = select(func.count()).select_from(self.predictions)
        if model is not None:
            query = query.where(self.predictions.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
