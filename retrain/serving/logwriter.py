"""The prediction log's writer: a queue of request groups and the thread that inserts them in transactions.

The service hands each request's body and batches to `add` as one group; the writer thread turns the body
into one features list per record (JSON values, names once per distinct list in `feature_sets`), puts it on
the row that answered the record, and inserts groups in transactions of about `batch_rows` prediction rows
(a request's rows always together) at least every `flush_s` seconds; `close()` writes everything still
queued (graceful shutdown loses nothing). The queue is unbounded on purpose: a slow database costs memory
(shown in /status), never rows. With `retention_days`, rows older than that are deleted at start and
every `PRUNE_EVERY_S` seconds. With `sync`, the writer does not wait for more rows once it has one (it writes
what is queued: group commit), and `add(..., wait=True)` returns only once the group is committed, so an answer
is given only for logged rows.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from retrain.serving.logschema import COLUMNS, Batch, Counters, LoggedRequest, to_micros

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

log = logging.getLogger("retrain.serving")
PRUNE_EVERY_S = 3600.0

SYNC_TIMEOUT_S = 30.0  # `add(..., wait=True)` gives up (returns False) after this long without a commit


class LogWriter:
    """Queues groups without blocking and writes them on its own thread, retrying while the database refuses."""

    def __init__(
        self,
        engine: Engine,
        predictions: Table,
        feature_sets: Table,
        batch_rows: int,
        flush_s: float,
        prune=None,
        sync: bool = False,
    ) -> None:
        self.engine = engine
        self.sync = sync
        self.predictions, self.feature_sets = predictions, feature_sets
        self.batch_rows, self.flush_s = batch_rows, flush_s
        self._prune = prune  # called with no arguments at start and every PRUNE_EVERY_S (retention), or None
        self._sets: dict[tuple[str, ...], int] = {}
        # The writer hands rows to the driver's executemany (a C loop) instead of per-row SQLAlchemy processing:
        # at 1,000-record requests that keeps the writer thread from competing with scoring for the GIL.
        style = self.engine.dialect.paramstyle
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(style)
        self._insert_sql = (
            f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"
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

    def write_now(self, groups: list[tuple[LoggedRequest | None, list[Batch]]]) -> None:
        """Write groups on the calling thread in one transaction, the same way the thread does (bulk loads, not
        while serving: these groups hold no ticket, so the count of written tickets is put back)."""
        with self._idle:
            self._pending += len(groups)
            self.counters.rows_in += sum(len(b.records) for _, batches in groups for b in batches)
        self._write(groups, final=True)
        with self._idle:
            self._finished -= len(groups)

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
        next_prune = time.monotonic()
        while not stopping:
            if self._prune is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                try:
                    self._prune()
                except Exception as exc:  # retention is housekeeping: the next round tries again
                    log.warning("prediction log: retention failed: %s", str(exc).splitlines()[0][:300])
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
            at = to_micros if self._sqlite else (lambda value: None)
            rows = []
            for request, batches in groups:
                carried = self._carriers(request, batches)
                for batch, features in zip(batches, carried, strict=True):
                    rows.extend(batch.rows(at(batch.at), features))
        except Exception as exc:
            log.exception("prediction log: cannot build rows")
            self._done(groups, lost=sum(len(b.records) for _, g in groups for b in g), error=str(exc))
            return
        failures, delay = 0, 0.2
        while True:
            try:
                with self.engine.begin() as conn:
                    if rows and self._insert_sql:
                        conn.exec_driver_sql(self._insert_sql, rows)
                    elif rows:
                        conn.execute(self.predictions.insert(), [dict(zip(COLUMNS, v, strict=True)) for v in rows])
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

    def _carriers(self, request: LoggedRequest | None, batches: list[Batch]) -> list[dict[int, tuple[int, str]]]:
        """Per batch, the records whose features its rows carry: each record once, on the row that answered it
        (else on its first row)."""
        out: list[dict[int, tuple[int, str]]] = [{} for _ in batches]
        features = self._features(request, batches) if request is not None else None
        if not features:
            return out
        left = set(range(len(features)))
        for k in sorted(range(len(batches)), key=lambda k: not batches[k].served):
            for i in batches[k].records:
                if i in left and i < len(features):
                    out[k][i] = features[i]
                    left.discard(i)
        return out

    def _features(self, request: LoggedRequest, batches: list[Batch]) -> list[tuple[int, str]] | None:
        """(feature set id, JSON list of values) per record of the request's body; None if it cannot be read.

        A field that holds exactly each record's entity id (text) is not repeated: the row's entity id is it.
        """
        from retrain.serving.payload import columns_of

        try:
            columns = columns_of(json.loads(request.body))
        except Exception as exc:  # the service answered it, so this is unexpected: log it, keep the rows
            log.warning("prediction log: no features kept for request %s: %s", request.request_id, exc)
            return None
        ids: dict[int, str | None] = {}
        for batch in batches:
            for i, entity in zip(batch.records, batch.entity_ids, strict=True):
                ids.setdefault(i, entity)
        entity = next(
            (
                name
                for name, values in columns.items()
                if all(isinstance(v, str) and v == ids.get(i) for i, v in enumerate(values))
            ),
            None,
        )
        if entity is not None:
            columns = {k: v for k, v in columns.items() if k != entity}
        key = (*columns, f"entity={entity}")
        set_id = self._sets.get(key)
        if set_id is None:
            set_id = self._sets[key] = feature_set_id(self.engine, self.feature_sets, list(columns), entity)
        n = request.records
        rows = map(list, zip(*columns.values(), strict=True)) if columns else ([] for _ in range(n))
        return [(set_id, json.dumps(values, separators=(",", ":"))) for values in rows]

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


def feature_set_id(engine: Engine, table: Table, names: list[str], entity: str | None) -> int:
    """The id of a list of feature names (and the field holding the entity id) in `feature_sets`, added if new."""
    from sqlalchemy import select

    text = json.dumps({"columns": names, "entity": entity}, separators=(",", ":"))
    query = select(table.c.id).where(table.c.names == text)
    try:
        with engine.begin() as conn:
            found = conn.execute(query).scalar()
            if found is None:
                key = conn.execute(table.insert().values(names=text)).inserted_primary_key
                found = key[0] if key else None
    except Exception:  # another writer added the same names first (unique): read its id
        with engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            raise
    if found is None:
        raise RuntimeError(f"feature set {text} was not stored")
    return int(found)
