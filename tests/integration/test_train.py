"""The train step end to end on a real SQLite store: what it logs, registers and serves, and what it refuses.

One model is trained once per module (its own store, `trained`) and inspected by many small tests; tests
that must start from an empty store use the per-test store of the autouse `tracking` fixture.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from retrain import synth
from retrain.cli import cli
from retrain.version_tags import expand
from tests.conftest import FAST, REPO, fast_settings, point_mlflow, use_store, write_with_gaps

REASON = "drift on income"
FEATURES = [
    "age",
    "income",
    "tenure_days",
    "num_purchases",
    "avg_transaction_value",
    "days_since_last_purchase",
    "channel",
]


def _train_args(data_path: Path, *extra: str) -> list[str]:
    """`retrain train` with the fast settings, passed both ways the CLI accepts overrides."""
    return ["train", "--data", str(data_path), "--overrides", " ".join(FAST[1:]), "--set", FAST[0], *extra]


@dataclass
class Trained:
    uri: str
    folder: Path
    data: Path
    stdout: str
    out: dict

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point fluent MLflow calls at this module's store for one test."""
        point_mlflow(monkeypatch, self.uri)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _template_db, stable_data) -> Trained:
    """`retrain train --json --reason ...` once, in its own store and working folder."""
    folder = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        uri = use_store(mp, _template_db, folder)
        result = CliRunner().invoke(cli, [*_train_args(stable_data, "--reason", REASON), "--json"])
    assert result.exit_code == 0, result.output
    return Trained(uri, folder, stable_data, result.stdout, json.loads(result.stdout))


@pytest.fixture(scope="module")
def windows(stable_data):
    """The validated training (fit + tuning) and validation rows the module's model was trained on."""
    from retrain.training import prepare

    return prepare(fast_settings(stable_data), None)


def _artifact(trained: Trained, run_id: str, path: str, tmp_path: Path) -> Path:
    return Path(trained.client().download_artifacts(run_id, path, str(tmp_path)))


# --- the one training run -------------------------------------------------------------------------------------


def test_json_output_is_one_object(trained):
    lines = trained.stdout.strip().splitlines()
    assert len(lines) == 1
    out = trained.out
    assert set(out) == {"model_name", "version", "run_id", "alias", "as_of", "metrics", "threshold", "reused", "notes"}
    assert out["notes"] == []  # the windows lie inside the data
    assert (out["model_name"], out["version"], out["alias"], out["reused"]) == (
        "churn-classifier",
        "1",
        "staging",
        False,
    )
    assert out["as_of"] == "2026-03-01"  # the latest day of the data
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "expected_cost"} <= set(out["metrics"])
    assert 0 < out["threshold"] < 1


def test_params_are_the_full_effective_settings(trained, stable_data):
    run = trained.client().get_run(trained.out["run_id"])
    expected = fast_settings(stable_data).flat()
    # plus what the command was given, as effective values (the CLI's --config, --set; the as-of and data read)
    given = {k: run.data.params.pop(k) for k in ("as_of", "config", "data", "set")}
    assert given["as_of"] == "2026-03-01" and given["data"] == str(stable_data) and "model.epochs=6" in given["set"]
    assert run.data.params == expected
    assert run.data.params["model.epochs"] == "6" and run.data.params["windows.train_days"] == "30"


def test_per_epoch_loss_history(trained):
    client = trained.client()
    run = client.get_run(trained.out["run_id"])
    train_loss = client.get_metric_history(run.info.run_id, "train_loss")
    val_loss = client.get_metric_history(run.info.run_id, "val_loss")
    n = len(train_loss)
    assert 1 <= n <= 6 and len(val_loss) == n
    assert sorted(m.step for m in train_loss) == list(range(n)) == sorted(m.step for m in val_loss)
    values = [m.value for m in sorted(val_loss, key=lambda m: m.step)]
    assert all(0 < v < 1 and math.isfinite(v) for v in values)
    assert int(run.data.tags["retrain.best_epoch"]) == int(np.argmin(values))


