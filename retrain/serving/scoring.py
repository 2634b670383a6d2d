"""Scoring a request's records with one loaded version into log batches, and shadow scoring behind a bounded queue.

Shadow scoring runs on its own thread, after the answer is on its way: a slow or failing candidate in shadow mode
never changes the answer, its status code or its latency beyond handing over a job (when `shadow_queue` jobs
are already waiting the shadow score is skipped and counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from retrain.serving.predlog import Batch, PredictionLog

if TYPE_CHECKING:
    from retrain.serving.live import Loaded
    from retrain.serving.payload import Parsed

log = logging.getLogger("retrain.serving")


class Scorer:
    """Scores records of `model` and counts failures through `count`; owns the shadow thread."""

    def __init__(self, model: str, predictions: PredictionLog, count: Callable[..., None], shadow_queue: int) -> None:
        self.name = model
        self.log = predictions
        self.count = count
        self.shadow_queue = shadow_queue
        self._lock = threading.Lock()
        self._shadow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_waiting = 0

    def score(
        self,
        loaded: Loaded,
        name: str,
        parsed: Parsed,
        idx,
        request_id: str,
        at,
        ids,
        assignment,
        n: int,
        prediction,
        probability,
        *,
        served: bool,
        batches: list[Batch],
    ) -> bool:
        """Score the records `idx` with one version, fill the answer arrays, add the log rows to `batches`;
        False on a failure. Our own models take the fast path (`loaded.fast`), others their pyfunc `predict`."""
        records = idx.tolist()
        batch = Batch(
            request_id,
            at,
            self.name,
            name,
            loaded.version,
            served,
            records,
            [ids[i] for i in records],
            [assignment[i] for i in records],
        )
        start = time.perf_counter()
        try:
            if loaded.fast is not None:
                p, q = loaded.fast.predict(parsed, None if len(idx) == n else idx)
            else:
                frame = parsed.frame
                part = frame if len(idx) == n else frame.iloc[idx].reset_index(drop=True)
                out = loaded.model.predict(part)
                p = out["prediction"].to_numpy(dtype="int64")
                q = out["probability"].to_numpy(dtype="float64")
            if len(p) != len(idx):
                raise ValueError(f"returned {len(p)} rows for {len(idx)} records")
        except Exception as exc:
            batch.served = False
            batch.latency_ms = (time.perf_counter() - start) * 1000
            batch.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:2000]
            batches.append(batch)
            self.count(**{f"errors_{name}": len(records)})
            log.warning("%s version %s failed on request %s: %s", name, loaded.version, request_id, batch.error)
            return False
        batch.latency_ms = (time.perf_counter() - start) * 1000
        batch.prediction, batch.probability = p, q
        if served:
            prediction[idx] = p
            probability[idx] = q
        batches.append(batch)
        return True

    def submit_shadow(self, candidate: Loaded, parsed: Parsed, request_id, at, ids, assignment) -> None:
        with self._lock:
            full = self._shadow_waiting >= self.shadow_queue
            if not full:
                self._shadow_waiting += 1
        if full:
            self.count(shadow_skipped=1)
            return
        self._shadow.submit(self._run_shadow, candidate, parsed, request_id, at, ids, assignment)

    def _run_shadow(self, candidate: Loaded, parsed: Parsed, request_id, at, ids, assignment) -> None:
        import numpy as np

        try:
            n = parsed.n
            batches: list[Batch] = []
            ok = self.score(
                candidate,
                "shadow",
                parsed,
                np.arange(n),
                request_id,
                at,
                ids,
                assignment,
                n,
                None,
                None,
                served=False,
                batches=batches,
            )
            self.log.add(*batches)
            self.count(**{"shadow_scored" if ok else "shadow_failed": 1})
        finally:
            with self._lock:
                self._shadow_waiting -= 1

    def close(self) -> None:
        """Finish queued shadow jobs (bounded by `shadow_queue`), then stop."""
        self._shadow.shutdown(wait=True)
