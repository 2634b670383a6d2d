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
    """Queries on the log's tables; each opens its own connection."""

    def __init__(self, engine: Engine, requests: Table, predictions: Table, feedback: Table) -> None:
        self.engine = engine
        self.requests, self.predictions, self.feedback = requests, predictions, feedback

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
