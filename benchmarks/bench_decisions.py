"""What the decision threshold search and missing-value handling add to a training step on 1M rows.

A training step here is what `retrain.training.train` does with the rows, without MLflow: learn the encoding
from the fitted rows, encode fitted and tuning rows, one epoch of `retrain.train.fit` (the default batch size,
early stopping on the tuning rows), then score the tuning rows.

- ours: rows as they arrive, income missing in 5% and channel in 3% of rows, `missing: impute` for both:
  `build_spec` learns medians and a missing indicator, `encode` imputes and canonicalises categories, the
  network has the extra indicator input, and `choose_threshold` (max_f1) runs on the tuning rows' scores.
- baseline: the same rows with the gaps filled in beforehand (untimed), encoded the way `encode` worked before
  missing values and integer-coded categories were handled (`to_numpy` + `astype(str)` lookups), the same
  network without the indicator input, and no threshold search (a fixed 0.5).

Both sides alternate for `repeats` rounds; medians are reported. Because a whole epoch on a shared machine is
noisy, the added parts are also timed on their own (encoding difference + threshold search), as a share of
the baseline step. Target: <= 5%. `impute_only_s` isolates imputation and indicators from the new category
encoding: today's `encode` on the gappy rows with `missing: impute` minus today's `encode` on the filled rows
without it.

Run from the repository root: python -m benchmarks.bench_decisions
"""

from __future__ import annotations

import json
import statistics
import time

ROWS_PER_DAY = 100_000
QUICK = {"fit_rows": 200_000, "tuning_rows": 50_000, "repeats": 1}


