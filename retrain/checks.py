"""Pre-promotion checks on the candidate as the registry serves it: contract, golden samples, latency, odd rows.

Each check scores through the loaded pyfunc model and returns a `CheckResult`; an exception inside a check is
that check's failure (short text), never the caller's. Loading and logging are the caller's job.

Latency is judged side by side when there is a production model: both models score the same rows in the same
process, calls interleaved (candidate, production, then production, candidate, ...), so background load hits
both alike; the candidate's p95 may be at most `latency_ratio` times production's, and the absolute budget is
only an outer bound. A first model meets the absolute budget. A failed measurement is repeated up to
`latency_retries` times before the check fails.
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


def _outputs(model: Any, frame: pd.DataFrame, threshold: float | None = None) -> pd.DataFrame:
    """Score `frame` and insist on the output contract: one row per input, 0/1 prediction, probability in [0, 1],
    and (given the model's threshold) prediction = probability >= threshold."""
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
    if threshold is not None:
        wrong = int((out["prediction"].to_numpy() != (prob >= threshold)).sum())
        if wrong:
            raise ValueError(f"{wrong} prediction(s) differ from probability >= the version's threshold {threshold:g}")
    return out


def _check(name: str, body: Callable[[], tuple[bool, str]]) -> CheckResult:
    try:
        passed, detail = body()
    except Exception as exc:
        return CheckResult(name, False, short_error(exc))
    return CheckResult(name, passed, detail)


def p95_side_by_side(models: list[Any], frame: pd.DataFrame, repeats: int) -> list[float]:
    """p95 milliseconds of `predict` per model on the same rows, calls interleaved (order alternating each round)."""
    import numpy as np

    from retrain.model import conform

    frames = [conform(frame, m) for m in models]
    for model, rows in zip(models, frames, strict=True):
        model.predict(rows)  # warm-up: first calls pay for lazy initialisation
    times: list[list[float]] = [[] for _ in models]
    order = list(range(len(models)))
    for _ in range(repeats):
        for i in order:
            start = time.perf_counter()
            models[i].predict(frames[i])
            times[i].append(time.perf_counter() - start)
        order.reverse()
    return [float(np.percentile(t, 95) * 1000) for t in times]


def latency_verdict(
    candidate_ms: float, production_ms: float | None, budget_ms: float, ratio: float
) -> tuple[bool, str]:
    """Pass or fail, with the numbers: relative to production if there is one (budget = outer bound), else absolute."""
    if production_ms is None:
        ok = candidate_ms <= budget_ms
        word = "within" if ok else "over"
        return ok, f"p95 {candidate_ms:.1f} ms ({word} {budget_ms:g} ms; no production to compare)"
    within_ratio = candidate_ms <= ratio * production_ms
    within_budget = candidate_ms <= budget_ms
    found = candidate_ms / production_ms if production_ms > 0 else float("inf")
    text = (
        f"p95 {candidate_ms:.1f} ms vs production {production_ms:.1f} ms side by side: {found:.2f}x "
        f"({'within' if within_ratio else 'over'} the limit {ratio:g}x)"
    )
    if not within_budget:
        text += f"; over the outer bound {budget_ms:g} ms"
    return within_ratio and within_budget, text


def run_checks(
    model: Any,
    sample: pd.DataFrame,
    golden: dict | None,
    spec: DataSpec,
    policy: CheckPolicy,
    *,
    incumbent: Any | None = None,
    threshold: float | None = None,
    measure_latency: bool = True,
) -> list[CheckResult]:
    """All checks after loading, on up to 1,000 rows of `sample` (raw feature rows, e.g. the validation window).

    `incumbent`: the production model, loaded, for side-by-side latency; `threshold`: the candidate version's
    decision threshold, which its `prediction` must follow. `measure_latency=False` (a backtest's replay, where
    latency times this machine now, not the history) reports both latency checks as passed, not measured.
    """
    import numpy as np
    import pandas as pd

    sample = sample[list(spec.features)].head(1000).reset_index(drop=True)

    def contract() -> tuple[bool, str]:
        _outputs(model, sample, threshold)
        at = "" if threshold is None else f", prediction = probability >= {threshold:.4g}"
        return True, (
            f"{len(sample)} rows in, {len(sample)} rows out; prediction in {{0, 1}}, probability in [0, 1]{at}"
        )

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
            if not measure_latency:
                return True, "not measured: a backtest replay (latency times this machine now, not the history)"
            batch = sample.iloc[np.arange(rows) % len(sample)].reset_index(drop=True)
            models = [model] if incumbent is None else [model, incumbent]
            attempts = policy.latency_retries + 1
            for attempt in range(1, attempts + 1):  # noqa: B007 - the deciding attempt is reported after the loop
                p95 = p95_side_by_side(models, batch, policy.latency_repeats)
                ok, text = latency_verdict(
                    p95[0], p95[1] if incumbent is not None else None, budget_ms, policy.latency_ratio
                )
                if ok:
                    break
            tries = f", attempt {attempt} of {attempts}" if attempt > 1 or not ok else ""
            return ok, f"{text} over {policy.latency_repeats} calls{tries}"

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

    def missing_values() -> tuple[bool, str]:
        """Each feature null in turn: the model scores the row, or refuses it naming that feature; never NaN."""
        scored, refused, wrong = [], [], []
        for col in spec.features:
            row = sample.head(1).astype(object)
            row[col] = None
            try:
                _outputs(model, row)
                scored.append(col)
            except Exception as exc:
                if repr(col) in str(exc):
                    refused.append(col)
                else:
                    wrong.append(f"{col} ({short_error(exc, 80)})")
        detail = (
            f"a null scores in: {', '.join(scored) or 'none'}; is refused naming the column in: "
            f"{', '.join(refused) or 'none'}"
        )
        if wrong:
            detail = (
                f"a null in {'; '.join(wrong)} failed without naming the column or scored no valid output; " + detail
            )
        return not wrong, detail

    return [
        _check("output_contract", contract),
        _check("golden_samples", golden_samples),
        _check("latency_single_row", latency(1, policy.single_row_p95_ms)),
        _check("latency_batch_1000", latency(1000, policy.batch_1000_p95_ms)),
        _check("unseen_category", unseen_category),
        _check("extreme_values", extreme_values),
        _check("missing_values", missing_values),
    ]
