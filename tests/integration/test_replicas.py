"""Three `retrain serve` replicas on one registry and one prediction log, behind a client that spreads requests.

Real processes throughout: three services (uvicorn on loopback ports), the rollout and canary commands through
the real CLI, promote and rollback through `Registry`, SIGKILL of one replica under traffic. Shown:
- every entity gets the same variant from every replica while a canary is at 50% and at 100%;
- a rollout change (the canary's next stage), a promotion and a rollback reach every replica within one poll:
  any poll a replica starts after the change was written serves it (tests/replicas.py `reaches_all`), and no
  request fails across them;
- the canary controller (`rollout start --once`, `rollout status`) and `ab report` count the three replicas'
  rows together;
- killing one replica with SIGKILL mid-traffic: the client's retry sends its share to the others, no request
  fails, every row a surviving replica answered is logged exactly as answered. Of what the killed replica
  answered, the rows still queued in its writer (normally its last `serving.log_flush_s` seconds) are lost:
  the log is written off the request path (docs/live-traffic.md, "Several replicas"); with `serving.log_sync`
  nothing it answered is lost;
- replicas started together on a fresh log all create its tables.

On SQLite (a registry file and a log file shared by the processes) and, marked `server`, on PostgreSQL: the
log in its own PostgreSQL database and the registry on CI's `mlflow server` (PostgreSQL, artifacts on S3).
Sizes are small (about 1,000 requests over 200 entities); `benchmarks/bench_replicas.py` runs 20,000.
"""

from __future__ import annotations

import signal
import uuid

import mlflow
import pytest

from retrain.config import load_settings
from retrain.registry import Registry
from retrain.serving import assign
from tests import services
from tests.conftest import _needs_env, fast_settings, unique_names
from tests.integration.serving_support import FEATURES, Service, cli_json, log_rows, traffic
from tests.replicas import (
    Spreader,
    entities_with_two_variants,
    entity_records,
    logged_vs_answered,
    now_utc,
    reaches_all,
    start_all,
    stop_all,
)

POLL_S = 1.0
ENTITIES = 200


def record_comparison(settings, candidate: str, incumbent: str) -> None:
    """A comparison run as `retrain evaluate` tags it, saying promote (the gate itself is tested elsewhere)."""
    mlflow.set_experiment(settings.experiments.comparisons)
    with mlflow.start_run():
        mlflow.set_tags(
            {
                "retrain.model_name": settings.registry.model_name,
                "retrain.candidate_version": candidate,
                "retrain.incumbent_version": incumbent,
                "retrain.decision": "promote",
                "retrain.reason": "test comparison says promote",
            }
        )


