"""Side-by-side latency: the verdict (ratio, outer bound, absolute bound for a first model) and the interleaving."""

from __future__ import annotations

import pandas as pd
import pytest

from retrain.checks import latency_verdict, p95_side_by_side


@pytest.mark.parametrize(
    ("candidate", "production", "ok", "needles"),
    [
        (12.0, 10.0, True, ["p95 12.0 ms vs production 10.0 ms side by side: 1.20x (within the limit 1.5x)"]),
        (16.0, 10.0, False, ["1.60x (over the limit 1.5x)"]),
        (80.0, 60.0, False, ["1.33x (within the limit 1.5x)", "over the outer bound 50 ms"]),  # both slow: bound
        (30.0, None, True, ["p95 30.0 ms (within 50 ms; no production to compare)"]),
        (51.0, None, False, ["(over 50 ms; no production to compare)"]),
    ],
)
def test_latency_verdict(candidate, production, ok, needles):
    passed, detail = latency_verdict(candidate, production, budget_ms=50.0, ratio=1.5)
    assert passed is ok
    for needle in needles:
        assert needle in detail


class _Recorder:
    """A model whose predict only records the call order (no MLflow metadata: nothing to conform)."""

    class metadata:
        @staticmethod
        def get_input_schema():
            return None

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.calls.append(self.name)
        return frame


def test_calls_are_interleaved_in_alternating_order():
    calls: list[str] = []
    p95 = p95_side_by_side([_Recorder("c", calls), _Recorder("p", calls)], pd.DataFrame({"x": [1]}), repeats=4)
    assert calls == ["c", "p"] + ["c", "p", "p", "c", "c", "p", "p", "c"]  # warm-up, then alternating rounds
    assert len(p95) == 2 and all(v >= 0 for v in p95)


class _Slow:
    """A model that answers correctly but takes 30 ms a call, recording how many rows each call scored."""

    class metadata:
        @staticmethod
        def get_input_schema():
            return None

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        import time

        self.calls.append(len(frame))
        time.sleep(0.03)
        return pd.DataFrame({"prediction": [0] * len(frame), "probability": [0.25] * len(frame)})


def _latency_results(measure: bool) -> tuple[dict, _Slow]:
    from retrain.checks import run_checks
    from retrain.config import CheckPolicy, DataSpec

    spec = DataSpec(numeric=("x",), categorical=())
    model = _Slow()
    policy = CheckPolicy(latency_repeats=3, latency_retries=0, single_row_p95_ms=5.0, batch_1000_p95_ms=5.0)
    results = run_checks(model, pd.DataFrame({"x": [1.0, 2.0]}), None, spec, policy, measure_latency=measure)
    return {r.name: r for r in results}, model


def test_a_replay_does_not_time_the_machine():
    measured, slow = _latency_results(True)
    assert not measured["latency_single_row"].passed and not measured["latency_batch_1000"].passed
    assert "over 5 ms" in measured["latency_single_row"].detail
    skipped, quick = _latency_results(False)
    for name in ("latency_single_row", "latency_batch_1000"):
        assert skipped[name].passed and skipped[name].detail.startswith("not measured: a backtest replay")
    assert 1000 in slow.calls and 1000 not in quick.calls  # the batch was never scored
    assert len(slow.calls) - len(quick.calls) == 2 * (1 + 3)  # warm-up and repeats of both latency checks
    # every other check ran the same either way
    assert {k: (r.passed, r.detail) for k, r in skipped.items() if not k.startswith("latency")} == {
        k: (r.passed, r.detail) for k, r in measured.items() if not k.startswith("latency")
    }


def test_the_replay_switches_hold_only_inside_it():
    from retrain import replay

    assert replay.measures_latency() and replay.draws_figures() and not replay.active()
    with pytest.raises(RuntimeError), replay.replaying():
        assert not replay.measures_latency() and not replay.draws_figures() and replay.active()
        raise RuntimeError("a failed step")
    assert replay.measures_latency() and replay.draws_figures() and not replay.active()
