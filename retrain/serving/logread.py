"""Reading the prediction log: requests and entities looked up for feedback, rows with labels, row counts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine


class LogReader:
    """Queries on the log's tables; each opens its own connection.

    Every read is proportional to what it returns: a window is a range of index `ix_predictions_at`,
    each row's latest label one probe of `ix_feedback_request_id` (request id, record, id), a request's
    records a probe of `ix_predictions_request`, an entity's latest answer a probe of `ix_predictions_entity_id`.
    """

    def __init__(self, engine: Engine, requests: Table, predictions: Table, feedback: Table, feature_sets: Table):
        self.engine = engine
        self.requests, self.predictions, self.feedback, self.feature_sets = (
            requests,
            predictions,
            feedback,
            feature_sets,
        )
        self._has_requests: bool | None = None

    @property
    def has_requests(self) -> bool:
        """Whether the log still has the `requests` table of older logs (request bodies)."""
        if self._has_requests is None:
            from sqlalchemy import inspect

            self._has_requests = inspect(self.engine).has_table("requests")
        return self._has_requests

    def find_records(self, model: str, request_id: str) -> int:
        """How many records a logged request had (0 = unknown request id)."""
        from sqlalchemy import func, select

        p = self.predictions
        query = select(func.max(p.c.record)).where(p.c.request_id == request_id, p.c.model == model)
        with self.engine.connect() as conn:
            last = conn.execute(query).scalar()
        return 0 if last is None else int(last) + 1

    def latest_for_entity(self, model: str, entity_id: str) -> tuple[str, int] | None:
        """The latest served (request id, record) of an entity, or None."""
        from sqlalchemy import select

        p = self.predictions
        query = (
            select(p.c.request_id, p.c.record)
            .where(p.c.entity_id == entity_id, p.c.model == model, p.c.served.is_(True))
            .order_by(p.c.at.desc(), p.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row[0], int(row[1])) if row else None

    def tally(self, model: str, **window: Any) -> dict[str, int]:
        """Served records of a window, how many of them carry a label and how many were answered right: counted
        by the database (labels probed by key as in `rows`), nothing per row in Python."""
        from sqlalchemy import case, func, select

        p = self.predictions
        query = self.rows_query(model, **window).where(p.c.served.is_(True), p.c.error.is_(None)).order_by(None)
        inner = query.with_only_columns(p.c.prediction, query.selected_columns.label).subquery()
        right = case((inner.c.label == inner.c.prediction, 1), else_=0)
        counted = select(func.count(), func.count(inner.c.label), func.coalesce(func.sum(right), 0))
        with self.engine.connect() as conn:
            records, labelled, correct = conn.execute(counted.select_from(inner)).one()
        return {"records": int(records), "labelled": int(labelled), "correct": int(correct)}

    def rows_query(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        variants: tuple[str, ...] | None = None,
        versions: tuple[str, ...] | None = None,
        features: bool = False,
    ):
        """The SELECT behind `rows` (also what the query-plan tests explain)."""
        from sqlalchemy import select

        p, f = self.predictions, self.feedback
        label = (
            select(f.c.label)
            .where(f.c.request_id == p.c.request_id, f.c.record == p.c.record)
            .order_by(f.c.id.desc())
            .limit(1)
            .correlate(p)
            .scalar_subquery()
            .label("label")
        )
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
            label,
        ]
        if features:
            columns += [p.c.feature_set, p.c.features]
        query = select(*columns).where(p.c.model == model)
        if since is not None:
            query = query.where(p.c.at >= since)
        if until is not None:
            query = query.where(p.c.at < until)
        if variants:
            query = query.where(p.c.variant.in_(variants))
        if versions:
            query = query.where(p.c.version.in_(versions))
        return query.order_by(p.c.at, p.c.id)

    def rows(self, model: str, *, features: bool = False, **window: Any) -> pd.DataFrame:
        """Log rows of `model` with their latest feedback label (NaN = none yet), oldest first."""
        import pandas as pd

        query = self.rows_query(model, features=features, **window)
        sqlite = self.engine.dialect.name == "sqlite"
        if sqlite:  # integer microseconds, converted below in one vectorised step instead of per row
            from sqlalchemy import BigInteger, type_coerce

            at = self.predictions.c.at
            query = query.with_only_columns(
                *[type_coerce(at, BigInteger).label("at") if c.name == "at" else c for c in query.selected_columns]
            )
        with self.engine.connect() as conn:
            result = conn.execute(query)
            keys = list(result.keys())
            # columns from plain tuples: pandas probing SQLAlchemy Row objects costs more than the query
            columns = list(zip(*result.all(), strict=True)) or [()] * len(keys)
        frame = pd.DataFrame(
            {k: pd.Series(v, dtype=object if not v else None) for k, v in zip(keys, columns, strict=True)}
        )
        if sqlite:
            frame["at"] = pd.to_datetime(pd.to_numeric(frame["at"]), unit="us")
        frame["at"] = pd.to_datetime(frame["at"]).astype("datetime64[ns]")
        frame["record"] = pd.to_numeric(frame["record"]).astype("int64")
        frame["label"] = pd.to_numeric(frame["label"], errors="coerce").astype("float64")
        for col in ("prediction", "probability", "latency_ms"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        frame["served"] = frame["served"].astype(bool)
        if features:
            frame["features"] = self._features(frame)
            frame = frame.drop(columns=["feature_set"])
        return frame

    def _features(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Every row's record as the client sent it (all its fields): from the row of the record that carries
        them, else (rows logged before features moved onto the rows) from the request's body."""
        from sqlalchemy import select

        with self.engine.connect() as conn:
            sets = {i: json.loads(text) for i, text in conn.execute(select(self.feature_sets))}
        records: dict[tuple[str, int], dict[str, Any]] = {}
        carried = frame[frame["features"].notna()]
        for request_id, record, entity_id, set_id, values in zip(
            carried["request_id"],
            carried["record"],
            carried["entity_id"],
            carried["feature_set"],
            carried["features"],
            strict=True,
        ):
            names = sets[int(set_id)]
            fields = dict(zip(names["columns"], json.loads(values), strict=True))
            if names["entity"] is not None:
                fields = {names["entity"]: entity_id, **fields}
            records[(request_id, int(record))] = fields
        keys = list(zip(frame["request_id"], frame["record"].astype(int), strict=True))
        missing = sorted({r for r, i in keys if (r, i) not in records})
        if missing and self.has_requests:
            records.update(self._from_bodies(missing))
        return [records.get(key, {}) for key in keys]

    def _from_bodies(self, ids: list[str]) -> dict[tuple[str, int], dict[str, Any]]:
        """Records of older logs, from the request bodies they kept."""
        from sqlalchemy import select

        from retrain.serving.payload import columns_of

        bodies: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(self.requests.c.request_id, self.requests.c.body).where(
                    self.requests.c.request_id.in_(ids[start : start + 500])
                )
                bodies.update(conn.execute(query).all())
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for request_id, body in bodies.items():
            columns = columns_of(json.loads(body))
            names = list(columns)
            for i, values in enumerate(zip(*columns.values(), strict=True)):
                out[(request_id, i)] = dict(zip(names, values, strict=True))
        return out

    def explain(self, query) -> list[str]:
        """The database's plan for `query` (EXPLAIN QUERY PLAN on SQLite, EXPLAIN elsewhere), one line per step."""
        from sqlalchemy import event

        prefix = "EXPLAIN QUERY PLAN " if self.engine.dialect.name == "sqlite" else "EXPLAIN "

        def explained(conn, cursor, statement, parameters, context, executemany):
            return prefix + statement, parameters

        with self.engine.connect() as conn:
            event.listen(conn, "before_cursor_execute", explained, retval=True)
            try:
                rows = conn.execute(query).all()
            finally:
                event.remove(conn, "before_cursor_execute", explained)
        return [str(row[-1]) for row in rows]

    def count(self, model: str | None = None) -> int:
        """Rows in the predictions table (of `model`, if given)."""
        from sqlalchemy import func, select

        query = select(func.count()).select_from(self.predictions)
        if model is not None:
            query = query.where(self.predictions.c.model == model)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
