"""The registered model serves over REST: `mlflow models serve -m models:/NAME@staging --env-manager local`.

One model per module, trained on data as sources deliver it (an integer-coded categorical `region`, gaps in
`income` and `channel`, both imputed; `age` refuses gaps), then one server for every test. The same rows must
score the same in the training code, through pyfunc and over HTTP, whatever types the client sends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from retrain import synth
from tests.conftest import fast_settings, use_store, write_with_gaps

FEATURES = [
    "age",
    "income",
    "tenure_days",
    "num_purchases",
    "avg_transaction_value",
    "days_since_last_purchase",
    "channel",
    "region",
]
SETTINGS = ("data.categorical=[channel, region]", "model.missing={income: impute, channel: impute, region: impute}")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@dataclass
class Served:
    url: str
    model_uri: str
    data: Path
    folder: Path
    tracking: str


@pytest.fixture(scope="module")
def served(tmp_path_factory, _template_db):
    from retrain.training import train

    folder = tmp_path_factory.mktemp("serve")
    data = write_with_gaps(folder / "data", seed=6, region=True)
    with pytest.MonkeyPatch.context() as mp:
        tracking = use_store(mp, _template_db, folder)
        outcome = train(fast_settings(data, *SETTINGS))
    port = _free_port()
    log_path = folder / "serve.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{outcome.model_name}@staging",
            "--env-manager",
            "local",
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
        ],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server forks workers: stop the whole group
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            try:
                if _get(f"http://127.0.0.1:{port}/ping") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert time.monotonic() < deadline, "server not ready in 120 s: " + log_path.read_text()[-3000:]
            time.sleep(0.5)
        yield Served(
            f"http://127.0.0.1:{port}/invocations",
            f"models:/{outcome.model_name}/{outcome.version}",
            data,
            folder,
            tracking,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def model(served, monkeypatch):
    from tests.conftest import point_mlflow

    point_mlflow(monkeypatch, served.tracking)
    return mlflow.pyfunc.load_model(served.model_uri)


def _split(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def _client_rows() -> pd.DataFrame:
    """Fresh rows as a client sends them: integers stay integers, region is an integer code."""
    rows = synth.generate(synth.SynthSpec(days=1, rows_per_day=20, seed=123))
    rows["region"] = np.arange(20) % 4 + 1
    return rows[FEATURES]


def test_staging_model_serves_predictions(served, model):
    rows = _client_rows()
    expected = model.predict(rows)
    predictions = _post(served.url, _split(rows))["predictions"]
    assert len(predictions) == 20
    assert [p["prediction"] for p in predictions] == expected["prediction"].tolist()
    assert [p["probability"] for p in predictions] == pytest.approx(expected["probability"].tolist(), abs=1e-6)
    assert all(p["prediction"] in (0, 1) and 0 < p["probability"] < 1 for p in predictions)
    # a request missing a feature is refused, not scored
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(served.url, _split(rows.drop(columns=["income"])))
    assert info.value.code in (400, 422)


def test_types_as_sources_deliver_them_score_alike(served, model):
    """Numerics as int, float or text; the integer-coded category as int, integral float or text: one answer."""
    rows = _client_rows()
    expected = model.predict(rows)
    variants = {
        "floats": rows.astype({c: float for c in FEATURES if c != "channel"}),
        "text": rows.astype(str),
        "region 3.0": rows.assign(region=rows["region"].astype(float)),
    }
    for name, variant in variants.items():
        pd.testing.assert_frame_equal(model.predict(variant), expected, obj=name)
        answer = _post(served.url, _split(variant))["predictions"]
        assert [p["probability"] for p in answer] == pytest.approx(expected["probability"].tolist(), abs=1e-6), name
    mixed = {
        "dataframe_records": [
            {**r, "age": float(r["age"]), "region": str(r["region"])}
            for r in json.loads(rows.to_json(orient="records"))
        ]
    }
    answer = _post(served.url, mixed)["predictions"]
    assert [p["probability"] for p in answer] == pytest.approx(expected["probability"].tolist(), abs=1e-6)


def test_missing_values_score_the_same_in_training_code_pyfunc_and_rest(served, model, tmp_path):
    """The training code scores validated rows (NaN numerics, "__missing__" categories); clients send nulls."""
    from retrain import data
    from retrain import model as network
    from retrain.config import load_settings

    settings = load_settings(None, [*SETTINGS, f"data.path={served.data}"])
    frame = data.load(settings.data)
    gaps = frame[frame["income"].isna() | frame["channel"].isna()].head(12)
    assert gaps["income"].isna().any() and gaps["channel"].isna().any()
    validated = data.validate(gaps, settings.data, where="gaps", allow_missing={"income"})
    root = Path(mlflow.artifacts.download_artifacts(served.model_uri, dst_path=str(tmp_path)))
    net, spec = network.load(root / "artifacts" / "spec.json", root / "artifacts" / "weights.pt")
    training_code = network.score_frame(net, spec, validated[FEATURES])
    client = gaps[FEATURES].astype(object).where(gaps[FEATURES].notna(), None)
    pyfunc = model.predict(client)
    rest = _post(served.url, _split(client))["predictions"]
    np.testing.assert_allclose(pyfunc["probability"], training_code["probability"], rtol=0, atol=1e-7)
    np.testing.assert_allclose([p["probability"] for p in rest], training_code["probability"], rtol=0, atol=1e-6)
    assert [p["prediction"] for p in rest] == training_code["prediction"].tolist() == pyfunc["prediction"].tolist()
    # a category never seen in training also scores (unknown bucket), and nothing is NaN
    unseen = _post(served.url, _split(client.head(2).assign(region=[99, None])))["predictions"]
    assert all(0 < p["probability"] < 1 for p in unseen)


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("age", None, "feature 'age' is missing (null) in 1 row(s)"),
        ("income", "52k", "feature 'income' must be numeric"),
    ],
)
def test_a_value_the_model_cannot_score_is_a_400_naming_the_column(served, column, value, needle):
    row = _client_rows().head(1).astype(object)
    row[column] = value
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(served.url, _split(row))
    assert info.value.code == 400
    body = json.loads(info.value.read())
    assert needle in body["message"] and body["error_code"] == "INVALID_PARAMETER_VALUE"
