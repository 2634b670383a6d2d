"""The model's preprocessing through its two entry points (a DataFrame; a request's validated columns) gives the
same arrays, and the service's fast path refuses what the network cannot take, naming record and field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from retrain import features, model
from retrain.serving.fastpath import FastModel
from retrain.serving.payload import Column, PayloadError, parse

NUMERIC, CATEGORICAL = ["x1", "x2"], ["colour"]


def _training(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {"x1": rng.normal(10, 3, n), "x2": rng.exponential(100, n), "colour": rng.choice(["red", "green", "7"], n)}
    )
    frame.loc[frame.index[::10], "x1"] = np.nan
    frame.loc[frame.index[::9], "colour"] = None
    return frame


def _spec():
    return features.build_spec(
        _training(), NUMERIC, CATEGORICAL, hidden_dim=8, missing={"x1": "impute", "x2": "error", "colour": "impute"}
    )


def _columns(spec) -> list[Column]:
    return [Column(c, "number", spec.policy(c) != "impute") for c in NUMERIC] + [
        Column(c, "category", spec.policy(c) != "impute") for c in CATEGORICAL
    ]


def _records(n: int, seed: int) -> list[dict]:
    """Random records as clients send them, with the edge cases mixed in: nulls where imputed, unseen
    categories, integer codes and numeric text for categories, integers for numbers, extremes."""
    rng = np.random.default_rng(seed)
    colours = ["red", "green", "blue", "", "7", 7, 7.0, "7.0", None, "__missing__", 12]
    x1 = [None, 0, -1, 10, 1e30, -1e30, 3e38, 1e-300, 2**53 + 1, 12.5]
    out = []
    for i in range(n):
        out.append(
            {
                "x1": x1[i % len(x1)] if rng.random() < 0.5 else float(rng.normal(10, 3)),
                "x2": int(rng.integers(0, 500)) if rng.random() < 0.5 else float(rng.exponential(100)),
                "colour": colours[int(rng.integers(len(colours)))],
            }
        )
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_entry_points_give_the_same_arrays_and_probabilities(seed):
    spec = _spec()
    records = _records(300, seed)
    parsed = parse({"dataframe_records": records}, _columns(spec), None)
    frame = pd.DataFrame(records)  # how a client's records become a frame for the pyfunc model
    fast, pyfunc = features.encode_columns(parsed.columns, parsed.n, spec), features.encode(frame, spec)
    for got, want in zip(fast, pyfunc, strict=True):
        np.testing.assert_array_equal(got, want)
    torch.manual_seed(seed)
    net = model.build_network(spec, np.array([10.0, 100.0, 0.1], np.float32), np.array([3.0, 100.0, 0.3], np.float32))
    net.eval()
    prediction, probability = FastModel(net, spec).predict(parsed)
    expected = model.score_frame(net, spec, frame)
    assert np.abs(probability - expected["probability"].to_numpy()).max() <= 1e-9
    assert prediction.tolist() == expected["prediction"].tolist()


def test_an_absent_imputed_feature_is_null_in_every_record():
    spec = _spec()
    parsed = parse({"dataframe_records": [{"x2": 1.0}, {"x2": 2.0}]}, _columns(spec), None)
    numeric, codes = features.encode_columns(parsed.columns, parsed.n, spec)
    both = pd.DataFrame({"x1": [None, None], "x2": [1.0, 2.0], "colour": [None, None]})
    np.testing.assert_array_equal(numeric, features.encode(both, spec)[0])
    np.testing.assert_array_equal(codes, features.encode(both, spec)[1])


def test_values_beyond_float32_are_refused_naming_column_and_row():
    spec = _spec()
    frame = pd.DataFrame({"x1": [1.0, 1e39], "x2": [1.0, 2.0], "colour": ["red", "red"]})
    with pytest.raises(features.InputError, match="feature 'x1' is 1e\\+39 in row 1, beyond the model's range") as e:
        features.encode(frame, spec)
    assert (e.value.column, e.value.row) == ("x1", 1)


def test_the_fast_path_refuses_what_the_network_cannot_standardise_before_it_runs():
    spec = _spec()
    net = model.build_network(spec, np.zeros(3, np.float32), np.array([1e-30, 1.0, 1.0], np.float32))
    body = {"dataframe_records": [{"x1": 1.0, "x2": 1.0, "colour": "red"}, {"x1": 3e38, "x2": 1.0, "colour": "red"}]}
    with pytest.raises(PayloadError) as info:
        FastModel(net, spec).encode(parse(body, _columns(spec), None))
    assert info.value.status == 422 and info.value.message.startswith("record 1: feature 'x1' is 3e+38, too far")


def test_only_our_models_have_a_fast_path():
    class Other:
        def unwrap_python_model(self):
            return object()

    assert FastModel.of(Other()) is None and FastModel.of(object()) is None
