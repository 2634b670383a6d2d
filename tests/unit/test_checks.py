"""Side-by-side latency: the verdict (ratio, outer bound, absolute bound for a first model) and the interleaving."""

from __future__ import annotations

import pandas as pd
import pytest

from retrain.checks import latency_verdict, p95_side_by_side


@pytest.mark.parametrize(("candidate", "production", "ok", "needles"), [
    (12.0, 10.0, True, ["p95 12.0 ms vs production 10.0 ms side by side: 1.20x (within the limit 1.5x)"]),
    (16.0, 10.0, False, ["1.60x (over the limit 1.5x)"]),
    (80.0, 60.0, False, ["1.33x (within the limit 1.5x)", "over the outer bound 50 ms"]),  # both slow: bound
    (30.0, None, True, ["p95 30.0 ms (within 50 ms; no production to compare)"]),
    (51.0, None, False, ["(over 50 ms; no production to compare)"]),
])
def test_latency_verdict(candidate, production, ok, needles):
    passed, detail = latency_verdict(candidate, production, budget_ms=50.0, ratio=1.5)
    assert passed is ok
    for needle in needles:
        assert needle in detail


class _Recorder:
    """A model whose predict only records the call order (no MLflow metadata: nothing to conform)."""

    class metadata:  # noqa: N801 - mimics PyFuncModel.metadata
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
