"""The prediction log on SQLAlchemy (SQLite by default, any SQLAlchemy URL such as PostgreSQL): one handle on it.

`PredictionLog` ties together what the log is (`logschema`: tables, row shapes, engine; `logmigrate`: older
layouts brought up to date on open), its writer (`logwriter`: rows written off the request path, in
transactions, by one thread; graceful shutdown loses nothing; retention) and its readers (`logread`:
feedback look-ups, rows of a window with labels joined by key). The service hands each request's body and
batches to `PredictionLog.add` as one group; the writer keeps each record's features once, not the body.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retrain.serving.logread import LogReader
from retrain.serving.logschema import (
    COLUMNS,
    Batch,
    Counters,
    LoggedRequest,
    make_engine,
    new_request_id,
    redact,
    tables,
    utcnow,
)
from retrain.serving.logwriter import LogWriter

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "Batch",
    "Counters",
    "LoggedRequest",
    "PredictionLog",
    "make_engine",
    "new_request_id",
    "redact",
    "utcnow",
]

log = logging.getLogger("retrain.serving")


def _open_tables(engine: Any, metadata: Any, tables: Any, create: bool, attempts: int = 8) -> None:
    """Create the log's missing tables and bring an older layout up to date (`logmigrate`). Replicas started
    together on a fresh log race here: the loser's CREATE fails (SQLite: "table already exists"; PostgreSQL: a
    unique violation in pg_type) after its check found none, or its layout write meets the winner's lock
    ("database is locked"), so a failed pass is retried whole, and the next pass finds what the winner made."""
    import time

    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from retrain.serving.logmigrate import migrate

    for attempt in range(1, attempts + 1):
        try:
            new = False
            if create:
                new = not inspect(engine).has_table("predictions")
                metadata.create_all(engine, tables=tables)
            migrate(engine, tables, new=new)
            return
        except DBAPIError:
            if attempt == attempts:
                raise
            time.sleep(0.1 * attempt)


class PredictionLog:
    """The log's tables on one engine, with a background writer for prediction rows."""

    def __init__(
        self,
        url: str,
        batch_rows: int = 2000,
        flush_s: float = 0.25,
        *,
        create: bool = True,
        retention_days: float | None = None,
        sync: bool = False,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.metadata, self.requests, self.predictions, self.feedback, self.feature_sets = tables()
        _open_tables(self.engine, self.metadata, [self.predictions, self.feedback, self.feature_sets], create)
        self.batch_rows, self.flush_s = batch_rows, flush_s
        self.retention_days = retention_days
        self._writer = LogWriter(
            self.engine,
            self.predictions,
            self.feature_sets,
            batch_rows,
            flush_s,
            prune=self.prune if retention_days else None,
            sync=sync,
        )
        self._reader = LogReader(self.engine, self.requests, self.predictions, self.feedback, self.feature_sets)
        self.counters: Counters = self._writer.counters

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
        engine = make_engine(url)
        try:
            found = inspect(engine).has_table("predictions")
        except Exception as exc:
            raise DataError(f"cannot open the prediction log {where}: {str(exc).splitlines()[0][:300]}") from None
        finally:
            engine.dispose()
        if not found:
            raise DataError(
                f"{where} holds no prediction log (no predictions table); point "
                "serving.log_url at the log `retrain serve` writes"
            )
        return cls(url, create=False)

    # -- writing

    def start(self) -> PredictionLog:
        self._writer.start()
        return self

    def add(self, *batches: Batch, request: LoggedRequest | None = None, wait: bool = False) -> bool:
        """Queue one request (its body, if given) and its batches as one group: they land in the same transaction.

        Never drops; never blocks unless `wait` (then: True once committed, False if not; see LogWriter.add).
        """
        return self._writer.add(*batches, request=request, wait=wait)

    def write_now(self, groups: list[tuple[LoggedRequest | None, list[Batch]]]) -> None:
        """Write (request, batches) groups now, on this thread, in one transaction: bulk loads and benchmarks."""
        self._writer.write_now(groups)

    @property
    def backlog(self) -> int:
        return self._writer.backlog

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Write everything still queued, stop the writer, release the engine."""
        self._writer.close(timeout)
        if self.counters.lost:
            log.error("prediction log: %d rows could not be written to %s", self.counters.lost, redact(self.url))
        self.engine.dispose()

    # -- feedback

    def find_records(self, model: str, request_id: str) -> int:
        """How many records a logged request had (0 = unknown request id)."""
        return self._reader.find_records(model, request_id)

    def latest_for_entity(self, model: str, entity_id: str) -> tuple[str, int] | None:
        """The latest served (request id, record) of an entity, or None."""
        return self._reader.latest_for_entity(model, entity_id)

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
        return self._reader.rows(
            model, since=since, until=until, variants=variants, versions=versions, features=features
        )

    def prune(self, now: datetime | None = None) -> int:
        """Delete rows older than `retention_days` (predictions, labels, old request bodies); rows deleted."""
        from datetime import timedelta

        if not self.retention_days:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.retention_days)
        deleted = 0
        with self.engine.begin() as conn:
            for table in (self.predictions, self.feedback, self.requests):
                if table is self.requests and not self._reader.has_requests:
                    continue
                deleted += conn.execute(table.delete().where(table.c.at < cutoff)).rowcount or 0
        if deleted:
            log.info("prediction log: retention deleted %d rows older than %s", deleted, cutoff)
        return deleted

    def tally(self, model: str, **window: Any) -> dict[str, int]:
        """Served records of a window (`rows`' arguments), labelled ones and right ones, counted in the database."""
        return self._reader.tally(model, **window)

    def explain_rows(self, model: str, **window: Any) -> list[str]:
        """The database's plan for `rows(model, **window)`: shows which indexes the read uses."""
        return self._reader.explain(self._reader.rows_query(model, **window))

    def count(self, model: str | None = None) -> int:
        """Rows in the predictions table (of `model`, if given)."""
        return self._reader.count(model)
