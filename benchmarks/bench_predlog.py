"""The prediction log at a real day's volume: `retrain watch --once` and `retrain ab report` on 1M predictions
and 200k labels against the same calls on 100k / 20k, and the log's size per record.

Traffic at 1M predictions a day (one record per request, 200k customers, 20% of records labelled); the large
log holds the whole day, the small one its last 2.4 hours, so both end with the same rows: production moved
from version 1 to 2 (a real `Registry.promote`) 80 minutes before the end, and an A/B rollout of version 3
(10% of customers) ran for the last hour and was stopped at the end. Both logs are written through the log
writer's own code (`PredictionLog.write_now`: bodies turned into per-record features, integer times), not
over HTTP. Measured in one process, registry in a temporary SQLite MLflow store, sides alternating, medians:
`watch_once` 40 minutes after the move with `watch.period_minutes=60` (counts the new version's labelled rows
since the move and the old version's in the hour before it, tests them, decides "waiting"; the watch period
sets the window: with the default day-long period the old window would be the whole large log), and
`report.report` (reads the rollout's span, computes the statistics, draws the PNG, logs the run). Size: the
SQLite file (after a WAL checkpoint) per prediction row against the record's features as compact JSON
(`{"age":34,...}`, without the customer id).

Run from the repository root: python -m benchmarks.bench_predlog
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

QUICK = {"big": 200_000, "small": 100_000, "repeats": 2}
PER_DAY = 1_000_000
LABELLED = 0.2
CUSTOMERS = 200_000
NAME = "churn-classifier"


def _record(rng, customer: str) -> dict:
    return {
        "customer_id": customer,
        "age": int(rng.integers(18, 80)),
        "income": round(float(rng.uniform(10_000, 150_000)), 2),
        "tenure_days": int(rng.integers(0, 3000)),
        "num_purchases": int(rng.integers(0, 60)),
        "avg_transaction_value": round(float(rng.uniform(5, 300)), 2),
        "days_since_last_purchase": int(rng.integers(0, 365)),
        "channel": str(rng.choice(["web", "store", "app"])),
    }


def _write_log(url: str, rows: int, end: datetime, moved: datetime, rollout: tuple[datetime, datetime]) -> dict:
    """`rows` predictions ending at `end` at a day's rate (one record per request), 20% labelled."""
    import numpy as np

    from retrain.serving.assign import bucket, to_candidate
    from retrain.serving.predlog import Batch, LoggedRequest, PredictionLog, new_request_id

    rng = np.random.default_rng(7)
    step = timedelta(days=1) / PER_DAY
    log = PredictionLog(url)
    feature_bytes: list[int] = []
    sent: list[int] = []
    labels: list[dict] = []
    groups: list = []
    for i in range(rows):
        at = end - step * (rows - i)
        customer = f"C{int(rng.integers(CUSTOMERS)):08d}"
        record = _record(rng, customer)
        if i % 50 == 0:
            sent.append(len(json.dumps(record)))
            feature_bytes.append(
                len(json.dumps({k: v for k, v in record.items() if k != "customer_id"}, separators=(",", ":")))
            )
        request_id = new_request_id(at, rng.bytes(10))  # the service's ids (UUIDv7 of the time), seeded
        variant, version = "production", ("1" if at < moved else "2")
        if rollout[0] <= at < rollout[1] and to_candidate(bucket(f"{NAME}/{customer}"), 10.0):
            variant, version = "candidate", "3"
        probability = float(rng.random())
        prediction = int(probability >= 0.5)
        batch = Batch(
            request_id,
            at,
            NAME,
            variant,
            version,
            True,
            [0],
            [customer],
            ["entity"],
            np.array([prediction]),
            np.array([probability]),
            float(rng.uniform(1, 5)),
        )
        body = json.dumps({"dataframe_records": [record]})
        groups.append((LoggedRequest(request_id, at, NAME, 1, body), [batch]))
        if rng.random() < LABELLED:
            label = prediction if rng.random() < 0.8 else 1 - prediction
            labels.append({"request_id": request_id, "record": 0, "label": label, "at": at, "entity_id": None})
        if len(groups) >= 20_000:
            log.write_now(groups)
            groups = []
    if groups:
        log.write_now(groups)
    for start in range(0, len(labels), 50_000):
        log.add_feedback(labels[start : start + 50_000])
    with log.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    log.close()
    path = Path(url.removeprefix("sqlite:///"))
    return {
        "predictions": rows,
        "labels": len(labels),
        "bytes": path.stat().st_size,
        "bytes_per_record": round(path.stat().st_size / rows, 1),
        "feature_bytes": round(statistics.mean(feature_bytes), 1),
        "record_bytes_as_sent": round(statistics.mean(sent), 1),
    }


def _registry(folder: Path) -> tuple[str, datetime]:
    """A registered model with versions 1, 2, 3; production moved 1 -> 2 just now. Returns the tracking URI and
    the move's time (naive UTC)."""
    import mlflow
    from mlflow import MlflowClient

    from retrain.config import load_settings
    from retrain.registry import Registry

    uri = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    client.create_registered_model(NAME)
    experiment = client.create_experiment("bench-versions")
    for _ in range(3):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    settings = load_settings(None, [f"registry.model_name={NAME}", f"notify.events_path={folder}/events.jsonl"])
    registry = Registry(settings, client=client)
    registry.promote("1", force=True, reason="bench: first production")
    move = registry.promote("2", force=True, reason="bench: the watched move")
    return uri, datetime.fromisoformat(move.at).astimezone(UTC).replace(tzinfo=None)


