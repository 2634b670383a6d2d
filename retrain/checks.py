"""Pre-promotion checks on the candidate as the registry serves it: contract, golden samples, latency, odd rows.

Each check scores through the loaded pyfunc model and returns a `CheckResult`; an exception inside a check is
that check's failure (short text), never the caller's. Loading and logging are the caller's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from retrain.config import CheckPolicy, DataSpec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, whether it passed, and why (numbers included)."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def short_error(exc: BaseException, limit: int = 160) -> str:
    """The gist of an exception in one line of at most `limit` characters, for reasons."""
    # MLflow's schema errors dump the whole input frame before the part that matters.
    text = str(exc).rsplit(" Error: ", 1)[-1].strip()
    text = (text.splitlines() or [""])[0] or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _outputs(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Score `frame` and insist on the output contract: one row per input, 0/1 prediction, probability in [0, 1]."""
    import numpy as np

    from retrain.model import conform

    out = model.predict(conform(frame, model))
    missing = {"prediction", "probability"} - set(getattr(out, "columns", []))
    if missing:
        raise ValueError(f"output lacks column(s) {', '.join(sorted(missing))}")
    if len(out) != len(frame):
        raise ValueError(f"{len(out)} output rows for {len(frame)} input rows")
    prob = out["probability"].to_numpy(np.float64)
    if not (np.isfinite(prob) & (prob >= 0) & (prob <= 1)).all():
        raise ValueError("probability outside [0, 1] or not finite")
    if not out["prediction"].isin([0, 1]).all():
        raise ValueError("prediction outside {0, 1}")
    return out


def _check(name: str, body: Callable[[], tuple[bool, str]]) -> CheckResult:
    try:
        passed, detail = body()
    except Exception as exc:  # noqa: BLE001 - any failure of the model under test is the check's result
        return CheckResult(name, False, short_error(exc))
    return CheckResult(name, passed, detail)


def _p95_ms(model: Any, frame: pd.DataFrame, repeats: int) -> float:
    import numpy as np

    from retrain.model import conform

    frame = conform(frame, model)
    model.predict(frame)  # warm-up: first calls pay for lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(frame)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 95) * 1000)


def run_checks(
    model: Any, sample: pd.DataFrame, golden: dict | None, spec: DataSpec, policy: CheckPolicy
) -> list[CheckResult]:
    """All checks after loading, on up to 1,000 rows of `sample` (raw feature rows, e.g. the validation window)."""
    import numpy as np
    import pandas as pd

    sample = sample[list(spec.features)].head(1000).reset_index(drop=True)

    def contract() -> tuple[bool, str]:
        _outputs(model, sample)
        return True, f"{len(sample)} rows in, {len(sample)} rows out; prediction in {{0, 1}}, probability in [0, 1]"

    def golden_samples() -> tuple[bool, str]:
        if golden is None:
            return False, "the training run has no golden_samples.json; retrain the candidate"
        inputs = pd.DataFrame(golden["inputs"]["data"], columns=golden["inputs"]["columns"])
        out = _outputs(model, inputs)
        expected = np.asarray(golden["outputs"]["probability"], dtype=np.float64)
        diff = float(np.max(np.abs(out["probability"].to_numpy(np.float64) - expected)))
        same = bool((out["prediction"].to_numpy() == np.asarray(golden["outputs"]["prediction"])).all())
        ok = same and diff <= policy.golden_tolerance
        return ok, (
            f"{len(inputs)} golden rows: max probability difference {diff:.3g} "
            f"({'within' if diff <= policy.golden_tolerance else 'above'} tolerance {policy.golden_tolerance:g})"
            + ("" if same else "; predictions differ")
        )

    def latency(rows: int, budget_ms: float) -> Callable[[], tuple[bool, str]]:
        def body() -> tuple[bool, str]:
            batch = sample.iloc[np.arange(rows) % len(sample)].reset_index(drop=True)
            p95 = _p95_ms(model, batch, policy.latency_repeats)
            ok = p95 <= budget_ms
            word = "within" if ok else "over"
            return ok, f"p95 {p95:.1f} ms over {policy.latency_repeats} calls ({word} {budget_ms:g} ms)"

        return body

    def unseen_category() -> tuple[bool, str]:
        if not spec.categorical:
            return True, "no categorical features"
        row = sample.head(1).copy()
        for col in spec.categorical:
            row[col] = "__never_seen__"
        p = float(_outputs(model, row)["probability"].iloc[0])
        return True, f"unseen {', '.join(spec.categorical)} value scores p={p:.4f}"

    def extreme_values() -> tuple[bool, str]:
        rows = sample.iloc[[0, 0, 0]].reset_index(drop=True)
        for col in spec.numeric:
            rows[col] = [1e9, -1e9, 0.0]
        p = _outputs(model, rows)["probability"].round(4).tolist()
        return True, f"numerics at 1e9, -1e9, 0 score p={p}"

    return [
        _check("output_contract", contract),
        _check("golden_samples", golden_samples),
        _check("latency_single_row", latency(1, policy.single_row_p95_ms)),
        _check("latency_batch_1000", latency(1000, policy.batch_1000_p95_ms)),
        _check("unseen_category", unseen_category),
        _check("extreme_values", extreme_values),
    ]
