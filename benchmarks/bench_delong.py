"""Time delong_test on 1M rows against the two sklearn roc_auc_score calls it replaces.

Run from the repository root: python -m benchmarks.bench_delong
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks import median_time
from retrain.metrics import delong_test


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated scores, rounded so ties occur as they do with real model outputs."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    common = rng.normal(size=n)
    a = np.round(0.8 * y + common + 0.5 * rng.normal(size=n), 4)
    b = np.round(1.0 * y + common + 0.5 * rng.normal(size=n), 4)
    return y, a, b


def run(n: int = 1_000_000, repeats: int = 3) -> dict:
    """Benchmark result as a dict for benchmarks/run_all.py."""
    y, a, b = _data(n)
    # Untimed first calls so neither side pays for imports or first-touch allocation.
    delong_test(y, a, b)
    roc_auc_score(y, a)
    delong_s = median_time(lambda: delong_test(y, a, b), repeats)
    baseline_s = median_time(lambda: (roc_auc_score(y, a), roc_auc_score(y, b)), repeats)
    return {
        "name": "delong_1m" if n == 1_000_000 else f"delong_{n}",
        "n": n,
        "repeats": repeats,
        "delong_s": round(delong_s, 4),
        "baseline_s": round(baseline_s, 4),
        "ratio": round(delong_s / baseline_s, 3),
        "target": "<= 1.0",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
