"""Prediction logs filled through the log writer's own code, for the log's tests (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np

START = datetime(2026, 12, 1)


def fill(log, rows: int, *, start: datetime = START, step_s: float = 1.0, labelled_every: int = 5, seed: int = 0):
    """`rows` one-record requests from `start`, one every `step_s` seconds, every `labelled_every`-th labelled;
    returns the request ids in order."""
    from retrain.serving.predlog import Batch, LoggedRequest

    rng = np.random.default_rng(seed)
    groups, labels, ids = [], [], []
    for i in range(rows):
        at = start + timedelta(seconds=i * step_s)
        request_id = f"{seed:04d}-{i:012d}"
        customer = f"C{int(rng.integers(10_000)):05d}"
        record = {"customer_id": customer, "age": int(rng.integers(18, 80)), "channel": "web"}
        body = json.dumps({"dataframe_records": [record]})
        probability = float(rng.random())
        batch = Batch(
            request_id, at, "m", "production", "1", True, [0], [customer], ["entity"],
            np.array([int(probability >= 0.5)]), np.array([probability]), 1.0,
        )  # fmt: skip
        groups.append((LoggedRequest(request_id, at, "m", 1, body), [batch]))
        if i % labelled_every == 0:
            labels.append({"request_id": request_id, "record": 0, "label": 1, "at": at, "entity_id": None})
        ids.append(request_id)
    log.write_now(groups)
    if labels:
        log.add_feedback(labels)
    return ids
