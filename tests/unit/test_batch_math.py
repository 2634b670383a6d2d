"""The pure math both scoring and checking engines share: PSI from counts, metrics from sums, the scoring tally,
and the day file's atomic replacement."""

from __future__ import annotations

import os

import numpy as np
import pytest

from retrain import drift, metrics
from retrain.batch.tally import Tally


def _sums(y: np.ndarray, p: np.ndarray, threshold: float) -> metrics.LabelledSums:
    """What Spark sums, computed here with numpy over the distinct scores."""
    yhat = p >= threshold
    q = np.clip(p, metrics._EPS, 1 - metrics._EPS)
    scores, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=scores.size).astype(np.int64)
    neg = np.bincount(inverse, weights=1 - y, minlength=scores.size).astype(np.int64)
    pos_below, neg_below = np.cumsum(pos) - pos, np.cumsum(neg) - neg
    v10 = (neg_below + neg / 2) / neg.sum()
    v01 = 1 - (pos_below + pos / 2) / pos.sum()
    return metrics.LabelledSums(
        tn=int(((y == 0) & ~yhat).sum()),
        fp=int(((y == 0) & yhat).sum()),
        fn=int(((y == 1) & ~yhat).sum()),
        tp=int(((y == 1) & yhat).sum()),
        log_loss_sum=float(-np.where(y == 1, np.log(q), np.log1p(-q)).sum()),
        brier_sum=float(((p - y) ** 2).sum()),
        pairs2=int((pos * (2 * neg_below + neg)).sum()),
        v10=float((pos * v10).sum()),
        v10_sq=float((pos * v10 * v10).sum()),
        v01=float((neg * v01).sum()),
        v01_sq=float((neg * v01 * v01).sum()),
    )


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_from_sums_equal_the_row_metrics(ties):
    rng = np.random.default_rng(7)
    y = (rng.random(5_000) < 0.2).astype(float)
    p = np.clip(0.2 + 0.3 * y + rng.normal(0, 0.2, y.size), 0, 1)
    if ties:
        p = np.round(p, 2)  # many rows share a score
    found, se = metrics.metrics_from_sums(_sums(y, p, 0.3), cost_fp=1.0, cost_fn=5.0)
    want = metrics.classification_metrics(y, p, 0.3, cost_fp=1.0, cost_fn=5.0)
    assert found == pytest.approx(want, abs=1e-12, rel=0)
    assert se == pytest.approx(metrics.auc_above_chance(y, p).se, abs=1e-12, rel=0)


def test_psi_from_counts_equals_psi_from_values_and_batches_add_up():
    rng = np.random.default_rng(3)
    entry = drift.build_profile({"x": rng.normal(size=2_000)}, {}, bins=10)["numeric"]["x"]
    values = np.r_[rng.normal(0.3, 1.2, 9_000), [np.nan] * 40, [np.inf, -np.inf]]
    tally = Tally(entry)
    for chunk in np.array_split(values, 7):
        tally.add(chunk, (chunk > 0).astype(np.int64))
    assert tally.rows == values.size and tally.positives == int((values > 0).sum())
    assert tally.score_psi == pytest.approx(drift.numeric_psi(entry, values), abs=1e-15)
    cat = {"shares": {"a": 0.5, "b": 0.3, "c": 0.2}, "count": 10}
    labels = np.array(["a"] * 40 + ["b"] * 40 + ["z"] * 20, dtype=object)
    counts = {"a": 40, "b": 40, "z": 20}
    assert drift.categorical_psi_from_counts(cat, counts) == drift.categorical_psi(cat, labels)
    with pytest.raises(drift.DataError, match="edges"):
        drift.numeric_psi_from_counts(entry, [1, 2], 0)


def test_a_day_is_replaced_whole_and_a_failed_write_leaves_the_old_file(tmp_path):
    from datetime import date

    from retrain.batch.output import Output

    out = Output(str(tmp_path / "scores"))
    day = date(2026, 7, 29)
    staging = out.prepare(day)
    with open(staging, "w") as f:
        f.write("old")
    assert out.commit(day, staging) == f"{tmp_path / 'scores'}/date=2026-07-29/part-0.parquet"
    folder = tmp_path / "scores" / "date=2026-07-29"
    # a run that died mid-write left its staging file; a later run's prepare removes it, its commit replaces
    (folder / ".staging-dead-part-0.parquet").write_text("half")
    again = Output(str(tmp_path / "scores"))
    staging = again.prepare(day)
    assert sorted(os.listdir(folder)) == ["part-0.parquet"]
    with open(staging, "w") as f:
        f.write("new")
    assert (folder / "part-0.parquet").read_text() == "old"  # until the commit
    again.commit(day, staging)
    assert (folder / "part-0.parquet").read_text() == "new" and sorted(os.listdir(folder)) == ["part-0.parquet"]


def test_a_spark_error_names_the_python_exception_its_worker_threw():
    from retrain.batch.spark_session import cause

    relayed = RuntimeError(
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/worker.py", line 10, in main\n'
        "    raise ValueError('bad')\n"
        "ValueError: Expected 12 columns, got 11\n"
    )
    assert cause(relayed) == (
        "An exception was thrown from the Python worker. Please see the stack trace below. "
        "ValueError: Expected 12 columns, got 11"
    )
    assert cause(RuntimeError("[PATH_NOT_FOUND] Path does not exist: /x.\nat org.apache...")) == (
        "[PATH_NOT_FOUND] Path does not exist: /x."
    )
    assert cause(RuntimeError("")) == "RuntimeError"