def _rollout(settings, start: datetime, end: datetime) -> None:
    """An A/B rollout record of version 3 at 10% from `start`, stopped at `end`."""
    from dataclasses import replace

    from retrain.serving.rollout import Rollout
    from retrain.serving.state import RolloutStore

    def iso(at: datetime) -> str:
        return at.replace(tzinfo=UTC).isoformat(timespec="milliseconds")

    store = RolloutStore(settings)
    first = Rollout("ab", "3", "2", 10.0, at=iso(start), started_at=iso(start), stage_started_at=iso(start))
    first = store.write(first, 0)
    store.write(replace(first, status="stopped", share=0.0, reason="bench: stopped", at=iso(end)), first.seq)


def run(big: int = 1_000_000, small: int = 100_000, repeats: int = 5) -> dict:
    import mlflow

    from retrain.config import load_settings
    from retrain.serving import report
    from retrain.serving.watch import watch_once

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = os.getcwd()
        os.chdir(tmp)
        try:
            uri, moved = _registry(folder)
            end = moved + timedelta(minutes=80)
            span = (end - timedelta(minutes=60), end)
            logs, sizes, setup = {}, {}, {}
            for label, rows in (("small", small), ("big", big)):
                url = f"sqlite:///{folder}/{label}.db"
                start = time.perf_counter()
                sizes[label] = _write_log(url, rows, end, moved, span)
                setup[label] = round(time.perf_counter() - start, 1)
                logs[label] = url
            base = [
                f"registry.model_name={NAME}",
                f"notify.events_path={folder}/events.jsonl",
                "watch.period_minutes=60",  # the watch's windows: 80 min since the move and the hour before it
            ]
            settings = {k: load_settings(None, [*base, f"serving.log_url={u}"]) for k, u in logs.items()}
            _rollout(settings["small"], *span)
            times: dict[str, dict[str, list[float]]] = {k: {"watch": [], "ab": []} for k in logs}
            results: dict[str, dict] = {}
            for i in range(repeats + 1):  # the first round warms imports and caches for both
                for label in logs:
                    start = time.perf_counter()
                    looked = watch_once(settings[label], now=moved + timedelta(minutes=40))
                    watch_s = time.perf_counter() - start
                    start = time.perf_counter()
                    reported = report.report(settings[label])
                    ab_s = time.perf_counter() - start
                    if i:
                        times[label]["watch"].append(watch_s)
                        times[label]["ab"].append(ab_s)
                    results[label] = {
                        "watch_state": looked.state,
                        "watch_new_labelled": (looked.new or {}).get("labelled"),
                        "watch_old_labelled": (looked.old or {}).get("labelled"),
                        "ab_records": {v: r["records"] for v, r in reported["variants"].items()},
                        "ab_verdict": reported["verdict"],
                    }
        finally:
            os.chdir(old)
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    med = {k: {c: round(statistics.median(v), 3) for c, v in calls.items()} for k, calls in times.items()}
    out = {
        "name": "prediction_log",
        "sizes": sizes,
        "setup_s": setup,
        "median_s": med,
        "ratio_watch": round(med["big"]["watch"] / med["small"]["watch"], 2),
        "ratio_ab": round(med["big"]["ab"] / med["small"]["ab"], 2),
        "size_ratio": round(sizes["big"]["bytes_per_record"] / sizes["big"]["feature_bytes"], 2),
        "results": results,
        "target": "<= 2 s on the big log and <= 1.3x of the small; log bytes per record <= 2x its feature bytes",
    }
    out["ratio"] = max(out["ratio_watch"], out["ratio_ab"])
    return out


def summary(result: dict) -> list[dict]:
    """Rows for BENCHMARKS.md."""
    s, b = result["sizes"]["small"], result["sizes"]["big"]
    m = result["median_s"]
    big, small = f"{b['predictions']:,}/{b['labels']:,}", f"{s['predictions']:,}/{s['labels']:,}"
    rows = []
    for call, what in (("watch", "`retrain watch --once` (in process)"), ("ab", "`retrain ab report` (in process)")):
        ratio = result[f"ratio_{call}"]
        rows.append(
            {
                "measurement": f"{what} on a log of {big} predictions/labels vs {small}, same last 2.4 h",
                "result": f"{m['big'][call]:.2f} s vs {m['small'][call]:.2f} s, ratio {ratio:.2f}",
                "target": "<= 2 s and <= 1.3x",
                "met": "yes" if m["big"][call] <= 2 and ratio <= 1.3 else "no",
            }
        )
    rows.append(
        {
            "measurement": f"prediction log size per record ({b['predictions']:,} rows, SQLite) vs the record's "
            "features as compact JSON",
            "result": f"{b['bytes_per_record']:.0f} B vs {b['feature_bytes']:.0f} B, ratio {result['size_ratio']:.2f}",
            "target": "<= 2",
            "met": "yes" if result["size_ratio"] <= 2 else "no",
        }
    )
    return rows


if __name__ == "__main__":
    import sys

    print(json.dumps(run(**(QUICK if "--quick" in sys.argv else {})), indent=1))