def replicas_agree(replicas: list[Service], model: str, good: str, good2: str) -> dict:
    """The scenario on running-to-be replicas of one registry (production `good`) and one log; returns numbers."""
    first = replicas[0]
    settings = load_settings(None, list(first.settings))
    canary = ["rollout", "start", "--mode", "canary", "--candidate", good2, "--stages", "50,100"]
    canary += ["--min-requests", "60", "--once"]
    assert cli_json(first, *canary)["step"]["action"] == "wait"
    start_all(replicas)
    for r in replicas:
        r.wait_for(lambda s: s["mode"] == "canary" and s["share"] == 50, "canary at 50%")
    records = entity_records(traffic(ENTITIES, seed=71), FEATURES)
    client = Spreader([r.url for r in replicas], records, threads=3, seed=5, phase="canary50")

    # 1. a canary at 50%: sticky by entity across replicas, every replica answering its third
    answers = client.run(210)
    assert client.failed() == []
    assert {a.replica for a in answers} == {0, 1, 2}
    assert entities_with_two_variants(answers) == {}
    for a in answers:
        expected = "candidate" if assign.bucket(a.entities[0], model) < 5000 else "production"
        assert a.variants == (expected,) and a.versions == ((good2,) if expected == "candidate" else (good,))

    # 2. the controller and the report read the three replicas' rows together
    for r in replicas:
        r.wait_logged()
    candidate = sum(a.variants == ("candidate",) for a in answers)
    status = cli_json(first, "rollout", "status")
    assert status["stats"]["candidate"]["records"] == candidate
    assert status["stats"]["production"]["records"] == len(answers) - candidate
    report = cli_json(first, "ab", "report")
    assert report["variants"]["candidate"]["records"] == candidate
    assert report["variants"]["production"]["records"] == len(answers) - candidate

    # 3. the controller's next stage, under traffic: every replica serves it from its first poll after the write
    client.phase = "to100"
    client.start()
    step = cli_json(first, *canary)["step"]
    written = now_utc()
    assert step["action"] == "advance" and step["rollout"]["share"] == 100
    delays = {"advance": reaches_all([r.status for r in replicas], written, lambda s: s["share"] == 100)}
    client.stop()
    client.phase = "canary100"
    at100 = client.run(120)
    assert {a.versions for a in at100} == {(good2,)} and entities_with_two_variants(at100) == {}

    # 4. the controller promotes (stage 2 has its records in the combined log), then a rollback, both under traffic
    for r in replicas:
        r.wait_logged()
    record_comparison(settings, good2, good)
    client.phase = "promote"
    client.start()
    step = cli_json(first, *canary)["step"]
    written = now_utc()
    assert step["action"] == "promote", step
    delays["promote"] = reaches_all(
        [r.status for r in replicas], written, lambda s: s["production"]["version"] == good2 and s["mode"] == "single"
    )
    client.phase = "rollback"
    Registry(settings).rollback(reason="test: roll back three replicas")
    written = now_utc()
    delays["rollback"] = reaches_all(
        [r.status for r in replicas], written, lambda s: s["production"]["version"] == good
    )
    client.stop()
    client.phase = "rolled-back"
    after = client.run(60)
    assert {a.versions for a in after} == {(good,)}
    assert client.failed() == []

    # 5. SIGKILL one replica mid-traffic: the client's retry moves its share to the others, no request fails
    client.phase = "kill"
    before = len(client.answers)
    client.start()
    client.wait_answers(before + 60)
    killed = 2
    replicas[killed].stop(signal.SIGKILL)
    client.wait_answers(len(client.answers) + 90)
    client.stop()
    assert client.failed() == []
    assert killed in client.dead
    for r in replicas[:killed]:
        r.wait_logged()
        assert r.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # graceful: writes everything queued
    return {"delays_s": delays, "answers": client.answers, "killed": killed}


def check_log(logged, result: dict) -> dict:
    numbers = logged_vs_answered(logged, result["answers"], killed=result["killed"])
    assert numbers["survivor_answers_not_logged"] == 0, numbers
    assert numbers["rows_differing_from_answer"] == 0, numbers
    # what is logged = what survivors answered + what the killed one answered and had written + what it wrote
    # for requests whose answer the kill cut off
    assert numbers["logged_rows"] == (
        numbers["answered_records"] - numbers["killed_answers_not_logged"] + numbers["logged_never_answered"]
    ), numbers
    print(f"replicas: {numbers}; changes reached every replica after (s): {result['delays_s']}")
    return numbers


@pytest.mark.slow
def test_three_replicas_on_sqlite_agree_follow_the_registry_and_lose_no_survivors_row(store, tmp_path):
    served, uri = store
    log_url = f"sqlite:///{tmp_path / 'shared-predictions.db'}"
    replicas = [Service(tmp_path, uri, f"serving.log_url={log_url}", poll_s=POLL_S) for _ in range(3)]
    try:
        result = replicas_agree(replicas, "churn-classifier", served.versions["good"], served.versions["good2"])
    finally:
        stop_all(replicas)
    check_log(log_rows(log_url), result)


@pytest.mark.slow
@pytest.mark.server
def test_three_replicas_on_postgres_and_the_tracking_server_agree(ci_server, stable_data, tmp_path):
    admin = _needs_env("RETRAIN_TEST_POSTGRES_URI")
    if not services.postgres_available():
        pytest.skip("PostgreSQL or psycopg is not installed")
    for attempt in range(5):  # replicas starting together on a fresh PostgreSQL log all get its tables
        fresh = services.create_database(admin, f"fresh_{uuid.uuid4().hex[:8]}")
        errors = open_together(fresh)
        assert errors == [], f"try {attempt}: {errors[0]}"
    log_url = services.create_database(admin, f"replicas_{uuid.uuid4().hex[:8]}")
    names = unique_names("replicas")
    model = names[0].split("=", 1)[1]
    good = train_version(stable_data, names)
    good2 = train_version(stable_data, names, "model.seed=7")
    Registry(fast_settings(stable_data, *names)).promote(good, force=True, reason="CI: first production")
    replicas = [Service(tmp_path, ci_server, *names, f"serving.log_url={log_url}", poll_s=POLL_S) for _ in range(3)]
    try:
        result = replicas_agree(replicas, model, good, good2)
    finally:
        stop_all(replicas)
    check_log(log_rows(log_url, model), result)


