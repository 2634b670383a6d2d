"""Pre-promotion checks on the candidate as the registry serves it: contract, golden samples, latency, odd rows.

Each check scores through the loaded pyfunc model and returns a `CheckResult`; an exception inside a check is
that check's failure (short text), never the caller's. Loading and logging are the caller's job.

Latency is judged side by side: every model timed scores the same rows in the same process, calls interleaved
(candidate, production, reference, then reference, production, candidate, ...), so background load hits all
alike. Two rules, both must hold:
- with a production model, the candidate's p95 may be at most `latency_ratio` times production's;
- the budget (`single_row_p95_ms`, `batch_1000_p95_ms`): the candidate's p95 is within it, OR within
  `latency_ratio` times a reference's p95. The reference is the candidate's own pyfunc pipeline (MLflow's input
  check, the casts and encoding, the output frame) with a network of the default architecture
  (`retrain.config.ModelSpec`'s hidden size, random weights) in place of its own: what a model of the default
  size costs on this machine right now. So a default-size model passes on a busy machine that blows the budget,
  and a model much larger than the default fails on any machine. A model that is not ours (no `net` and `spec`
  in its pyfunc wrapper) has no reference: the budget alone decides its bound.
A failed measurement is repeated up to `latency_retries` times before the check fails.
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


class _DefaultSizeReference:
    """The candidate's pyfunc model scoring with a default-size network swapped in for the duration of each call."""

    def __init__(self, model: Any, inner: Any, net: Any) -> None:
        self.model, self.inner, self.net = model, inner, net
        self.metadata = model.metadata  # the candidate's signature: `conform` casts the rows alike

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        own, self.inner.net = self.inner.net, self.net
        try:
            return self.model.predict(frame)
        finally:
            self.inner.net = own


def default_size_reference(model: Any) -> Any | None:
    """A scorer standing for "a model of the default size on this machine now", or None when `model` is not ours.

    The candidate's own pipeline (pyfunc `predict`: MLflow's input check, `features.encode`, the output frame) with
    a network of the default architecture (the default `model.hidden_dim`, random weights, the candidate's
    standardisation) in place of its own while the reference scores: only the network's size differs."""
    import dataclasses

    from retrain.config import ModelSpec as ModelSettings
    from retrain.model import build_network, ours

    inner = ours(model)
    if inner is None:
        return None
    net = inner.net
    default = dataclasses.replace(inner.spec, hidden_dim=ModelSettings().hidden_dim)
    reference = build_network(default, net.mean.detach().cpu().numpy(), net.std.detach().cpu().numpy())
    return _DefaultSizeReference(model, inner, reference.to(net.mean.device).eval())


def latency_verdict(
    candidate_ms: float,
    production_ms: float | None,
    budget_ms: float,
    ratio: float,
    reference_ms: float | None = None,
) -> tuple[bool, str]:
    """Pass or fail, with the numbers. The bound: p95 within `budget_ms`, or within `ratio` x the default-size
    reference's p95 (measured side by side; None: no reference). With production, also within `ratio` x its p95."""

    def times(other: float) -> float:
        return candidate_ms / other if other > 0 else float("inf")

    within_budget = candidate_ms <= budget_ms
    within_reference = reference_ms is not None and candidate_ms <= ratio * reference_ms
    bound = f"{'within' if within_budget else 'over'} the budget {budget_ms:g} ms"
    if reference_ms is None:
        bound += "" if within_budget else " (no default-size reference: not one of our models)"
    elif within_budget:
        bound += f" (default-size reference {reference_ms:.1f} ms side by side: {times(reference_ms):.2f}x)"
    else:
        ref = (
            f"{times(reference_ms):.2f}x the default-size reference's {reference_ms:.1f} ms side by side "
            f"({'within' if within_reference else 'over'} the limit {ratio:g}x)"
        )
        bound += f", but {ref}: the machine is slow now, not the model" if within_reference else f" and {ref}"
    bound_ok = within_budget or within_reference
    if production_ms is None:
        return bound_ok, f"p95 {candidate_ms:.1f} ms: {bound}; no production to compare"
    within_ratio = candidate_ms <= ratio * production_ms
    return within_ratio and bound_ok, (
        f"p95 {candidate_ms:.1f} ms vs production {production_ms:.1f} ms side by side: {times(production_ms):.2f}x "
        f"({'within' if within_ratio else 'over'} the limit {ratio:g}x); {bound}"
    )


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

    `incumbent`: the production model, loaded, for side-by-side latency (timed with the candidate and, for ours, a
    default-size reference: `default_size_reference`); `threshold`: the candidate version's
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
            reference = default_size_reference(model)
            timed = [m for m in (model, incumbent, reference) if m is not None]
            attempts = policy.latency_retries + 1
            for attempt in range(1, attempts + 1):  # noqa: B007 - the deciding attempt is reported after the loop
                p95 = p95_side_by_side(timed, batch, policy.latency_repeats)
                production_ms = p95[1] if incumbent is not None else None
                reference_ms = p95[-1] if reference is not None else None
                ok, text = latency_verdict(p95[0], production_ms, budget_ms, policy.latency_ratio, reference_ms)
                if ok:
                    break
            tries = f", attempt {attempt} of {attempts}" if attempt > 1 or not ok else ""
            return ok, f"{text} ({policy.latency_repeats} calls each{tries})"

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
