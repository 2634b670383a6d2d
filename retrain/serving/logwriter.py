"""The prediction log's writer: a queue of request groups and the thread that inserts them in transactions.

The service hands each request's body and batches to `add` as one group; the writer thread inserts groups
in transactions of about `batch_rows` prediction rows (a request's rows always together) at least every
`flush_s` seconds, and `close()` writes everything still queued (graceful shutdown loses nothing). The
queue is unbounded on purpose: a slow database costs memory (shown in /status), never rows. With `sync`, the
writer does not wait for more rows once it has one (it writes what is queued: group commit), and
`add(..., wait=True)` returns only once the group is committed, so an answer is given only for logged rows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

from retrain.serving.logschema import COLUMNS, REQUEST_COLUMNS, Batch, Counters, LoggedRequest

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

log = logging.getLogger("retrain.serving")

SYNC_TIMEOUT_S = 30.0  # `add(..., wait=True)` gives up (returns False) after this long without a commit


class LogWriter:
    """Queues groups without blocking and writes them on its own thread, retrying while the database refuses."""

    def __init__(
        self, engine: Engine, requests: Table, predictions: Table, batch_rows: int, flush_s: float, sync: bool = False
    ) -> None:
        self.engine = engine
        self.sync = sync
        self.requests, self.predictions = requests, predictions
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
        self._added = self._finished = 0  # groups queued, groups written or given up on (in queue order)
        self._lost_tickets: set[int] = set()
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def add(self, *batches: Batch, request: LoggedRequest | None = None, wait: bool = False) -> bool:
        """Queue one request (its body, if given) and its batches as one group: they land in the same transaction.

        Never drops. Without `wait`, never blocks (True). With it, returns once the group is committed (True),
        or False when it was given up on or not committed within SYNC_TIMEOUT_S (it may still be written later).
        """
        if not batches and request is None:
            return True
        with self._idle:
            self._pending += 1
            self.counters.rows_in += sum(len(b.records) for b in batches)
            self._added += 1
            ticket = self._added
            self._queue.put((request, list(batches)))  # under the lock: tickets follow the queue's order
        if not wait:
            return True
        deadline = time.monotonic() + SYNC_TIMEOUT_S
        with self._idle:
            while self._finished < ticket:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return ticket not in self._lost_tickets

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
        """Write everything still queued and stop the thread."""
        if self._thread is not None:
            self._stopping = True
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

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
                if self.sync:  # someone waits for this commit: write what is queued now, do not wait for more
                    deadline = time.monotonic()
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
            if lost:
                self._lost_tickets.update(range(self._finished + 1, self._finished + len(groups) + 1))
            self._finished += len(groups)
            self.counters.lost += lost
            if error:
                self.counters.last_error = error
            elif not lost:
                self.counters.last_error = None
            self._idle.notify_all()
