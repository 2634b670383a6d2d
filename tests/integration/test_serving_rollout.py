"""Live traffic against registry moves: A/B with sticky buckets, shadow, canary, reloads under load, load failures.

Every test runs the real service (`retrain serve`, uvicorn on loopback) on its own copy of a SQLite registry
with real versions; rollouts are started and stopped with the real CLI; promote and rollback go through
`Registry`, as `retrain promote` / `retrain rollback` do.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import mlflow
import pytest
import requests

from retrain.config import load_settings
from retrain.registry import Registry
from retrain.serving import assign
from tests.integration.serving_support import (
    FEATURES,
    NAME,
    Service,
    cli_json,
    log_rows,
    send_labelled,
    split_body,
    traffic,
)

pytestmark = pytest.mark.slow


def settings_of(service: Service):
    return load_settings(None, list(service.settings))


def predict(service: Service, frame, with_id: bool = True) -> list[dict]:
    response = service.post("/predict", split_body(frame, with_id))
    assert response.status_code == 200, response.text
    service.wait_logged()  # controllers and reports read the log: let the rows land first
    return response.json()["predictions"]


def test_ab_assignment_is_sticky_by_entity_across_restarts_and_share_increases(store, tmp_path):
    served, uri = store
    good, good2 = served.versions["good"], served.versions["good2"]
    rows = traffic(300)
    service = Service(tmp_path, uri)
    started = cli_json(service, "rollout", "start", "--mode", "ab", "--share", "30")
    assert started["rollout"]["candidate"] == good2 and started["rollout"]["production"] == good
    with service:
        service.wait_for(lambda s: s["mode"] == "ab", "A/B route")
        first = predict(service, rows)
        expected = ["candidate" if assign.bucket(c, NAME) < 3000 else "production" for c in rows["customer_id"]]
        assert [p["variant"] for p in first] == expected
        assert {p["version"] for p in first if p["variant"] == "candidate"} == {good2}
        assert 0.2 < expected.count("candidate") / len(expected) < 0.4
        # records without an id: one assignment for the whole request, marked as such in the log
        anonymous = service.post("/predict", split_body(rows.head(20), with_id=False)).json()
        assert len({p["variant"] for p in anonymous["predictions"]}) == 1
    logged = log_rows(service.log_url)
    mine = logged[logged["request_id"] == anonymous["request_id"]]
    assert set(mine["assignment"]) == {"request"} and mine["entity_id"].isna().all()
    assert set(logged[logged["request_id"] != anonymous["request_id"]]["assignment"]) == {"entity"}
    # a new process (restart) and a larger share: every candidate entity stays with the candidate
    cli_json(service, "rollout", "stop", "--reason", "widen")
    cli_json(service, "rollout", "start", "--mode", "ab", "--share", "60")
    with Service(tmp_path, uri, *service.settings[3:]) as again:
        again.wait_for(lambda s: s["mode"] == "ab" and s["share"] == 60, "A/B route at 60%")
        second = predict(again, rows)
    assert [p["variant"] for p in second] == [
        "candidate" if assign.bucket(c, NAME) < 6000 else "production" for c in rows["customer_id"]
    ]
    assert all(b["variant"] == "candidate" for a, b in zip(first, second, strict=True) if a["variant"] == "candidate")


def test_shadow_scores_beside_production_and_never_changes_the_answer(store, tmp_path):
    served, uri = store
    rows = traffic(30)
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}/{served.versions['good']}").predict(rows[FEATURES])
    service = Service(tmp_path, uri, "serving.shadow_queue=2")
    cli_json(service, "rollout", "start", "--mode", "shadow", "--candidate", served.versions["slow"])
    with service:
        service.wait_for(
            lambda s: s["mode"] == "shadow" and s["candidate"]["version"] == served.versions["slow"], "shadow route"
        )
        answers = []
        # 8 requests at once against a 300 ms shadow with room for 2 waiting jobs: some shadow scores are skipped
        threads = [threading.Thread(target=lambda: answers.append(predict(service, rows))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 8
        for answer in answers:
            assert [p["prediction"] for p in answer] == expected["prediction"].tolist()
            assert {(p["variant"], p["version"]) for p in answer} == {("production", served.versions["good"])}
        counts = service.wait_for(
            lambda s: s["counts"].get("shadow_scored", 0) + s["counts"].get("shadow_skipped", 0) == 8,
            "every shadow job scored or skipped",
        )["counts"]
        assert counts["shadow_skipped"] >= 1 and counts["shadow_scored"] >= 1
        # a failing shadow: same answers, status 200, the failure counted and logged
        cli_json(service, "rollout", "stop")
        cli_json(service, "rollout", "start", "--mode", "shadow", "--candidate", served.versions["failing"])
        service.wait_for(
            lambda s: s["candidate"] and s["candidate"]["version"] == served.versions["failing"],
            "failing shadow loaded",
        )
        answer = predict(service, rows)
        assert [p["prediction"] for p in answer] == expected["prediction"].tolist()
        service.wait_for(lambda s: s["counts"].get("shadow_failed", 0) == 1, "shadow failure counted")
    logged = log_rows(service.log_url)
    shadow = logged[logged["variant"] == "shadow"]
    assert not shadow["served"].any()
    assert len(shadow[shadow["version"] == served.versions["slow"]]) == counts["shadow_scored"] * len(rows)
    failed = shadow[shadow["version"] == served.versions["failing"]]
    assert len(failed) == len(rows) and failed["error"].str.contains("deliberately broken model").all()


def test_promote_and_rollback_under_load_fail_no_request(store, tmp_path):
    served, uri = store
    good, good2 = served.versions["good"], served.versions["good2"]
    body = split_body(traffic(5))
    seen: list[tuple[float, float, str]] = []  # (sent, answered, version)
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(service: Service) -> None:
        session = requests.Session()
        for _ in range(5000):  # bounded: at most 5000 requests per thread
            if stop.is_set():
                return
            sent = time.monotonic()
            try:
                response = session.post(service.url + "/predict", json=body, timeout=60)
                versions = {p["version"] for p in response.json()["predictions"]} if response.ok else set()
            except (requests.RequestException, ValueError) as exc:
                failures.append(repr(exc))
                continue
            with lock:
                if not response.ok or len(versions) != 1:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                else:
                    seen.append((sent, time.monotonic(), versions.pop()))

    def answered(version: str, after: float) -> float:
        """When the first request sent after `after` was answered by `version`."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                hit = next((done for sent, done, v in seen if sent > after and v == version), None)
            if hit is not None:
                return hit
            time.sleep(0.02)
        raise AssertionError(f"version {version} never answered; failures {failures[:3]}")

    with Service(tmp_path, uri, poll_s=0.5) as service:
        settings = settings_of(service)
        threads = [threading.Thread(target=load, args=(service,)) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            answered(good, 0)
            registry = Registry(settings)
            registry.promote(good2, force=True, reason="test: promote under load")
            promoted = answered(good2, time.monotonic())
            time.sleep(1.0)
            rolling_back = time.monotonic()
            registry.rollback(reason="test: roll back under load")
            back = time.monotonic()
            reached = answered(good, back)
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    assert len(seen) >= 30
    # the swap is one assignment: once a version answered, every request sent later gets it (until the next move)
    assert {v for sent, _, v in seen if promoted < sent < rolling_back} == {good2}
    assert {v for sent, _, v in seen if sent > reached} == {good}
    print(f"rollback reached live traffic {reached - back:.2f} s after it returned (poll 0.5 s)")


def test_a_version_that_fails_to_load_keeps_the_old_one_and_says_so(store, tmp_path):
    served, uri = store
    good, unloadable = served.versions["good"], served.versions["unloadable"]
    rows = traffic(10)
    with Service(tmp_path, uri) as service:
        registry = Registry(settings_of(service))
        registry.promote(unloadable, force=True, reason="test: a broken version")
        status = service.wait_for(lambda s: s["reload"]["error"] is not None, "reload error reported")
        assert f"version {unloadable} failed to load" in status["reload"]["error"]
        assert "deliberately unloadable model" in status["reload"]["error"]
        assert f"still serving version {good}" in status["reload"]["error"]
        assert {p["version"] for p in predict(service, rows)} == {good}
        assert service.get("/health").json()["production"] == good
        registry.rollback(reason="test: back to the loadable one")
        status = service.wait_for(lambda s: s["reload"]["error"] is None, "reload error cleared")
        assert status["production"]["version"] == good
        # a production version that loads but fails to score: 500 with one line, and the service stays up
        failing = served.versions["failing"]
        registry.promote(failing, force=True, reason="test: a version that cannot score")
        service.wait_for(lambda s: s["production"]["version"] == failing, "failing version serving")
        response = service.post("/predict", split_body(rows))
        assert response.status_code == 500
        assert response.json()["error"] == (
            f"production model version {failing} failed to score the request; see the service log"
        )
        assert service.get("/health").status_code == 200
        registry.rollback(reason="test: back again")
        service.wait_for(lambda s: s["production"]["version"] == good, "good version back")
        assert {p["version"] for p in predict(service, rows)} == {good}
    assert f"version {unloadable} failed to load" in service.log_tail(200_000)
    assert "deliberately broken model" in service.log_tail(200_000)


def record_comparison(candidate: str, incumbent: str) -> str:
    """A comparison run with the tags `retrain evaluate` writes, saying promote (the gate's verdict is tested
    elsewhere)."""
    mlflow.set_experiment("retrain-comparisons")
    with mlflow.start_run() as run:
        mlflow.set_tags(
            {
                "retrain.model_name": NAME,
                "retrain.candidate_version": candidate,
                "retrain.incumbent_version": incumbent,
                "retrain.decision": "promote",
                "retrain.reason": "test comparison says promote",
            }
        )
    return run.info.run_id


def test_canary_advances_stage_by_stage_and_promotes_through_the_registry(store, tmp_path):
    served, uri = store
    good, good2 = served.versions["good"], served.versions["good2"]
    comparison = record_comparison(good2, good)
    service = Service(tmp_path, uri)
    start = ["rollout", "start", "--mode", "canary", "--stages", "50,100", "--min-requests", "60", "--once"]
    first = cli_json(service, *start)
    assert first["resumed"] is False and first["step"]["action"] == "wait"
    assert first["step"]["reason"].startswith("waiting for traffic: no prediction log at sqlite:///")
    with service:
        service.wait_for(lambda s: s["mode"] == "canary" and s["share"] == 50, "canary at 50%")
        assert "0/60 candidate records" in cli_json(service, *start)["step"]["reason"]
        answers = predict(service, traffic(200, seed=1))
        assert 60 <= sum(p["variant"] == "candidate" for p in answers) <= 140
        status = cli_json(service, "rollout", "status")
        assert status["stats"]["candidate"]["records"] == sum(p["variant"] == "candidate" for p in answers)
        assert status["stats"]["candidate"]["errors"] == 0
        step = cli_json(service, *start)
        assert step["resumed"] is True and step["step"]["action"] == "advance"
        assert step["step"]["rollout"]["share"] == 100 and step["step"]["rollout"]["stage"] == 1
        service.wait_for(lambda s: s["share"] == 100, "canary at 100%")
        assert cli_json(service, *start)["step"]["action"] == "wait"  # the new stage counts from zero
        assert {p["variant"] for p in predict(service, traffic(80, seed=2))} == {"candidate"}
        final = cli_json(service, *start)
        assert final["step"]["action"] == "promote"
        move = final["step"]["promoted_move"]
        assert (move["kind"], move["from_version"], move["to_version"], move["comparison_run_id"]) == (
            "promote",
            good,
            good2,
            comparison,
        )
        assert move["reason"].startswith("canary: stage 2/2 (100%) passed")
        service.wait_for(
            lambda s: s["mode"] == "single" and s["production"]["version"] == good2, "promoted version serves"
        )
    assert Registry(settings_of(service)).state().production == good2
    assert cli_json(service, "rollout", "status")["rollout"]["status"] == "promoted"


def test_canary_breach_sets_the_share_to_zero_records_why_and_notifies(store, tmp_path):
    served, uri = store
    good, failing = served.versions["good"], served.versions["failing"]
    service = Service(tmp_path, uri)
    start = [
        "rollout",
        "start",
        "--mode",
        "canary",
        "--candidate",
        failing,
        "--stages",
        "50,100",
        "--min-requests",
        "100",
        "--max-error-rate",
        "0.05",
        "--once",
    ]
    cli_json(service, *start)
    with service:
        service.wait_for(lambda s: s["mode"] == "canary", "canary route")
        answers = predict(service, traffic(100, seed=3))
        # the failing candidate's records were answered by production; the failures are counted and logged
        assert {(p["variant"], p["version"]) for p in answers} == {("production", good)}
        assert service.status()["counts"]["fallbacks"] > 5
        step = cli_json(service, *start)["step"]
        assert step["action"] == "breach" and step["rollout"]["share"] == 0 and step["rollout"]["status"] == "breached"
        assert "candidate errors" in step["reason"]
        service.wait_for(lambda s: s["mode"] == "single", "breached canary off")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "canary_breached" and events[-1]["version"] == failing
    assert Registry(settings_of(service)).state().production == good
    assert cli_json(service, "rollout", "status")["rollout"]["reason"] == step["reason"]


def test_canary_completes_under_unscorable_client_input_and_stops_a_label_flipped_candidate(store, tmp_path):
    """1% of records neither version can score (income 1e308) fail production as much as the candidate: a healthy
    candidate completes; a candidate answering the opposite of production's model still stops at stage 1."""
    served, uri = store
    good, good2, flipped = served.versions["good"], served.versions["good2"], served.versions["flipped"]
    record_comparison(good2, good)
    service = Service(tmp_path, uri)
    start = ["rollout", "start", "--mode", "canary", "--stages", "50,100", "--min-requests", "100", "--once"]
    start += ["--max-error-rate", "0.01", "--set", "rollout.min_labels=60"]

    def send(frame) -> None:  # one record per request, as clients do; the unscorable ones fail whole
        for i in range(len(frame)):
            response = service.post("/predict", split_body(frame.iloc[i : i + 1]))
            assert response.status_code in (200, 422, 500), response.text
        service.wait_logged()

    def unscorable(frame, seed):
        frame = frame.copy()
        frame.loc[frame.sample(frac=0.01, random_state=seed).index, "income"] = 1e308
        return frame

    with service:
        first = cli_json(service, *start, "--candidate", good2)["step"]
        service.wait_for(lambda s: s["mode"] == "canary" and s["share"] == 50, "canary at 50%")
        send(unscorable(traffic(400, seed=71), 1))
        step = cli_json(service, *start, "--candidate", good2)["step"]
        assert step["action"] == "advance", step
        service.wait_for(lambda s: s["share"] == 100, "canary at 100%")
        send(unscorable(traffic(200, seed=72), 2))
        final = cli_json(service, *start, "--candidate", good2)["step"]
        assert final["action"] == "promote", final
        service.wait_for(lambda s: s["production"]["version"] == good2, "promoted version serves")
        assert first["action"] == "wait"
        # production is good2 now; a label-flipped candidate of the same traffic
        flip = cli_json(service, *start, "--candidate", flipped)["step"]
        assert flip["action"] == "wait"
        service.wait_for(lambda s: s["mode"] == "canary" and s["candidate"]["version"] == flipped, "flipped canary")
        send_labelled(service, traffic(300, seed=73))
        stopped = cli_json(service, *start, "--candidate", flipped)["step"]
    assert stopped["action"] == "breach" and stopped["rollout"]["stage"] == 0, stopped
    assert "live accuracy" in stopped["reason"] and stopped["reason"].startswith("stage 1/2 (50%)")


def test_a_killed_canary_controller_resumes_from_the_registry(store, tmp_path):
    served, uri = store
    good2 = served.versions["good2"]
    service = Service(tmp_path, uri)
    sets = [x for item in service.settings for x in ("--set", item)]
    stages = ["--stages", "20,60,100", "--min-requests", "60"]
    args = [
        sys.executable,
        "-m",
        "retrain",
        "rollout",
        "start",
        "--mode",
        "canary",
        *stages,
        "--interval-s",
        "0.2",
        *sets,
    ]
    rows = traffic(50, seed=4)  # ~10 candidate records per request at 20%: stage 1 needs several requests
    with service, (tmp_path / "controller.log").open("w") as out:
        controller = subprocess.Popen(args, cwd=tmp_path, env=service.env, stdout=out, stderr=subprocess.STDOUT)
        service.wait_for(lambda s: s["mode"] == "canary", "canary started by the controller")
        for _ in range(200):
            if service.status()["share"] == 60:
                break
            predict(service, rows)
        assert service.status()["share"] == 60, (tmp_path / "controller.log").read_text()
        controller.send_signal(signal.SIGKILL)  # at most one more request reached stage 2: it cannot pass yet
        controller.wait()
        status = cli_json(service, "rollout", "status")
        assert status["rollout"]["stage"] == 1 and status["rollout"]["status"] == "active"
        resumed = cli_json(service, "rollout", "start", "--mode", "canary", *stages, "--once")
        assert resumed["resumed"] is True and resumed["rollout"]["seq"] == status["rollout"]["seq"]
        assert resumed["step"]["action"] == "wait" and resumed["step"]["rollout"]["stage"] == 1
        assert resumed["rollout"]["candidate"] == good2


def test_rollout_commands_refuse_bad_input_and_write_nothing(store, tmp_path):
    served, uri = store
    service = Service(tmp_path, uri)
    cases = [
        (
            ["rollout", "start", "--mode", "blue-green"],
            2,
            "unknown rollout mode 'blue-green'; use one of: ab, canary, shadow",
        ),
        (["rollout", "start", "--mode", "ab", "--share", "150"], 2, "--share must be a percentage in (0, 100]"),
        (["rollout", "start", "--mode", "canary", "--stages", "5,50"], 2, "--stages must end at 100"),
        (["rollout", "start", "--mode", "canary", "--stages", "50,5,100"], 2, "--stages must be increasing"),
        (["rollout", "start", "--mode", "ab", "--candidate", "99"], 4, "has no version 99"),
        (["rollout", "start", "--mode", "ab", "--candidate", served.versions["good"]], 4, "is already @production"),
        (["rollout", "stop"], 4, "no active rollout of churn-classifier to stop"),
    ]
    for args, code, message in cases:
        out = cli_json(service, *args, code=code)["output"]
        assert message in out, out
        assert len(out.strip().splitlines()) == 1, out
    tags = mlflow.MlflowClient().get_registered_model(NAME).tags
    assert not [k for k in tags if k.startswith("retrain.rollout.")]
    cli_json(service, "rollout", "start", "--mode", "shadow")
    out = cli_json(service, "rollout", "start", "--mode", "ab", code=4)["output"]
    assert "a rollout is active (shadow of version" in out


def test_a_hand_broken_rollout_record_turns_the_rollout_off_and_reloads_go_on(store, tmp_path):
    served, uri = store
    good, good2 = served.versions["good"], served.versions["good2"]
    with Service(tmp_path, uri) as service:
        predict(service, traffic(7))
        status = service.status()
        assert status["counts"] == {"requests": 1, "records_production": 7}
        assert status["log"]["url"].startswith("sqlite:///") and status["reload"]["poll_s"] == 0.3
        cli_json(service, "rollout", "start", "--mode", "ab", "--share", "50")
        service.wait_for(lambda s: s["mode"] == "ab", "A/B route")
        mlflow.MlflowClient().set_registered_model_tag(NAME, "retrain.rollout.000001", "{edited by hand")
        status = service.wait_for(lambda s: s["rollout"]["status"] == "unreadable", "the broken record")
        assert status["mode"] == "single" and status["candidate"] is None
        assert "rollout record #1 (tag retrain.rollout.000001) is unreadable" in status["reload"]["notes"][0]
        assert {p["variant"] for p in predict(service, traffic(50))} == {"production"}
        Registry(settings_of(service)).promote(good2, force=True, reason="test: a move after the broken record")
        service.wait_for(lambda s: s["production"]["version"] == good2, "reload despite the broken record")
        assert cli_json(service, "rollout", "status")["route"]["mode"] == "single"
        started = cli_json(service, "rollout", "start", "--mode", "shadow", "--candidate", good)
        assert started["rollout"]["seq"] == 2
        service.wait_for(lambda s: s["mode"] == "shadow", "a new rollout after the broken one")
        # production's version deleted by hand: MLflow drops the alias; the service keeps the last good model
        mlflow.MlflowClient().delete_model_version(NAME, good2)
        status = service.wait_for(lambda s: s["reload"]["error"] is not None, "missing production noticed")
        assert status["reload"]["error"] == f"{NAME} has no @production alias; still serving version {good2}"
        assert {p["version"] for p in predict(service, traffic(5))} == {good2}
