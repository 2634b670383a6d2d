"""`retrain serve` end to end: the real service (uvicorn on loopback) on a SQLite registry with real versions.

Predictions in every body shape MLflow accepts, variants and versions per record, request ids, feedback,
health and status; bad input refused with one clear line while the service keeps serving; the prediction
log drained on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import threading

import mlflow
import numpy as np
import pytest
import requests

from tests.integration.serving_support import (
    FEATURES,
    NAME,
    Service,
    log_rows,
    split_body,
    traffic,
)

pytestmark = pytest.mark.slow


def test_predict_answers_like_the_registered_model_in_every_body_shape(store, tmp_path):
    served, uri = store
    rows = traffic(40)
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}/{served.versions['good']}").predict(rows[FEATURES])
    records = json.loads(rows[FEATURES + ["customer_id"]].to_json(orient="records"))
    columns = {c: [r[c] for r in records] for c in FEATURES}
    bodies = {
        "dataframe_split": split_body(rows),
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs (records)": {"inputs": records},
        "inputs (columns)": {"inputs": columns},
    }
    with Service(tmp_path, uri) as service:
        assert service.get("/health").json() == {
            "status": "ok",
            "production": served.versions["good"],
            "mode": "single",
        }
        ids = set()
        for shape, body in bodies.items():
            response = service.post("/predict", body)
            assert response.status_code == 200, (shape, response.text)
            answer = response.json()
            assert answer["request_id"] == response.headers["X-Request-Id"]
            ids.add(answer["request_id"])
            predictions = answer["predictions"]
            assert [p["prediction"] for p in predictions] == expected["prediction"].tolist(), shape
            assert [p["probability"] for p in predictions] == pytest.approx(expected["probability"].tolist(), abs=1e-9)
            assert {(p["variant"], p["version"]) for p in predictions} == {("production", served.versions["good"])}
        assert len(ids) == len(bodies)
        status = service.status()
        assert status["production"]["version"] == served.versions["good"] and status["mode"] == "single"
        assert status["counts"]["requests"] == len(bodies)
        assert status["counts"]["records_production"] == len(bodies) * len(rows)
        # late labels by request id + record and by entity id
        first = service.post("/predict", split_body(rows.head(3))).json()
        ok = service.post(
            "/feedback",
            {
                "feedback": [
                    {"request_id": first["request_id"], "record": 2, "label": 1},
                    {"entity_id": rows["customer_id"].iloc[0], "label": 0},
                ]
            },
        )
        assert ok.status_code == 200 and ok.json() == {"accepted": 2}
    logged = log_rows(service.log_url)
    assert len(logged) == (len(bodies) * len(rows) + 3)
    mine = logged[logged["request_id"] == first["request_id"]].set_index("record")
    assert mine.loc[2, "label"] == 1 and mine.loc[0, "label"] == 0 and np.isnan(mine.loc[1, "label"])
    assert mine.loc[0, "features"] == records[0]  # the record as the client sent it, id included
    assert set(mine["entity_id"]) == set(rows["customer_id"].head(3))
    assert mine["latency_ms"].gt(0).all() and mine["served"].all()


def test_bad_input_gets_one_clear_4xx_and_the_service_keeps_serving(store, tmp_path):
    served, uri = store
    rows = traffic(3)
    good = split_body(rows)
    missing = split_body(rows)
    missing["dataframe_split"]["columns"].remove("income")
    for row in missing["dataframe_split"]["data"]:
        del row[1]
    wrong_type = json.loads(json.dumps(good))
    wrong_type["dataframe_split"]["data"][1][0] = "forty"
    fractional = json.loads(json.dumps(good))
    fractional["dataframe_split"]["data"][2][FEATURES.index("channel")] = 1.5  # a category code must be whole
    cases = [
        (missing, 422, "missing feature 'income'"),
        (wrong_type, 422, "record 1: feature 'age' must be a number, got 'forty'"),
        (fractional, 422, "record 2: feature 'channel' must be text or a whole-number code, got 1.5"),
        ({"dataframe_split": {"columns": FEATURES, "data": []}}, 400, "no records"),
        ({"rows": []}, 400, "exactly one of the keys"),
        ({}, 400, "empty request body"),
        ([1, 2], 400, "the body is a JSON list, not an object of records"),
        (7, 400, "the body is a JSON number, not an object of records"),
        (
            {"instances": [{**one(rows, 0)}] * 6},
            413,
            "6 records, over the limit of 5 per request (serving.max_records)",
        ),
        (
            {"instances": [one(rows, 0), {**one(rows, 1), "income": 1e308}]},
            422,
            "record 1: feature 'income' is out of range, got 1e+308",
        ),
    ]
    with Service(tmp_path, uri, "serving.max_body_bytes=20000", "serving.max_records=5") as service:
        for body, code, message in cases:
            response = service.post("/predict", body)
            assert response.status_code == code, (body, response.text)
            assert message in response.json()["error"]
            assert "\n" not in response.json()["error"]
        for data, code, message in [
            (b"", 400, "empty request body"),
            (b"{not json", 400, "not valid JSON"),
            (b"x" * 30_000, 413, "over the limit of 20,000"),
            (b"null", 400, "the body is JSON null, not an object of records"),
            (b'{"dataframe_records": ' + b"[" * 9000 + b"]" * 9000 + b"}", 400, "the body nests too deeply"),
            (
                json.dumps({"instances": [{**one(rows, 0), "age": 10**400}]}).encode(),
                422,
                "record 0: feature 'age' is out of range",
            ),
        ]:
            response = service.post("/predict", data=data, headers={"Content-Type": "application/json"})
            assert response.status_code == code and message in response.json()["error"], response.text
        # a body over the limit without a Content-Length header (chunked) is cut off as well
        chunked = service.session.post(
            service.url + "/predict",
            data=iter([b"{" + b" " * 15_000, b" " * 15_000 + b"}"]),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert chunked.status_code == 413
        for body, code, message in [
            ({"request_id": "no-such-request", "label": 1}, 404, "unknown request_id 'no-such-request'"),
            ({"entity_id": "nobody", "label": 1}, 404, "unknown entity_id 'nobody'"),
            ({"request_id": "x", "label": 2}, 422, "label must be 0 or 1, got 2"),
            ({"label": 1}, 422, "give request_id"),
        ]:
            response = service.post("/feedback", body)
            assert response.status_code == code and message in response.json()["error"], response.text
        answer = service.post("/predict", good)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 3
        too_far = service.post("/feedback", {"request_id": answer.json()["request_id"], "record": 3, "label": 1})
        assert too_far.status_code == 422 and "has 3 records; record 3 does not exist" in too_far.json()["error"]
        counts = service.status()["counts"]
        assert counts["requests"] == 1 and counts["rejected_422"] >= 6 and counts["rejected_413"] == 3
        assert "errors_production" not in counts  # client input is never counted as a model failure


def one(rows, i: int) -> dict:
    """Record i of `rows` as a client sends it (integers stay integers)."""
    return json.loads(rows[FEATURES].iloc[[i]].to_json(orient="records"))[0]


def test_sigterm_writes_every_logged_row_before_exit(store, tmp_path):
    served, uri = store
    rows = traffic(50)
    body = split_body(rows)
    answered = []
    lock = threading.Lock()
    # batch writes every 30 s at most: only the shutdown drain can put the rows in the database
    service = Service(tmp_path, uri, "serving.log_flush_s=30", "serving.log_batch_rows=100000").start()
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(service.url + "/predict", json=body, timeout=30)
            except requests.RequestException:
                return  # the service is shutting down
            if response.status_code == 200:
                with lock:
                    answered.append(response.json()["request_id"])
            else:
                return

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    service.wait_for(lambda s: s["counts"].get("requests", 0) >= 30, "30 requests answered")
    assert service.status()["log"]["rows_out"] == 0  # nothing written yet: it is all queued
    code = service.stop(signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join()
    assert code in (0, -signal.SIGTERM), service.log_tail()  # uvicorn re-raises the signal after a graceful stop
    logged = log_rows(service.log_url)
    assert set(logged["request_id"]) >= set(answered)
    assert len(logged) == logged["request_id"].nunique() * len(rows)
    assert "prediction rows written, 0 lost" in service.log_tail()


def test_serve_refuses_to_start_without_a_production_version(tracking, tmp_path):
    from click.testing import CliRunner

    from retrain.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--port", "1"])
    assert result.exit_code == 4
    assert "cannot read registered model churn-classifier" in result.output
    mlflow.MlflowClient().create_registered_model(NAME)
    result = CliRunner().invoke(cli, ["serve", "--port", "1"])
    assert result.exit_code == 4
    assert (
        "churn-classifier has no @production alias; promote a version (`retrain promote`) before serving"
        in result.output
    )


def test_mlflow_run_serve_entry_point(store, tmp_path):
    import sys

    from tests.conftest import REPO

    served, uri = store
    probe = Service(tmp_path, uri)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "serve",
        "--env-manager",
        "local",
        "--experiment-name",
        "retrain-serving",
        "-P",
        f"port={probe.port}",
        "-P",
        "set=" + " ".join(probe.settings),
    ]
    with Service(tmp_path, uri, command=command, port=probe.port) as service:
        answer = service.post("/predict", split_body(traffic(4)))
        assert answer.status_code == 200
        assert {p["version"] for p in answer.json()["predictions"]} == {served.versions["good"]}