def train_version(data, names: list[str], *overrides: str) -> str:
    from retrain.training import train

    return train(fast_settings(data, *names, *overrides)).version


@pytest.mark.slow
def test_with_log_sync_a_killed_replica_loses_no_row_it_answered(store, tmp_path):
    """`serving.log_sync`: a replica answers only once the request's rows are committed, so SIGKILL loses none
    it answered. `log_flush_s=5` would leave seconds of answered rows queued without it (the test then fails)."""
    served, uri = store
    log_url = f"sqlite:///{tmp_path / 'shared-predictions.db'}"
    sync = ["serving.log_sync=true", "serving.log_flush_s=5"]
    replicas = [Service(tmp_path, uri, f"serving.log_url={log_url}", *sync, poll_s=POLL_S) for _ in range(2)]
    try:
        start_all(replicas)
        client = Spreader([r.url for r in replicas], entity_records(traffic(ENTITIES, seed=72), FEATURES), seed=6)
        client.start()
        client.wait_answers(120)
        replicas[1].stop(signal.SIGKILL)
        client.wait_answers(len(client.answers) + 60)
        client.stop()
        assert client.failed() == [] and 1 in client.dead
        replicas[0].wait_logged()
        assert replicas[0].stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    finally:
        stop_all(replicas)
    numbers = logged_vs_answered(log_rows(log_url), client.answers, killed=1)
    assert numbers["answered_records_by_killed"] >= 30, numbers
    assert numbers["killed_answers_not_logged"] == 0 and numbers["survivor_answers_not_logged"] == 0, numbers
    assert numbers["rows_differing_from_answer"] == 0, numbers
    assert numbers["logged_rows"] == numbers["answered_records"] + numbers["logged_never_answered"], numbers


def open_together(url: str, n: int = 3) -> list[str]:
    """Open `n` prediction logs on `url` at the same instant, each on its own thread and connection; the errors."""
    import threading

    from retrain.serving.predlog import PredictionLog

    barrier = threading.Barrier(n)
    errors: list[str] = []

    def open_log() -> None:
        barrier.wait()
        try:
            PredictionLog(url).engine.dispose()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=open_log) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_replicas_opening_a_fresh_log_together_all_start(tmp_path):
    """Three logs opened at once on a new SQLite file (as three replicas starting together): all get their tables.

    Each first checks for the tables, finds none and creates them; the losers' CREATE used to fail
    ("table requests already exists") and their service to exit at start, in 7 of 10 such starts here.
    """
    for attempt in range(10):
        errors = open_together(f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}")
        assert errors == [], f"try {attempt}: {errors[0]}"


@pytest.mark.parametrize("sync", [True, False])
def test_a_synchronous_add_returns_once_its_rows_are_committed(tmp_path, sync):
    """With `sync`, `add(wait=True)` returns after the commit (the rows are readable at once, though rows may wait
    5 s to be written); without it, `add` returns at once and the rows are still queued."""
    import numpy as np

    from retrain.serving.predlog import Batch, LoggedRequest, PredictionLog, utcnow

    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", flush_s=5.0, sync=sync).start()
    try:
        for i in range(3):
            at = utcnow()
            batch = Batch(f"r{i}", at, "m", "production", "1", True, [0, 1], ["a", "b"], ["entity"] * 2)
            batch.prediction, batch.probability = np.array([0, 1]), np.array([0.1, 0.9])
            assert log.add(batch, request=LoggedRequest(f"r{i}", at, "m", 2, "{}"), wait=sync) is True
            assert log.count("m") == (2 * (i + 1) if sync else 0)
    finally:
        log.close()
    assert log.counters.rows_out == 6 and log.counters.lost == 0
