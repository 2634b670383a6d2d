"""`retrain serve`'s fast path answers as `mlflow.pyfunc.load_model(uri).predict` does on the same records, for a
real model trained under every threshold policy: random and edge-case records (unseen categories, nulls where
imputed, integer codes and numeric text for categories, integers for numbers, extremes), in process and over HTTP.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import fast_settings, use_store
from tests.integration.serving_support import FEATURES, NAME, Service, traffic

pytestmark = pytest.mark.slow

POLICIES = {
    "max_f1": [],
    "target_recall": ["threshold.target=0.8"],
    "target_precision": ["threshold.target=0.6"],
    "min_cost": ["cost.false_negative=5"],
    "fixed": ["threshold.value=0.35"],
}
IMPUTED = "model.missing={age: impute, income: impute, channel: impute}"  # days_since_last_purchase: error


@pytest.fixture(scope="module")
def policy_models(tmp_path_factory, _template_db, stable_data) -> tuple[object, dict[str, str]]:
    """One real model per threshold policy in one store: (its database, policy -> version)."""
    from retrain.training import train

    folder = tmp_path_factory.mktemp("fastpath")
    versions = {}
    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, _template_db, folder)
        mlflow.set_experiment("fastpath-test-models")
        for policy, extra in POLICIES.items():
            versions[policy] = train(fast_settings(stable_data, f"threshold.policy={policy}", IMPUTED, *extra)).version
    return folder / "mlflow.db", versions


def records(n: int, seed: int) -> list[dict]:
    """n records as clients send them (integers stay integers), then every edge case on a copy of the first."""
    rows = json.loads(traffic(n, seed=seed)[FEATURES + ["customer_id"]].to_json(orient="records"))
    base = rows[0]
    edges = [
        {"channel": "carrier-pigeon"},  # unseen category -> unknown bucket
        {"channel": ""},
        {"channel": 3},  # integer code, unseen
        {"channel": "3.0"},  # numeric text, the same category as 3
        {"channel": 3.0},
        {"channel": None},  # imputed: the __missing__ category
        {"channel": "__missing__"},
        {"income": None},  # imputed: the training median
        {"age": None, "income": None, "channel": None},
        {"age": 0, "income": 0},
        {"income": -1.0},
        {"income": 1e30},  # extremes the network still takes
        {"income": -1e30},
        {"income": 3e38},
        {"tenure_days": 10**15},
        {"num_purchases": 2**62},
        {"avg_transaction_value": 1e-300},
        {"days_since_last_purchase": 0.5},
        {"customer_id": None},
    ]
    return rows + [{**base, **edge} for edge in edges]


@pytest.mark.parametrize("policy", list(POLICIES))
def test_fast_path_answers_exactly_as_the_pyfunc_model(policy_models, policy, monkeypatch, tmp_path, stable_data):
    from retrain.serving.live import Live
    from retrain.serving.payload import parse

    db, versions = policy_models
    use_store(monkeypatch, db, tmp_path)
    settings = fast_settings(stable_data)
    loaded = Live(settings)._load(versions[policy])  # as the service loads a version
    assert loaded.fast is not None and loaded.fast.spec.threshold == pytest.approx(
        float(mlflow.MlflowClient().get_model_version(NAME, versions[policy]).tags["retrain.threshold"])
    )
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/{versions[policy]}")
    for seed in (3, 4):
        sent = records(200, seed)
        parsed = parse({"dataframe_records": sent}, loaded.columns, settings.data.id)
        prediction, probability = loaded.fast.predict(parsed)
        expected = pyfunc.predict(pd.DataFrame(sent)[FEATURES])
        assert np.abs(probability - expected["probability"].to_numpy()).max() <= 1e-9
        assert prediction.tolist() == expected["prediction"].tolist()
        assert prediction.tolist() == (probability >= loaded.fast.spec.threshold).tolist()  # the policy's threshold


def test_the_service_answers_edge_cases_as_the_pyfunc_model_over_http(policy_models, monkeypatch, tmp_path):
    from retrain.registry import Registry

    db, versions = policy_models
    uri = use_store(monkeypatch, db, tmp_path)
    Registry(fast_settings(tmp_path)).promote(versions["min_cost"], force=True, reason="fast path test")
    sent = records(50, seed=5)
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}/{versions['min_cost']}").predict(pd.DataFrame(sent)[FEATURES])
    with Service(tmp_path, uri) as service:
        for body in (
            {"dataframe_records": sent},
            {"dataframe_split": {"columns": list(sent[0]), "data": [list(r.values()) for r in sent]}},
        ):
            response = service.post("/predict", body)
            assert response.status_code == 200, response.text
            answer = response.json()["predictions"]
            assert [p["prediction"] for p in answer] == expected["prediction"].tolist()
            assert np.abs(np.array([p["probability"] for p in answer]) - expected["probability"]).max() <= 1e-9
        refused = service.post(
            "/predict", {"dataframe_records": [sent[1], {**sent[2], "days_since_last_purchase": None}]}
        )
        assert refused.status_code == 422
        assert refused.json()["error"] == "record 1: feature 'days_since_last_purchase' is null; send a number"
