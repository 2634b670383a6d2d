"""Live traffic on the services a team runs: registry on the CI `mlflow server` (PostgreSQL, artifacts on S3),
rollout state through its REST API, the prediction log in a PostgreSQL database.

Marked `server`: runs against what .ci/run starts (tests/services.py) and skips without it.
"""

from __future__ import annotations

import signal
import uuid

import pytest

from retrain import data
from retrain.config import load_settings
from retrain.registry import Registry
from retrain.training import train
from tests import services
from tests.conftest import _needs_env, fast_settings, unique_names
from tests.integration.serving_support import Service, cli_json, log_rows, send_labelled, traffic

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_ab_rollout_log_on_postgres_report_and_check_through_the_tracking_server(
    ci_server, ci_s3, stable_data, tmp_path
):
    admin = _needs_env("RETRAIN_TEST_POSTGRES_URI")
    log_url = services.create_database(admin, f"predictions_{uuid.uuid4().hex[:8]}")
    names = unique_names("serve")
    model = names[0].split("=", 1)[1]
    good = train(fast_settings(stable_data, *names)).version
    good2 = train(fast_settings(stable_data, *names, "model.seed=7")).version
    Registry(fast_settings(stable_data, *names)).promote(good, force=True, reason="CI: first production")
    service = Service(tmp_path, ci_server, *names, f"serving.log_url={log_url}", poll_s=0.5)
    started = cli_json(service, "rollout", "start", "--mode", "ab", "--share", "50", "--candidate", good2)
    assert started["rollout"]["seq"] == 1
    with service:
        service.wait_for(lambda s: s["mode"] == "ab", "A/B route")
        answers = send_labelled(service, traffic(300, seed=61))
        assert set(answers["version"]) == {good, good2}
        assert service.status()["log"]["url"].startswith("postgresql+psycopg://retrain:***@")
        assert service.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    logged = log_rows(log_url, model)
    assert len(logged) == 300 and logged["label"].notna().all()
    report = cli_json(service, "ab", "report")
    assert report["variants"]["production"]["records"] + report["variants"]["candidate"]["records"] == 300
    settings = load_settings(None, [*service.settings, f"data.path={log_url}", "trigger.min_labels=100"])
    frame = data.load(settings.data)
    assert len(frame) == 300 and frame["timestamp"].is_monotonic_increasing
    check = cli_json(service, "check", "--data", log_url, "--set", "trigger.min_labels=100")
    assert check["n_rows"] == 300 and check["production_version"] == good
    assert check["n_labels"] == report["variants"]["production"]["labelled"]


def test_prediction_log_reads_on_postgres_use_the_time_index_and_probe_labels_by_key():
    """EXPLAIN of a window read on PostgreSQL: an index range on time, each label one index probe (no scans)."""
    import os
    from datetime import timedelta

    from retrain.serving.predlog import PredictionLog
    from tests.logfill import START, fill

    admin, private = os.environ.get("RETRAIN_TEST_POSTGRES_URI"), None
    if not admin:
        if not services.postgres_available():
            pytest.skip("no PostgreSQL: set RETRAIN_TEST_POSTGRES_URI or install its binaries and psycopg")
        private = services.Postgres.create().start()
        admin = private.uri()
    try:
        log = PredictionLog(services.create_database(admin, f"predlog_{uuid.uuid4().hex[:8]}"))
        fill(log, 20_000)
        with log.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        window = {"since": START + timedelta(seconds=1_000), "until": START + timedelta(seconds=1_300)}
        plan = "\n".join(log.explain_rows("m", variants=("production",), versions=("1",), **window))
        assert "ix_predictions_at" in plan and "ix_feedback_request_id" in plan, plan
        assert "Seq Scan" not in plan, plan
        rows = log.rows("m", **window)
        assert len(rows) == 300 and rows["label"].notna().sum() == 60
        log.engine.dispose()
    finally:
        if private is not None:
            private.destroy()
