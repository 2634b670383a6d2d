"""The prediction log on SQLAlchemy (SQLite by default, any SQLAlchemy URL such as PostgreSQL): one handle on it.

`PredictionLog` ties together what the log is (`logschema`: tables, row shapes, engine), its writer
(`logwriter`: rows written off the request path, in transactions, by one thread; graceful shutdown loses
nothing) and its readers (`logread`: feedback look-ups, rows with labels). The service hands each request's
body and batches to `PredictionLog.add` as one group. Keeping the body instead of one features document per
row spares the writer a serialisation per record.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retrain.serving.logread import LogReader
from retrain.serving.logschema import (
    COLUMNS,
    REQUEST_COLUMNS,
    Batch,
    Counters,
    LoggedRequest,
    make_engine,
    redact,
    tables,
    utcnow,
)
from retrain.serving.logwriter import LogWriter

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "REQUEST_COLUMNS",
    "Batch",
    "Counters",
    "LoggedRequest",
    "PredictionLog",
    "make_engine",
    "redact",
    "utcnow",
]

log = logging.getLogger("retrain.serving")


def _create_tables(metadata: Any, engine: Any, attempts: int = 5) -> None:
    """Create the log's missing tables. Replicas started together on a fresh log race to create them: the loser's
    CREATE fails (SQLite: "table already exists"; PostgreSQL: a unique violation in pg_type) after its check found
    none, so a failed pass is retried, and the next pass finds the tables the winner created."""
    import time

    from sqlalchemy.exc import DBAPIError

    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            return
        except DBAPIError:
            if attempt == attempts:
                raise
            time.sleep(0.1 * attempt)


class PredictionLog:
    """The log's tables on one engine, with a background writer for prediction rows."""

    def __init__(
        self, url: str, batch_rows: int = 2000, flush_s: float = 0.25, *, create: bool = True, sync: bool = False
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.metadata, self.requests, self.predictions, self.feedback = tables()
        if create:
            _create_tables(self.metadata, self.engine)
        self.batch_rows, self.flush_s = batch_rows, flush_s
        self._writer = LogWriter(self.engine, self.requests, self.predictions, batch_rows, flush_s, sync)
        self._reader = LogReader(self.engine, self.requests, self.predictions, self.feedback)
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
        self._writer.start()
        return self

    def add(self, *batches: Batch, request: LoggedRequest | None = None, wait: bool = False) -> bool:
        """Queue one request (its body, if given) and its batches as one group: they land in the same transaction.

        Never drops; never blocks unless `wait` (then: True once committed, False if not; see LogWriter.add).
        """
        return self._writer.add(*batches, request=request, wait=wait)

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

    def count(self, model: str | None = None) -> int:
        """Rows in the predictions table (of `model`, if given)."""
        return self._reader.count(model)
