"""Side-by-side latency: the verdict (ratio to production; the budget, or the default-size reference measured side by
side), the reference scorer, and the interleaving."""

from __future__ import annotations

import types

import pandas as pd
import pytest

from retrain.checks import default_size_reference, latency_verdict, p95_side_by_side

NO_PRODUCTION = "no production to compare"


@pytest.mark.parametrize(
    ("candidate", "production", "reference", "ok", "needles"),
    [
        # with production: the ratio to production, and the budget or the reference
        (12.0, 10.0, None, True, ["p95 12.0 ms vs production 10.0 ms side by side: 1.20x (within the limit 1.5x)"]),
        (16.0, 10.0, None, False, ["1.60x (over the limit 1.5x)", "; within the budget 50 ms"]),
        (16.0, 10.0, 200.0, False, ["1.60x (over the limit 1.5x)"]),  # the reference never excuses production's
        (
            80.0,  # both slow, not one of our models: the budget decides
            60.0,
            None,
            False,
            [
                "1.33x (within the limit 1.5x)",
                "over the budget 50 ms (no default-size reference: not one of our models)",
            ],
        ),
        (
            80.0,  # both slow, and so is a default-size network right now: a busy machine
            60.0,
            70.0,
            True,
            ["over the budget 50 ms, but 1.14x the default-size reference's 70.0 ms side by side (within the limit"],
        ),
        (80.0, 60.0, 20.0, False, ["over the budget 50 ms and 4.00x the default-size reference's 20.0 ms"]),
        # a first model: the budget or the reference
        (30.0, None, None, True, [f"p95 30.0 ms: within the budget 50 ms; {NO_PRODUCTION}"]),
        (30.0, None, 25.0, True, ["within the budget 50 ms (default-size reference 25.0 ms side by side: 1.20x)"]),
        (30.0, None, 5.0, True, ["within the budget 50 ms (default-size reference 5.0 ms side by side: 6.00x)"]),
        (
            51.0,
            None,
            None,
            False,
            [f"over the budget 50 ms (no default-size reference: not one of our models); {NO_PRODUCTION}"],
        ),
        (
            85.4,  # the case, scaled: a default-size first model on a busy machine
            None,
            61.0,
            True,
            [
                "p95 85.4 ms: over the budget 50 ms, but 1.40x the default-size reference's 61.0 ms side by side "
                f"(within the limit 1.5x): the machine is slow now, not the model; {NO_PRODUCTION}"
            ],
        ),
        (
            900.0,  # a network far larger than the default: fails on any machine
            None,
            20.0,
            False,
            [
                "p95 900.0 ms: over the budget 50 ms and 45.00x the default-size reference's 20.0 ms side by side "
                f"(over the limit 1.5x); {NO_PRODUCTION}"
            ],
        ),
        (75.0, None, 50.0, True, ["1.50x the default-size reference's 50.0 ms side by side (within the limit 1.5x)"]),
        (75.1, None, 50.0, False, ["1.50x the default-size reference's 50.0 ms side by side (over the limit 1.5x)"]),
    ],
)
def test_latency_verdict(candidate, production, reference, ok, needles):
    passed, detail = latency_verdict(candidate, production, budget_ms=50.0, ratio=1.5, reference_ms=reference)
    assert passed is ok
    for needle in needles:
        assert needle in detail, detail


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
    assert "over the budget 5 ms (no default-size reference" in measured["latency_single_row"].detail
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


class _Ours:
    """One of our models as far as the checks can tell (a pyfunc wrapper around a `net` and a `spec`), scoring
    through the real `score_frame` and recording the width of the network each call used."""

    class metadata:
        @staticmethod
        def get_input_schema():
            return None

    def __init__(self, hidden_dim: int) -> None:
        from retrain.features import ModelSpec
        from retrain.model import build_network

        spec = ModelSpec(numeric=["x"], categorical=[], categories={}, hidden_dim=hidden_dim)
        self.inner = types.SimpleNamespace(net=build_network(spec).eval(), spec=spec)
        self.widths: list[int] = []

    def unwrap_python_model(self):
        return self.inner

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        from retrain.model import score_frame

        self.widths.append(self.inner.net.net[0].out_features)
        if (frame["x"] < 0).any():
            raise ValueError("a negative x")
        return score_frame(self.inner.net, self.inner.spec, frame)


def test_the_reference_is_the_candidates_pipeline_with_a_default_size_network():
    from retrain.config import ModelSpec as ModelSettings

    model = _Ours(512)
    own = model.inner.net
    reference = default_size_reference(model)
    assert reference is not None and reference.metadata is model.metadata
    out = reference.predict(pd.DataFrame({"x": [1.0, 2.0]}))
    assert list(out.columns) == ["prediction", "probability"] and len(out) == 2
    assert model.widths == [ModelSettings().hidden_dim] and model.inner.net is own  # swapped in, then back
    with pytest.raises(ValueError, match="a negative x"):
        reference.predict(pd.DataFrame({"x": [-1.0]}))
    assert model.inner.net is own  # back even when the call fails
    assert model.inner.spec.hidden_dim == 512
    for not_ours in (_Slow(), _Recorder("c", [])):
        assert default_size_reference(not_ours) is None


def test_a_first_model_is_timed_interleaved_with_the_reference():
    from retrain.checks import run_checks
    from retrain.config import CheckPolicy, DataSpec

    model = _Ours(512)
    policy = CheckPolicy(latency_repeats=3, latency_retries=0, single_row_p95_ms=1e6, batch_1000_p95_ms=1e6)
    results = {
        r.name: r
        for r in run_checks(
            model, pd.DataFrame({"x": [1.0, 2.0]}), None, DataSpec(numeric=("x",), categorical=()), policy
        )
    }
    for name in ("latency_single_row", "latency_batch_1000"):
        assert results[name].passed, results[name]
        assert "within the budget 1e+06 ms (default-size reference" in results[name].detail
        assert "(3 calls each)" in results[name].detail
    timed = model.widths[model.widths.index(64) - 1 :]  # the latency checks' calls, from the first warm-up on
    assert timed[: 2 * (1 + 3)] == [512, 64] + [512, 64, 64, 512, 512, 64]  # warm-up, then alternating rounds
    assert model.inner.net.net[0].out_features == 512
