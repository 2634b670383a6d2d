"""The network, its encoding, save/load without unpickling, and the fit loop (pure torch/numpy)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from retrain import model
from retrain.train import evaluate_loss, fit


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Two numeric features and one categorical; label = a noisy rule on them."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(10, 3, n)
    x2 = rng.exponential(100, n)
    colour = rng.choice(["red", "green", "blue"], n)
    logit = 1.5 * (x1 - 10) / 3 - 1.0 * (x2 > 100) + 2.0 * (colour == "red") - 0.5
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "label": label})


def _prepared(n: int, seed: int = 0):
    frame = _frame(n, seed)
    spec = model.build_spec(frame, ["x1", "x2"], ["colour"], hidden_dim=16)
    num, codes = model.encode(frame, spec)
    return frame, spec, (num, codes, frame["label"].to_numpy(np.int64))


def _net(spec, arrays, seed: int = 0):
    torch.manual_seed(seed)
    return model.build_network(spec, arrays[0].mean(axis=0), arrays[0].std(axis=0))


def test_spec_learns_vocabulary_and_round_trips_json():
    frame, spec, _ = _prepared(200)
    assert spec.categories == {"colour": ["blue", "green", "red"]}
    assert spec.input_dim == 2 + 3 + 1  # numerics + one-hot incl. the unknown bucket
    assert model.ModelSpec.from_json(spec.to_json()) == spec
    json.loads(spec.to_json())


def test_encode_maps_unknown_categories_to_the_extra_bucket():
    _, spec, _ = _prepared(200)
    num, codes = model.encode(pd.DataFrame({"x1": [1, 2], "x2": [3.5, 4], "colour": ["red", "purple"]}), spec)
    assert num.dtype == np.float32 and num.tolist() == [[1.0, 3.5], [2.0, 4.0]]
    assert codes.dtype == np.int64 and codes[:, 0].tolist() == [2, 3]


def test_network_standardises_inside():
    _, spec, arrays = _prepared(300)
    net = _net(spec, arrays)
    assert torch.allclose(net.mean, torch.as_tensor(arrays[0].mean(axis=0)))
    out = net(torch.from_numpy(arrays[0][:5]), torch.from_numpy(arrays[1][:5]))
    assert out.shape == (5, 2)
    # Shifting inputs and the stored mean together leaves outputs unchanged: standardisation is applied.
    shifted = model.build_network(spec, arrays[0].mean(axis=0) + 100, arrays[0].std(axis=0))
    shifted.load_state_dict({**net.state_dict(), "mean": net.mean + 100})
    out2 = shifted(torch.from_numpy(arrays[0][:5] + 100), torch.from_numpy(arrays[1][:5]))
    assert torch.allclose(out, out2, atol=1e-4)


def test_fit_learns_and_is_deterministic():
    _, spec, train = _prepared(4000, seed=1)
    _, _, val = _prepared(1000, seed=2)
    results = []
    for _ in range(2):
        net = _net(spec, train)
        result = fit(net, train, val, epochs=6, batch_size=128, learning_rate=1e-2, seed=3)
        results.append((result, net))
    (r1, n1), (r2, n2) = results
    assert r1.train_loss == r2.train_loss and r1.val_loss == r2.val_loss
    assert all(torch.equal(a, b) for a, b in zip(n1.state_dict().values(), n2.state_dict().values(), strict=True))
    assert len(r1.train_loss) == len(r1.val_loss) <= 6
    assert r1.train_loss[-1] < r1.train_loss[0]
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(val[2], model.predict_proba(n1, val[0], val[1]))
    assert auc > 0.8
    assert not n1.training  # left in eval mode


def test_fit_restores_best_epoch_and_stops_early():
    _, spec, train = _prepared(600, seed=1)
    _, _, val = _prepared(300, seed=2)
    net = _net(spec, train)
    epochs_seen = []
    # A large learning rate on few rows overfits quickly, so validation loss turns up.
    result = fit(
        net,
        train,
        val,
        epochs=60,
        batch_size=32,
        learning_rate=0.05,
        patience=2,
        seed=0,
        on_epoch=lambda e, t, v: epochs_seen.append((e, t, v)),
    )
    assert result.stopped_early
    assert len(result.val_loss) == result.best_epoch + 3 < 60
    assert [e for e, _, _ in epochs_seen] == list(range(len(result.val_loss)))
    assert [v for _, _, v in epochs_seen] == result.val_loss
    best = min(result.val_loss)
    assert result.val_loss[result.best_epoch] == best
    tensors = [torch.from_numpy(a) for a in val]
    assert evaluate_loss(net, tensors[0], tensors[1], tensors[2]) == pytest.approx(best, rel=1e-5)


def test_predict_proba_batches_agree():
    _, spec, arrays = _prepared(1000)
    net = _net(spec, arrays)
    whole = model.predict_proba(net, arrays[0], arrays[1])
    batched = model.predict_proba(net, arrays[0], arrays[1], batch_size=7)
    np.testing.assert_allclose(whole, batched, rtol=1e-6)
    assert whole.dtype == np.float64 and ((whole > 0) & (whole < 1)).all()


def test_save_load_round_trip_uses_tensors_only(tmp_path):
    frame, spec, arrays = _prepared(500)
    net = _net(spec, arrays)
    fit(net, arrays, arrays, epochs=2, batch_size=64, learning_rate=1e-2)
    files = model.save(net, spec, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["spec.json", "weights.pt"]
    state = torch.load(files["weights"], weights_only=True)  # would raise if it held pickled objects
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded, loaded_spec = model.load(files["spec"], files["weights"])
    assert loaded_spec == spec
    features = frame[["x1", "x2", "colour"]]
    pd.testing.assert_frame_equal(
        model.score_frame(loaded, loaded_spec, features), model.score_frame(net, spec, features)
    )


def test_score_frame_outputs_and_missing_column():
    frame, spec, arrays = _prepared(300)
    net = _net(spec, arrays)
    scored = model.score_frame(net, spec, frame[["colour", "x2", "x1"]])  # column order does not matter
    assert list(scored.columns) == ["prediction", "probability"]
    assert scored["prediction"].tolist() == (scored["probability"] >= 0.5).astype(int).tolist()
    with pytest.raises(ValueError, match="missing feature columns: x2"):
        model.score_frame(net, spec, frame[["x1", "colour"]])


# --- inputs as sources deliver them, missing values, thresholds ------------------------------------------------


def _imputing_spec(frame: pd.DataFrame):
    """A spec that imputes x1 (missing in training) and colour, and refuses a missing x2."""
    return model.build_spec(
        frame, ["x1", "x2"], ["colour"], hidden_dim=16, missing={"x1": "impute", "x2": "error", "colour": "impute"}
    )


def _with_gaps(n: int = 400) -> pd.DataFrame:
    frame = _frame(n, seed=4)
    frame.loc[frame.index[::10], "x1"] = np.nan
    frame.loc[frame.index[::7], "colour"] = None
    return frame


def test_impute_learns_median_indicator_and_missing_category():
    frame = _with_gaps()
    spec = _imputing_spec(frame)
    assert spec.impute == {"x1": pytest.approx(float(np.nanmedian(frame["x1"])))}
    assert spec.indicators == ["x1"] and spec.numeric_dim == 3
    assert spec.categories["colour"] == ["__missing__", "blue", "green", "red"]
    num, codes = model.encode(frame, spec)
    gaps = frame["x1"].isna().to_numpy()
    assert (num[gaps, 0] == np.float32(spec.impute["x1"])).all() and (num[:, 2] == gaps).all()
    assert not np.isnan(num).any()
    assert (codes[frame["colour"].isna().to_numpy(), 0] == 0).all()  # the __missing__ category, not "unknown"


def test_training_rows_and_client_rows_encode_the_same():
    """What training sees (validated: NaN, "__missing__", floats) and what clients send (None, pd.NA, ints,
    integral floats, numeric text) are the same inputs to the network."""
    spec = _imputing_spec(_with_gaps())
    training = pd.DataFrame(
        {"x1": [np.nan, 12.0, np.nan], "x2": [150.0, 3.0, 80.0], "colour": ["__missing__", "red", "blue"]}
    )
    for x1, colour in (
        ([None, 12, None], [None, "red", "blue"]),
        ([pd.NA, 12.0, np.nan], [np.nan, "red", "blue"]),
        (["", "12", None], [pd.NA, "red", "blue"]),
    ):
        client = pd.DataFrame(
            {
                "x1": pd.Series(x1, dtype=object).replace("", None),
                "x2": pd.Series([150, 3, 80], dtype=object),
                "colour": pd.Series(colour, dtype=object),
            }
        )
        for got, want in zip(model.encode(client, spec), model.encode(training, spec), strict=True):
            np.testing.assert_array_equal(got, want)


def test_integer_coded_categories_match_their_text():
    frame = pd.DataFrame({"x1": [1.0] * 4, "x2": [1.0] * 4, "code": ["1", "2", "3", "1"]})
    spec = model.build_spec(frame, ["x1", "x2"], ["code"], hidden_dim=4)
    assert spec.categories == {"code": ["1", "2", "3"]}
    for values in ([1, 2, 3, 7], [1.0, 2.0, 3.0, 7.0], ["1", "2.0", "3", "7"], [np.int8(1), 2, "3", "x"]):
        codes = model.encode(pd.DataFrame({"x1": [0] * 4, "x2": [0] * 4, "code": values}), spec)[1][:, 0]
        assert codes.tolist() == [0, 1, 2, 3], values  # 7 / "x": the unknown bucket


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("x2", None, "feature 'x2' is missing (null) in 1 row(s)"),
        ("x2", np.nan, "model.missing.x2=impute"),
        ("x1", "52k", "feature 'x1' must be numeric: 1 value(s) are not (e.g. '52k')"),
        ("x2", float("inf"), "feature 'x2' has 1 infinite value(s)"),
    ],
)
def test_inputs_the_model_cannot_score_name_the_column(column, value, needle):
    spec = _imputing_spec(_with_gaps())
    row = pd.DataFrame({"x1": [10.0], "x2": [5.0], "colour": ["red"]}).astype(object)
    row[column] = [value]
    with pytest.raises(model.InputError) as info:
        model.encode(row, spec)
    assert needle in str(info.value)
    refused = model.build_spec(_frame(50), ["x1", "x2"], ["colour"], hidden_dim=4)  # missing: error for all
    with pytest.raises(model.InputError, match="feature 'colour' is missing"):
        model.encode(pd.DataFrame({"x1": [1.0], "x2": [1.0], "colour": [None]}), refused)


def test_prediction_uses_the_spec_threshold_and_old_specs_load():
    frame, spec, arrays = _prepared(300)
    net = _net(spec, arrays)
    scored = model.score_frame(net, dataclasses.replace(spec, threshold=0.3), frame)
    assert (scored["prediction"] == (scored["probability"] >= 0.3)).all()
    legacy = json.loads(spec.to_json())
    for key in ("threshold", "impute", "indicators", "missing"):
        del legacy[key]
    old = model.ModelSpec.from_json(json.dumps(legacy))
    assert old.threshold == 0.5 and old.missing is None and old.policy("colour") == "impute"
    with pytest.raises(model.InputError, match="feature 'x1' is missing"):
        model.encode(pd.DataFrame({"x1": [None], "x2": [1.0], "colour": ["red"]}), old)


def test_describe_inputs_documents_each_column():
    doc = _imputing_spec(_with_gaps()).describe_inputs()
    assert doc["x1"].startswith("numeric: int or float") and "missing indicator" in doc["x1"]
    assert "null refused" in doc["x2"] and "__missing__" in doc["colour"]


def test_early_stopping_waits_min_epochs():
    _, spec, train = _prepared(600, seed=1)
    _, _, val = _prepared(300, seed=2)
    net = _net(spec, train)
    result = fit(net, train, val, epochs=60, batch_size=32, learning_rate=0.05, patience=1, min_epochs=8, seed=0)
    assert result.min_epochs == 8
    assert len(result.val_loss) >= 8 and result.best_epoch >= 7
    assert result.val_loss[result.best_epoch] == min(result.val_loss[7:])
    assert fit(_net(spec, train), train, val, epochs=2, batch_size=64, learning_rate=1e-2, min_epochs=5).min_epochs == 2