def test_logged_metrics_are_the_registered_models_metrics(trained, windows, monkeypatch):
    from retrain.metrics import classification_metrics
    from retrain.model import conform

    trained.use(monkeypatch)
    val = windows.validation
    model = mlflow.pyfunc.load_model("models:/churn-classifier@staging")
    probability = model.predict(conform(val[FEATURES], model))["probability"].to_numpy()
    version = trained.client().get_model_version("churn-classifier", "1")
    recomputed = classification_metrics(
        val["label"].to_numpy(np.int64), probability, float(version.tags["retrain.threshold"])
    )
    run = trained.client().get_run(trained.out["run_id"])
    version_metrics = json.loads(expand(version.tags)["retrain.metrics"])
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "expected_cost"):
        assert run.data.metrics[f"val_{name}"] == pytest.approx(recomputed[name], abs=1e-9), name
        assert trained.out["metrics"][name] == pytest.approx(recomputed[name], abs=1e-9), name
        assert version_metrics[name] == pytest.approx(recomputed[name], abs=1e-6), name


def _constant_baseline(y: np.ndarray) -> tuple[float, float]:
    """Log loss of always predicting the base rate, and accuracy of always predicting the majority class."""
    prior = y.mean()
    return -(prior * math.log(prior) + (1 - prior) * math.log(1 - prior)), max(prior, 1 - prior)


def test_fast_model_beats_a_constant_predictor(trained, windows):
    constant_log_loss, _ = _constant_baseline(windows.validation["label"].to_numpy(np.int64))
    assert trained.out["metrics"]["roc_auc"] > 0.75
    assert trained.out["metrics"]["log_loss"] < constant_log_loss


@pytest.mark.slow
def test_default_settings_beat_a_constant_predictor(tmp_path):
    """With the shipped defaults (60 + 14 day windows, up to 40 epochs) on 80 stable days."""
    from retrain.config import load_settings
    from retrain.training import prepare, train

    synth.write(synth.SynthSpec(days=80, rows_per_day=400, seed=2), tmp_path / "d")
    settings = load_settings(None, [f"data.path={tmp_path / 'd'}"])
    outcome = train(settings)
    y = prepare(settings, None).validation["label"].to_numpy(np.int64)
    constant_log_loss, _ = _constant_baseline(y)
    assert outcome.metrics["roc_auc"] > 0.75
    assert outcome.metrics["log_loss"] < constant_log_loss - 0.05
    # its decisions (max F1 threshold) beat flagging every customer, the best trivial decision for F1
    assert outcome.metrics["f1"] > 2 * y.mean() / (1 + y.mean()) + 0.1


@pytest.mark.slow
def test_training_is_reproducible(stable_data):
    """Same data and seed under two model names: identical losses and metrics (weights are seeded)."""
    from retrain.training import train

    first = train(fast_settings(stable_data, "registry.model_name=first"))
    second = train(fast_settings(stable_data, "registry.model_name=second"))
    assert first.metrics == second.metrics
    client = mlflow.MlflowClient()
    losses = [[m.value for m in client.get_metric_history(o.run_id, "val_loss")] for o in (first, second)]
    assert losses[0] == losses[1]