def _frames(fit_rows: int, tuning_rows: int, seed: int = 0):
    """(fit, tuning) frames from `retrain.synth` with gaps, and the same frames with the gaps filled."""
    import numpy as np

    from retrain import synth

    per_day = min(ROWS_PER_DAY, fit_rows)
    days = -(-(fit_rows + tuning_rows) // per_day)
    frame = synth.generate(synth.SynthSpec(days=days, rows_per_day=per_day, seed=seed))
    frame["label"] = frame["label"].astype(np.int64)
    rng = np.random.default_rng(seed)
    gappy = frame.copy()
    gappy["income"] = gappy["income"].where(rng.random(len(frame)) >= 0.05)
    gappy["channel"] = gappy["channel"].astype(object).where(rng.random(len(frame)) >= 0.03, None)
    filled = gappy.copy()
    filled["income"] = filled["income"].fillna(filled["income"].median())
    filled["channel"] = filled["channel"].fillna(filled["channel"].mode().iloc[0])
    cut = slice(0, fit_rows), slice(fit_rows, fit_rows + tuning_rows)
    split = lambda f: tuple(f.iloc[c].reset_index(drop=True) for c in cut)  # noqa: E731
    return split(gappy), split(filled)


def _encode_before(frame, spec):
    """`retrain.model.encode` as it was before missing values and integer-coded categories were handled."""
    import numpy as np
    import pandas as pd

    numeric = np.ascontiguousarray(frame[spec.numeric].to_numpy(dtype=np.float32, na_value=np.nan))
    codes = np.empty((len(frame), len(spec.categorical)), dtype=np.int64)
    for j, col in enumerate(spec.categorical):
        vocab = spec.categories[col]
        col_codes = pd.Index(vocab).get_indexer(frame[col].astype(str)).astype(np.int64)
        col_codes[col_codes < 0] = len(vocab)
        codes[:, j] = col_codes
    return numeric, codes


def _step(fit_frame, tuning_frame, *, ours: bool) -> dict[str, float]:
    """One training step; seconds per part."""
    import dataclasses

    import numpy as np
    import torch

    from retrain import model
    from retrain.config import DataSpec, ModelSpec
    from retrain.metrics import choose_threshold
    from retrain.train import fit

    data, defaults = DataSpec(), ModelSpec()
    times: dict[str, float] = {}
    start = time.perf_counter()
    if ours:
        missing = {"income": "impute", "channel": "impute"}
        spec = model.build_spec(fit_frame, list(data.numeric), list(data.categorical), 64, missing)
        encode = model.encode
    else:
        spec = model.build_spec(fit_frame, list(data.numeric), list(data.categorical), 64)
        spec = dataclasses.replace(
            spec, categories={c: sorted(map(str, fit_frame[c].unique())) for c in data.categorical}
        )
        encode = _encode_before
    arrays = []
    for frame in (fit_frame, tuning_frame):
        num, codes = encode(frame, spec)
        arrays.append((num, codes, frame["label"].to_numpy(np.int64)))
    times["encode_s"] = time.perf_counter() - start
    mean, std = arrays[0][0].mean(axis=0), arrays[0][0].std(axis=0)
    std[std == 0] = 1.0
    torch.manual_seed(0)
    net = model.build_network(spec, mean, std)
    start = time.perf_counter()
    fit(
        net,
        arrays[0],
        arrays[1],
        epochs=1,
        batch_size=defaults.batch_size,
        learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay,
        seed=0,
    )
    probability = model.predict_proba(net, arrays[1][0], arrays[1][1])
    times["fit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    threshold = choose_threshold(arrays[1][2], probability, "max_f1").threshold if ours else 0.5
    times["threshold_s"] = time.perf_counter() - start
    times["total_s"] = sum(times.values())
    times["threshold"] = threshold
    return times


def _impute_only(gappy, filled, repeats: int) -> float:
    """Median seconds that imputation and indicators add to today's `encode` of the fitted rows."""
    from benchmarks import median_time
    from retrain import model
    from retrain.config import DataSpec

    data = DataSpec()
    imputing = model.build_spec(
        gappy, list(data.numeric), list(data.categorical), 64, {"income": "impute", "channel": "impute"}
    )
    plain = model.build_spec(filled, list(data.numeric), list(data.categorical), 64)
    with_gaps = median_time(lambda: model.encode(gappy, imputing), repeats)
    without = median_time(lambda: model.encode(filled, plain), repeats)
    return with_gaps - without


def run(fit_rows: int = 1_000_000, tuning_rows: int = 200_000, repeats: int = 3) -> dict:
    """Median seconds per part over `repeats` alternating rounds, and the overhead ratios."""
    import torch

    (gappy_fit, gappy_tune), (filled_fit, filled_tune) = _frames(fit_rows, tuning_rows)
    _step(gappy_fit.head(20_000), gappy_tune.head(5_000), ours=True)  # warm-up
    _step(filled_fit.head(20_000), filled_tune.head(5_000), ours=False)
    ours, baseline = [], []
    for _ in range(repeats):
        ours.append(_step(gappy_fit, gappy_tune, ours=True))
        baseline.append(_step(filled_fit, filled_tune, ours=False))
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    added_s = med(ours, "encode_s") - med(baseline, "encode_s") + med(ours, "threshold_s")
    impute_only_s = _impute_only(gappy_fit, filled_fit, repeats)
    return {
        "name": f"decisions_training_step_{fit_rows}",
        "fit_rows": fit_rows,
        "tuning_rows": tuning_rows,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "ours_total_s": round(med(ours, "total_s"), 3),
        "baseline_total_s": round(med(baseline, "total_s"), 3),
        "ratio": round(med(ours, "total_s") / med(baseline, "total_s"), 3),
        "ours_encode_s": round(med(ours, "encode_s"), 3),
        "baseline_encode_s": round(med(baseline, "encode_s"), 3),
        "ours_fit_s": round(med(ours, "fit_s"), 3),
        "baseline_fit_s": round(med(baseline, "fit_s"), 3),
        "threshold_search_s": round(med(ours, "threshold_s"), 4),
        "added_parts_s": round(added_s, 3),
        "added_share": round(added_s / med(baseline, "total_s"), 4),
        "impute_only_s": round(impute_only_s, 3),
        "target": "ratio <= 1.05 (added parts <= 5% of the step)",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
