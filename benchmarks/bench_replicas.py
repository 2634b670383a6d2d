"""Three `retrain serve` replicas behind a round-robin client: sticky variants, a rollback under traffic, log = answers.

Setup: one real model trained with `retrain.training.train` on synthetic data in a temporary SQLite store, its
files registered as versions 1, 2 and 3 of `churn-classifier`; version 1 promoted, then version 2 (so a rollback
has somewhere to go), then an A/B rollout of version 3 at 50% against version 2. Three `retrain serve` processes
(uvicorn on loopback, `serving.poll_s` 1 s) share the registry file and one SQLite prediction log. A client
(tests/replicas.py `Spreader`, 6 threads with keep-alive sessions) sends one-record requests round-robin over the
three ports, each for one of 2,000 entities drawn at random.

Measured, over 20,000 requests:
- entities answered with two (variant, version) pairs while the A/B rollout is on (before the rollback) and after
  the rollback reached every replica (target 0 in both);
- failed requests in the whole run, which `Registry.rollback()` crosses at its middle (target 0); the rollback
  reaches every replica within one poll (`reaches_all`: any poll started after the call returned serves it), and
  the seconds from the call's return (and start) to each replica's swap are reported, as are the entities answered
  with two variants while it was propagating (allowed: replicas may differ for at most one poll);
- prediction log rows after SIGTERM to every replica vs records answered, matched by request id (target equal,
  none differing from its answer).

Run from the repository root: python -m benchmarks.bench_replicas
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import trained_store

QUICK = {"requests": 900, "entities": 200}
POLL_S = 1.0
NAME = "churn-classifier"


def _setup(folder: Path) -> str:
    """Train once, register the files three times, production 2 over 1, A/B of 3 at 50%; returns the tracking URI."""
    from retrain.registry import Registry
    from retrain.serving.rollout import Rollout
    from retrain.serving.state import RolloutStore

    settings, uri, _ = trained_store(folder, copies=2)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    registry = Registry(settings)
    registry.promote("1", force=True, reason="benchmark: first production")
    registry.promote("2", force=True, reason="benchmark: second production (rollback returns to 1)")
    RolloutStore(settings).write(Rollout("ab", "3", "2", 50.0, reason="benchmark"), 0)
    return uri


def run(requests: int = 20_000, entities: int = 2_000, threads: int = 6) -> dict:
    from retrain import synth
    from retrain.config import load_settings
    from retrain.registry import Registry
    from retrain.serving.predlog import PredictionLog
    from tests.integration.serving_support import FEATURES, Service
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

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = os.getcwd()
        os.chdir(folder)
        replicas: list[Service] = []
        try:
            uri = _setup(folder)
            log_url = f"sqlite:///{folder}/predictions.db"
            replicas = [Service(folder, uri, f"serving.log_url={log_url}", poll_s=POLL_S) for _ in range(3)]
            start_all(replicas, timeout=600)
            for r in replicas:
                r.wait_for(lambda s: s["mode"] == "ab" and s["candidate"] is not None, "A/B route", timeout=300)
            frame = synth.generate_day(synth.SynthSpec(days=1, rows_per_day=entities, seed=9), 0)
            frame["customer_id"] = [f"bench-{i:05d}" for i in range(entities)]
            records = entity_records(frame, FEATURES)
            client = Spreader([r.url for r in replicas], records, threads=threads, seed=1, phase="ab")
            started = time.perf_counter()
            client.start(limit=requests)
            client.wait_answers(requests // 2, timeout=3600)
            client.phase = "rollback"
            called = now_utc()
            Registry(load_settings(None, list(replicas[0].settings))).rollback(reason="benchmark: rollback under load")
            written = now_utc()
            delays = reaches_all(
                [r.status for r in replicas],
                written,
                lambda s: s["production"]["version"] == "1" and s["mode"] == "single",
            )
            client.phase = "after"
            client.wait_answers(requests, timeout=3600)
            client.stop()
            elapsed = time.perf_counter() - started
            handed = [r.status()["log"]["rows_in"] for r in replicas]
            stop_all(replicas)  # SIGTERM: each writes everything it queued before exiting
            replicas = []
            log = PredictionLog(log_url)
            try:
                logged = log.rows(NAME)
            finally:
                log.engine.dispose()
        finally:
            stop_all(replicas)
            os.chdir(old)
            import mlflow

            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    answers = client.answers
    by_replica = [sum(a.replica == i for a in answers) for i in range(3)]
    numbers = logged_vs_answered(logged, answers)
    two = {p: len(entities_with_two_variants(client.of(p))) for p in ("ab", "rollback", "after")}
    failed = client.failed()
    met = (
        two["ab"] == 0
        and two["after"] == 0
        and not failed
        and numbers["logged_rows"] == numbers["answered_records"]
        and numbers["rows_differing_from_answer"] == 0
        and numbers["logged_never_answered"] == 0
    )
    return {
        "name": "replicas",
        "requests": len(answers),
        "entities": entities,
        "replicas": 3,
        "client_threads": threads,
        "answered_by_replica": by_replica,
        "requests_per_phase": {p: len(client.of(p)) for p in ("ab", "rollback", "after")},
        "entities_with_two_variants": two,
        "ab_candidate_share": round(
            sum(a.variants == ("candidate",) for a in client.of("ab")) / max(1, len(client.of("ab"))), 4
        ),
        "failed_requests": len(failed),
        "failures": [a.error for a in failed[:5]],
        "rollback_to_swap_s": [round(d, 3) for d in delays],  # from Registry.rollback() returning
        "rollback_call_to_swap_s": [round(d + (written - called).total_seconds(), 3) for d in delays],
        "poll_s": POLL_S,
        "prediction_log": {**numbers, "rows_handed_to_writers": sum(handed)},
        "wall_s": round(elapsed, 1),
        "requests_per_s": round(len(answers) / elapsed, 1),
        "met": met,
        "ratio": None,
        "target": "0 two-variant entities, 0 failed, logged = answered",
    }


def summary(result: dict) -> list[dict]:
    two, log = result["entities_with_two_variants"], result["prediction_log"]
    return [
        {
            "measurement": f"3 replicas, {result['requests']:,} requests over {result['entities']:,} entities: "
            "entities with two variants (A/B 50% on; after the rollback)",
            "result": f"{two['ab']}; {two['after']} (while the rollback propagated: {two['rollback']})",
            "target": "0",
            "met": "yes" if two["ab"] == 0 and two["after"] == 0 else "no",
        },
        {
            "measurement": "failed requests across a rollback under traffic; each replica's swap after "
            "`Registry.rollback()` returned",
            "result": f"{result['failed_requests']}; {', '.join(f'{d:.2f}' for d in result['rollback_to_swap_s'])} s "
            f"(poll {result['poll_s']:g} s; negative: swapped before the call returned; every poll started after "
            "it served the rollback)",
            "target": "0",
            "met": "yes" if result["failed_requests"] == 0 else "no",
        },
        {
            "measurement": "prediction log rows (after SIGTERM) vs records answered, by request id",
            "result": f"{log['logged_rows']:,} vs {log['answered_records']:,}; {log['rows_differing_from_answer']} "
            "differing from their answer",
            "target": "equal",
            "met": "yes"
            if log["logged_rows"] == log["answered_records"] and log["rows_differing_from_answer"] == 0
            else "no",
        },
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    print(json.dumps(run(**(QUICK if "--quick" in sys.argv else {})), indent=2, default=str))