def test_tags_on_run_and_version(trained, windows):
    from retrain.data import fingerprint
    from retrain.tracking import git_commit
    from retrain.training import DETAIL_TAGS

    train_rows, val_rows = windows.train, windows.validation
    client = trained.client()
    run_tags = client.get_run(trained.out["run_id"]).data.tags
    version = client.get_model_version("churn-classifier", "1")
    expected = {
        "retrain.as_of": "2026-03-01",
        "retrain.validation_start": "2026-02-20",  # 10 days, the as-of day included
        "retrain.validation_end": "2026-03-01",  # inclusive
        "retrain.train_start": "2026-01-21",  # the 30 days before validation
        "retrain.train_end": "2026-02-19",  # inclusive
        "retrain.tuning_start": "2026-02-13",  # its last 7 days: early stopping and the threshold
        "retrain.fresh_from": "2026-02-20",
        "retrain.train_rows": str(len(train_rows)),
        "retrain.fit_rows": str(23 * 250),
        "retrain.tuning_rows": str(7 * 250),
        "retrain.threshold_policy": "max_f1",
        "retrain.validation_rows": str(len(val_rows)),
        "retrain.train_fingerprint": fingerprint(train_rows, ["timestamp", *FEATURES, "label"]),
        "retrain.features": ",".join(FEATURES),
        "retrain.trigger": REASON,
    }
    for key, value in expected.items():
        assert run_tags.get(key) == value, key
        if key in DETAIL_TAGS:  # no code reads it on the version: in its description, off its tag list
            assert key not in version.tags and f"- `{key.removeprefix('retrain.')}`: {value}\n" in version.description
        else:
            assert expand(version.tags).get(key) == value, key
    # The versions list shows a few tags; what else code reads is packed in `retrain.training`.
    assert set(version.tags) == {"retrain.as_of", "retrain.threshold", "retrain.idempotency_key", "retrain.training"}
    assert run_tags.get("retrain.git_commit") == git_commit()  # absent when not run from a git checkout
    assert "retrain.git_commit" not in version.tags and "retrain.best_epoch" not in version.tags
    assert f"- `best_epoch`: {run_tags['retrain.best_epoch']}" in version.description
    assert len(train_rows) == 30 * 250 and len(val_rows) == 10 * 250
    assert version.run_id == trained.out["run_id"]
    assert expand(version.tags)["retrain.trained_at"].endswith("+00:00")
    assert run_tags["retrain.model_version"] == "1"


def test_staging_alias_points_at_the_new_version(trained):
    client = trained.client()
    assert str(client.get_model_version_by_alias("churn-classifier", "staging").version) == "1"
    assert [m.name for m in client.search_registered_models()] == ["churn-classifier"]
    assert {k: str(v) for k, v in client.get_registered_model("churn-classifier").aliases.items()} == {"staging": "1"}


def test_reference_profile_describes_the_training_rows(trained, windows, tmp_path):
    from retrain.drift import build_profile

    train_rows = windows.train
    logged = json.loads(_artifact(trained, trained.out["run_id"], "reference_profile.json", tmp_path).read_text())
    expected = build_profile(
        {c: train_rows[c].to_numpy(np.float64) for c in FEATURES[:-1]},
        {"channel": train_rows["channel"].to_numpy()},
        bins=10,
    )
    assert logged["bins"] == 10
    assert set(logged["numeric"]) == set(FEATURES[:-1]) and set(logged["categorical"]) == {"channel"}
    # the relative triggers' reference: production's validation rows at training time
    validation = logged.pop("validation")
    val_rows = windows.validation
    run = trained.client().get_run(trained.out["run_id"])
    assert validation["rows"] == len(val_rows) == int(run.data.tags["retrain.validation_rows"])
    assert validation["label_rate"] == pytest.approx(val_rows["label"].astype(int).mean())
    assert validation["roc_auc"] == pytest.approx(run.data.metrics["val_roc_auc"])
    assert 0 < validation["roc_auc_se"] < 0.05
    assert abs(sum(validation["scores"]["shares"]) - 1) < 1e-9 and len(validation["scores"]["edges"]) == 9
    assert logged == json.loads(json.dumps(expected))
    assert all(len(e["shares"]) == len(e["edges"]) + 1 for e in logged["numeric"].values())


def test_golden_samples_reproduce_with_the_registered_model(trained, tmp_path, monkeypatch):
    trained.use(monkeypatch)
    golden = json.loads(_artifact(trained, trained.out["run_id"], "golden_samples.json", tmp_path).read_text())
    inputs = pd.DataFrame(**golden["inputs"])
    assert list(inputs.columns) == FEATURES and len(inputs) == 8
    scored = mlflow.pyfunc.load_model("models:/churn-classifier/1").predict(inputs)
    assert scored["prediction"].tolist() == golden["outputs"]["prediction"]
    np.testing.assert_allclose(scored["probability"], golden["outputs"]["probability"], atol=1e-7)


def test_model_artifacts_are_code_and_tensors(trained, tmp_path, monkeypatch):
    from retrain.tracking import pip_requirements

    trained.use(monkeypatch)
    root = Path(mlflow.artifacts.download_artifacts("models:/churn-classifier/1", dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # models-from-code
    assert pyfunc["model_code_path"].endswith("pyfunc_entry.py")
    assert "python_model" not in pyfunc  # no pickled PythonModel
    assert not list(root.rglob("*.pkl")) and not list(root.rglob("*.pickle"))
    assert sorted(p.name for p in (root / "code" / "retrain").iterdir() if p.is_file()) == [
        "__init__.py",
        "features.py",
        "model.py",
        "network.py",
    ]
    requirements = (root / "requirements.txt").read_text().split()
    assert requirements == pip_requirements()  # explicit, not inferred (inference adds packages and a subprocess)
    assert f"torch=={__import__('torch').__version__.split('+')[0]}" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements
    signature = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in signature] == FEATURES
    assert {c["type"] for c in signature} == {"any"}  # the model casts inside; what it accepts is documented:
    assert set(mlmodel["metadata"]["inputs"]) == set(FEATURES)
    assert mlmodel["metadata"]["inputs"]["age"].startswith("numeric: int or float")
    assert mlmodel["metadata"]["inputs"]["channel"].startswith("categorical: text or integer codes")
    assert mlmodel["metadata"]["threshold"] == trained.out["threshold"]
    assert [c["name"] for c in json.loads(mlmodel["signature"]["outputs"])] == ["prediction", "probability"]
    example = json.loads((root / "input_example.json").read_text())
    assert example["columns"] == FEATURES and len(example["data"]) == 3


def test_the_model_loads_and_scores_where_retrain_is_not_installed(trained, tmp_path, monkeypatch):
    """A fresh process that cannot import retrain (as a Spark worker or a bare serving image): the model's own
    code copy is enough. It once failed there: the copy's __init__ imported retrain's serving layer."""
    trained.use(monkeypatch)
    root = Path(mlflow.artifacts.download_artifacts("models:/churn-classifier/1", dst_path=str(tmp_path)))
    script = f"""
import json, sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]  # no `pip install -e` finder
sys.path = [p for p in sys.path if p and not __import__("os").path.isdir(p + "/retrain")]
try:
    import retrain
    raise SystemExit("retrain is importable before the model is loaded: the test proves nothing")
except ImportError:
    pass
import mlflow, pandas as pd
root = {str(root)!r}
example = json.load(open(root + "/input_example.json"))
out = mlflow.pyfunc.load_model(root).predict(pd.DataFrame(example["data"], columns=example["columns"]))
import retrain
print(json.dumps({{"probability": out["probability"].tolist(), "from": retrain.__file__}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["from"].startswith(str(root)) and len(out["probability"]) == 3
    expected = mlflow.pyfunc.load_model(str(root)).predict(
        pd.DataFrame(**{k: json.loads((root / "input_example.json").read_text())[k] for k in ("data", "columns")})
    )
    np.testing.assert_allclose(out["probability"], expected["probability"], atol=1e-7)


def test_loading_reads_weights_only(trained, monkeypatch):
    """Loading the model never unpickles: torch.load is called with weights_only=True, pickle is unused."""
    import pickle

    import cloudpickle
    import torch

    trained.use(monkeypatch)
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("model loading unpickled an object")

    monkeypatch.setattr(torch, "load", recording_load)
    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", forbidden)
        monkeypatch.setattr(module, "loads", forbidden)
    model = mlflow.pyfunc.load_model("models:/churn-classifier@staging")
    assert calls == [True]
    assert model.metadata.get_input_schema().input_names() == FEATURES


def test_pyfunc_scores_raw_feature_rows(trained, monkeypatch):
    trained.use(monkeypatch)
    fresh = synth.generate(synth.SynthSpec(days=1, rows_per_day=50, seed=99))
    model = mlflow.pyfunc.load_model("models:/churn-classifier@staging")
    scored = model.predict(fresh[FEATURES])  # integer columns as they come from the files
    assert list(scored.columns) == ["prediction", "probability"] and len(scored) == 50
    assert set(scored["prediction"]) <= {0, 1}
    assert ((scored["probability"] > 0) & (scored["probability"] < 1)).all()
    threshold = trained.out["threshold"]
    assert (scored["prediction"] == (scored["probability"] >= threshold)).all() and threshold != 0.5
    unseen = fresh[FEATURES].head(3).assign(channel="carrier-pigeon")  # unseen category still scores
    assert len(model.predict(unseen)) == 3
    # numerics as int or float alike (MLflow's declared types refuse int64 -> double and float64 -> long)
    as_float = model.predict(fresh[FEATURES].astype({c: float for c in FEATURES[:-1]}))
    pd.testing.assert_frame_equal(as_float, scored)
    as_text = model.predict(fresh[FEATURES].astype(str))
    pd.testing.assert_frame_equal(as_text, scored)


def test_threshold_and_early_stopping_use_the_tuning_rows_only(trained, windows, tmp_path, monkeypatch):
    """The threshold is the policy's choice on the tuning rows (the tail of the training window), stored as a tag
    and inside the model; early stopping kept the epoch with the lowest loss on those same rows."""
    import torch

    from retrain import model as network
    from retrain.metrics import choose_threshold
    from retrain.train import evaluate_loss

    trained.use(monkeypatch)
    version = trained.client().get_model_version("churn-classifier", "1")
    threshold = float(version.tags["retrain.threshold"])
    root = Path(mlflow.artifacts.download_artifacts("models:/churn-classifier/1", dst_path=str(tmp_path)))
    net, spec = network.load(root / "artifacts" / "spec.json", root / "artifacts" / "weights.pt")
    assert spec.threshold == threshold == trained.out["threshold"]
    tuning = windows.tuning
    assert len(tuning) == 7 * 250 and tuning["timestamp"].min() >= pd.Timestamp("2026-02-13")
    assert len(windows.fit) == 23 * 250 and windows.fit["timestamp"].max() < pd.Timestamp("2026-02-13")
    y = tuning["label"].to_numpy(np.int64)
    probability = mlflow.pyfunc.load_model("models:/churn-classifier/1").predict(tuning[FEATURES])["probability"]
    assert choose_threshold(y, probability.to_numpy(), "max_f1").threshold == pytest.approx(threshold, abs=1e-12)
    num, codes = network.encode(tuning, spec)
    history = [m.value for m in trained.client().get_metric_history(trained.out["run_id"], "val_loss")]
    loss = evaluate_loss(net, torch.from_numpy(num), torch.from_numpy(codes), torch.from_numpy(y))
    assert loss == pytest.approx(min(history), rel=1e-4)
    run = trained.client().get_run(trained.out["run_id"])
    assert int(run.data.tags["retrain.best_epoch"]) >= 2  # model.min_epochs = 3
    assert run.data.metrics["threshold"] == threshold
    assert run.data.metrics["tuning_f1"] > 0 and run.data.metrics["val_f1"] == pytest.approx(
        trained.out["metrics"]["f1"]
    )


def test_same_data_settings_and_as_of_reuse_the_version(trained, monkeypatch):
    trained.use(monkeypatch)
    monkeypatch.chdir(trained.folder)
    result = CliRunner().invoke(cli, [*_train_args(trained.data, "--reason", REASON), "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["reused"] is True and again["threshold"] == trained.out["threshold"]
    assert (again["version"], again["run_id"]) == (trained.out["version"], trained.out["run_id"])
    assert again["metrics"] == pytest.approx(trained.out["metrics"])
    assert len(trained.client().search_model_versions("name='churn-classifier'")) == 1


# --- per-test stores ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_another_as_of_trains_a_new_version(stable_data, tracking):
    runner = CliRunner()
    first = json.loads(runner.invoke(cli, [*_train_args(stable_data, "--as-of", "2026-02-27"), "--json"]).stdout)
    second = json.loads(runner.invoke(cli, [*_train_args(stable_data), "--json"]).stdout)
    assert (first["version"], second["version"]) == ("1", "2")
    assert not first["reused"] and not second["reused"]
    assert first["as_of"] == "2026-02-27"
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("churn-classifier", "staging").version) == "2"
    assert expand(client.get_model_version("churn-classifier", "1").tags)["retrain.validation_end"] == "2026-02-27"


def _base_frame() -> pd.DataFrame:
    """45 days x 60 rows, enough for the fast windows (30 + 10 days)."""
    return synth.generate(synth.SynthSpec(days=45, rows_per_day=60, seed=5))


def _late(frame: pd.DataFrame, k: int) -> pd.Index:
    """Indices of k rows on the last day (inside the validation window)."""
    return frame.index[-k:]


def _csv(frame: pd.DataFrame, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "data.csv", index=False)
    return folder


def _bad_data(kind: str, tmp: Path) -> tuple[Path, list[str]]:
    """A data folder with one kind of problem, and the phrases its error line must contain."""
    frame = _base_frame()
    if kind == "missing_path":
        return tmp / "nowhere", [f"data path {tmp / 'nowhere'} does not exist"]
    if kind == "no_files":
        (tmp / "empty" / "date=2026-01-01").mkdir(parents=True)
        return tmp / "empty", ["no data files (.parquet, .csv) found under"]
    if kind == "missing_column":
        return _csv(frame.drop(columns=["tenure_days"]), tmp / "d"), [
            "column 'tenure_days' is configured but missing",
            "columns there: customer_id, timestamp, age, income",
        ]
    if kind == "non_numeric":
        frame = frame.astype({"income": object})
        frame.loc[_late(frame, 4), "income"] = "52k"
        return _csv(frame, tmp / "d"), ["numeric feature 'income' has 4 non-numeric values (e.g. '52k')"]
    if kind == "nan":
        frame = frame.astype({"age": float})
        frame.loc[_late(frame, 3), "age"] = np.nan
        return _csv(frame, tmp / "d"), ["feature 'age' has 3 missing (NaN) values"]
    if kind == "infinite":
        frame = frame.astype({"avg_transaction_value": float})
        frame.loc[_late(frame, 2), "avg_transaction_value"] = np.inf
        return _csv(frame, tmp / "d"), ["feature 'avg_transaction_value' has 2 infinite values"]
    if kind == "bad_labels":
        frame = frame.astype({"label": object})
        frame.loc[_late(frame, 5), "label"] = 2
        return _csv(frame, tmp / "d"), ["label column 'label' has 5 values outside {0, 1}", "(e.g. 2"]
    if kind == "single_class":
        frame["label"] = 0
        return _csv(frame, tmp / "d"), ["training window 2026-01-06..2026-02-04 has only class 0"]
    if kind == "unreadable":
        folder = tmp / "d"
        synth.write(synth.SynthSpec(days=45, rows_per_day=60, seed=5), folder)
        bad = folder / "date=2026-01-10" / "part-0.parquet"
        bad.write_bytes(bad.read_bytes()[:100])  # truncated
        return folder, [f"cannot read data file {bad}"]
    raise AssertionError(kind)


BAD_KINDS = [
    "missing_path",
    "no_files",
    "missing_column",
    "non_numeric",
    "nan",
    "infinite",
    "bad_labels",
    "single_class",
    "unreadable",
]


def _assert_nothing_recorded() -> None:
    client = mlflow.MlflowClient()
    assert client.search_registered_models() == []
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_data_is_refused_with_one_line(kind, tmp_path):
    path, needles = _bad_data(kind, tmp_path)
    result = CliRunner().invoke(cli, [*_train_args(path), "--json"])
    assert result.exit_code == 3, result.output
    line = _error_line(result)
    for needle in needles:
        assert needle in line
    assert result.stdout.strip() == ""  # --json: nothing on stdout when there is no result
    _assert_nothing_recorded()


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (
            ["--as-of", "2025-06-01"],
            3,
            ["training window 2025-04-23..2025-05-22 has 0 labelled rows", "the data covers 2026-01-01..2026-02-14"],
        ),
        (
            ["--as-of", "2026-06-01"],
            3,
            ["training window 2026-04-23..2026-05-22 has 0 labelled rows", "the data covers 2026-01-01..2026-02-14"],
        ),
        (["--as-of", "someday"], 3, ["--as-of 'someday' is not a date; use YYYY-MM-DD"]),
        (["--set", "model.epochz=3"], 2, ["unknown setting model.epochz", "epochs, batch_size"]),
        (["--set", "model.batch_size=big"], 2, ["setting model.batch_size: expected a whole number, got 'big'"]),
        (["--overrides", "registry.staging_alias=production"], 2, ["staging_alias and production_alias must differ"]),
        (["--config", "missing.yaml"], 2, ["settings file missing.yaml does not exist"]),
    ],
)
def test_bad_window_or_settings_is_refused(args, code, needles, tmp_path):
    path = _csv(_base_frame(), tmp_path / "d")
    result = CliRunner().invoke(cli, [*_train_args(path), *args])
    assert result.exit_code == code, result.output
    line = _error_line(result)
    for needle in needles:
        assert needle in line
    _assert_nothing_recorded()


def test_unlabelled_rows_never_train(tmp_path):
    """Unlabelled rows are dropped; with too few labelled ones left, the window is refused as empty."""
    frame = _base_frame()
    frame["label"] = frame["label"].astype(float)
    frame.loc[frame["timestamp"] >= pd.Timestamp("2026-02-05"), "label"] = np.nan  # the whole validation window
    result = CliRunner().invoke(cli, _train_args(_csv(frame, tmp_path / "d")))
    assert result.exit_code == 3
    assert "validation window 2026-02-05..2026-02-14 has 0 labelled rows" in _error_line(result)
    _assert_nothing_recorded()


# --- real processes -------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")
    }
    return {**env, **extra}


@pytest.mark.slow
def test_default_tracking_store_is_mlflow_db_in_the_working_folder(stable_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "retrain", *_train_args(stable_data), "--json"],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # --json: one object, no log lines on stdout
    out = json.loads(lines[0])
    assert (work / "mlflow.db").exists()
    client = mlflow.MlflowClient(
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}", registry_uri=f"sqlite:///{work / 'mlflow.db'}"
    )
    assert client.get_model_version_by_alias("churn-classifier", "staging").run_id == out["run_id"]
    # the per-test store of the autouse fixture was not touched
    assert mlflow.MlflowClient().search_registered_models() == []


@pytest.mark.slow
def test_mlflow_run_train_entry_point(stable_data, tracking, tmp_path):
    overrides = " ".join(["model.epochs=3", *FAST[1:]])
    proc = subprocess.run(
        [
            "mlflow",
            "run",
            str(REPO),
            "-e",
            "train",
            "--env-manager",
            "local",
            "--experiment-name",
            "retrain-training",
            "-P",
            f"data={stable_data}",
            "-P",
            f"set={overrides}",
            "-P",
            "reason=scheduled",
            "-P",
            f"config={REPO / 'mlproject' / 'config.yaml'}",
        ],
        cwd=tmp_path,
        env=_env(MLFLOW_TRACKING_URI=tracking),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("churn-classifier", "staging")
    run = client.get_run(version.run_id)
    assert run.data.tags["mlflow.project.entryPoint"] == "train"  # the run `mlflow run` created, continued
    assert run.data.params["model.epochs"] == "3"
    assert run.data.params["windows.train_days"] == "30"
    assert run.data.params["data.path"] == str(stable_data)
    assert run.data.tags["retrain.trigger"] == "scheduled"
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) <= 3
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == 1


# --- training that learned nothing, missing values ------------------------------------------------------------


def test_training_that_learned_nothing_is_a_failed_training(tmp_path):
    """Labels shuffled: nothing to learn. Exit 8 with the reason, a FAILED training run, nothing registered."""
    frame = _base_frame()
    frame["label"] = np.random.default_rng(0).permutation(frame["label"].to_numpy())
    result = CliRunner().invoke(cli, [*_train_args(_csv(frame, tmp_path / "d")), "--json"])
    assert result.exit_code == 8, result.output
    line = _error_line(result)
    assert line.startswith("Error: training learned nothing: tuning ") and "no version registered" in line
    assert result.stdout.strip() == ""
    client = mlflow.MlflowClient()
    assert client.search_registered_models() == []
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED" and run.info.run_name.endswith(": learned nothing")
    assert run.data.tags["retrain.outcome"] == "failed" and run.data.tags["retrain.failure"] in line
    assert client.get_metric_history(run.info.run_id, "val_loss")  # the loss curves say why


def test_windows_with_fewer_rows_than_gate_min_rows_are_noted_naming_the_key(tmp_path):
    """60 rows a day: 7 tuning days hold 420 rows, 10 validation days 600; with gate.min_rows=500 the tuning
    window is too small (noted, named, tagged on the run), the validation window is not."""
    data = _csv(_base_frame(), tmp_path / "d")
    result = CliRunner().invoke(cli, [*_train_args(data, "--set", "gate.min_rows=500"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    [note] = out["notes"]
    assert "holds 420 labelled rows, fewer than gate.min_rows=500" in note and "windows.tuning_days" in note
    run = mlflow.MlflowClient().get_run(out["run_id"])
    assert run.data.tags["retrain.rows_note"] == note
    text = CliRunner().invoke(cli, _train_args(data, "--set", "gate.min_rows=700"))  # same model: reused
    assert text.exit_code == 0, text.output
    notes = [line for line in text.output.splitlines() if "gate.min_rows=700" in line]
    assert len(notes) == 2 and "windows.validation_days" in notes[1], text.output


IMPUTE = "model.missing={income: impute, channel: impute}"


def test_missing_values_are_imputed_the_same_in_training_and_serving(tmp_path, monkeypatch):
    from retrain.training import prepare, train

    settings = fast_settings(write_with_gaps(tmp_path / "d", seed=8), IMPUTE)
    outcome = train(settings)
    rows = prepare(settings, None)
    version = mlflow.MlflowClient().get_model_version("churn-classifier", outcome.version)
    # the reference profile keeps the training missing share (drift checks see a change in it)
    profile = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=outcome.run_id, artifact_path="reference_profile.json")
        ).read_text()
    )
    assert profile["numeric"]["income"]["nan_share"] == pytest.approx(rows.train["income"].isna().mean())
    assert profile["categorical"]["channel"]["shares"]["__missing__"] == pytest.approx(
        (rows.train["channel"] == "__missing__").mean()
    )
    # golden samples hold one row per imputed feature with it missing, scored by the training code
    golden = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(run_id=outcome.run_id, artifact_path="golden_samples.json")
        ).read_text()
    )
    inputs = pd.DataFrame(golden["inputs"]["data"], columns=golden["inputs"]["columns"])
    assert len(inputs) == 8 + 2 and inputs["income"].isna().iloc[8] and inputs["channel"].isna().iloc[9]
    served = mlflow.pyfunc.load_model(f"models:/churn-classifier/{outcome.version}")
    scored = served.predict(inputs)
    np.testing.assert_allclose(scored["probability"], golden["outputs"]["probability"], rtol=0, atol=1e-7)
    assert scored["prediction"].tolist() == golden["outputs"]["prediction"]
    # a missing income is not a made-up number: the missing indicator moves the score
    row = inputs.iloc[[0]]
    median = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                f"models:/churn-classifier/{outcome.version}", dst_path=str(tmp_path / "m")
            )
        )
        .joinpath("artifacts", "spec.json")
        .read_text()
    )["impute"]["income"]
    gap, at_median = served.predict(row.assign(income=None)), served.predict(row.assign(income=median))
    assert gap["probability"].iloc[0] != at_median["probability"].iloc[0]
    assert np.isfinite(served.predict(rows.validation[FEATURES])["probability"]).all()
    assert expand(version.tags)["retrain.threshold_policy"] == "max_f1"


def test_null_category_with_missing_error_is_refused_naming_the_fix(tmp_path):
    data = write_with_gaps(tmp_path / "d", seed=8)
    result = CliRunner().invoke(cli, _train_args(data, "--set", "model.missing={income: impute}"))
    assert result.exit_code == 3, result.output
    line = _error_line(result)
    assert (
        "feature 'channel' has" in line and "missing (null) values" in line and "model.missing.channel=impute" in line
    )
    _assert_nothing_recorded()
