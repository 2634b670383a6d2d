"""Rollback and status on SQLite: a short vs a long history, and a 50 KB vs a 500 MB model.

Reads and writes of a move must cost the same however long the history is (issue 7, item 6) and
must never touch model bytes. Two measurements, each interleaving its two sides so disk and cache
noise hit both alike:

- history: two registries in two SQLite files, identical except that one has 10 recorded moves
  and the other 10,000. The long log is the rows `Ledger.claim` leaves (one soft-deleted experiment
  per move with its record tag), inserted in one transaction through MLflow's own ORM classes to
  save the hour 10,000 real moves take, with a head that matches it; the last 25 moves of both are
  real `Registry.promote` calls, so tags and mirrors are what the code writes, and the registry must
  pass `status` before anything is timed. Then `rollback`
  (alternating between the two versions) and `status` on each. Target: long/short <= 1.2.
- model size: rollback of a registry whose versions hold 50 KB vs 500 MB of artifacts. Target:
  median <= 100 ms, large/small ~ 1.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

QUICK = {"repeats": 5, "long_moves": 1_000, "large_mb": 20}
REAL_MOVES = 25


def _versions(client, name: str, size: int, folder: Path) -> None:
    """A registered model with two versions whose runs each hold `size` bytes of artifacts."""

    client.create_registered_model(name)
    blob = folder / f"{name}.bin"
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(chunk[: size % len(chunk)])
    experiment = client.create_experiment(f"bench-{name}")
    for _ in range(2):
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, str(blob), "model")
        client.set_terminated(run.info.run_id)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    blob.unlink()


def _history(uri: str, name: str, moves: int, folder: Path, size: int = 50 * 1024) -> None:
    """`moves` recorded moves of production alternating between versions 1 and 2."""
    from mlflow import MlflowClient

    from retrain.config import load_settings
    from retrain.registry import Registry
    from retrain.registry import rules as mv

    client = MlflowClient(uri)
    _versions(client, name, size, folder)
    settings = load_settings(None, [f"registry.model_name={name}", f"notify.events_path={folder}/events.jsonl"])
    reg = Registry(settings, client=client)
    logged = []
    for seq in range(1, moves - min(REAL_MOVES, moves) + 1):  # what the moves before the last 25 left behind
        to = "1" if seq % 2 else "2"
        logged.append(
            mv.Move(
                seq,
                None if seq == 1 else ("2" if to == "1" else "1"),
                to,
                "2026-01-01T00:00:00+00:00",
                "bench@host",
                "force",
                "bench",
                token=uuid.uuid4().hex,
            )
        )
    if logged:
        _insert_claims(uri, reg.ledger, logged)
        client.set_registered_model_tag(name, reg.head_key, mv.head_from(logged).to_json())
        client.set_registered_model_alias(name, "production", logged[-1].to_version)
        client.set_model_version_tag(name, logged[-1].from_version, "retrain.archived", "2026-01-01")
    for _ in range(min(REAL_MOVES, moves)):
        current = reg.state().production
        reg.promote("2" if current == "1" else "1", force=True, reason="bench")
    status = reg.status()
    assert status["consistent"] and status["moves"] == moves, status


def _insert_claims(uri: str, ledger, moves: list) -> None:
    """The experiments and tags `ledger.claim` + hide would write for `moves`, in one transaction."""
    import json

    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag
    from mlflow.tracking._tracking_service.utils import _get_store

    from retrain.ledger import RECORD_TAG

    store = _get_store(uri)
    now = int(time.time() * 1000)
    with store.ManagedSessionMaker(read_only=False) as session:
        for move in moves:
            experiment = store._with_workspace_field(
                SqlExperiment(
                    name=ledger.name(move.seq), lifecycle_stage="deleted", creation_time=now, last_update_time=now
                )
            )
            experiment.tags = [SqlExperimentTag(key=RECORD_TAG, value=json.dumps(move.record(), sort_keys=True))]
            session.add(experiment)


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _measure(uris: dict[str, str], repeats: int, folder: Path) -> dict[str, dict[str, list[float]]]:
    """Median-ready timings of rollback and status per registry, interleaved."""
    from mlflow import MlflowClient

    from retrain.config import load_settings
    from retrain.registry import Registry

    regs = {}
    for label, uri in uris.items():
        settings = load_settings(None, [f"registry.model_name={label}", f"notify.events_path={folder}/events.jsonl"])
        regs[label] = (settings, MlflowClient(uri))

    def rollback(settings, client, target: str) -> None:
        Registry(settings, client=client).rollback(target, force=True, reason="bench")

    def status(settings, client) -> None:
        Registry(settings, client=client).status()

    times: dict[str, dict[str, list[float]]] = {label: {"rollback": [], "status": []} for label in uris}
    for _ in range(repeats):
        for label, (settings, client) in regs.items():
            reg = Registry(settings, client=client)
            target = "2" if reg.state().production == "1" else "1"
            times[label]["rollback"].append(_timed(rollback, settings, client, target))
            times[label]["status"].append(_timed(status, settings, client))
    return times


def run(repeats: int = 30, long_moves: int = 10_000, large_mb: int = 500) -> dict:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        old = os.getcwd()
        os.chdir(tmp)
        folder = Path(tmp)
        try:
            uris = {"short": f"sqlite:///{tmp}/short.db", "long": f"sqlite:///{tmp}/long.db"}
            start = time.perf_counter()
            _history(uris["short"], "short", 10, folder)
            _history(uris["long"], "long", long_moves, folder)
            setup_s = time.perf_counter() - start
            history = _measure(uris, repeats, folder)
            sizes = {"small": f"sqlite:///{tmp}/size.db", "large": f"sqlite:///{tmp}/size.db"}
            _history(sizes["small"], "small", 2, folder)
            _history(sizes["large"], "large", 2, folder, large_mb * 1024 * 1024)
            os.sync()
            size = _measure(sizes, repeats, folder)
        finally:
            os.chdir(old)
            mlflow.set_tracking_uri(None)

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    out = {
        "name": "rollback_sqlite",
        "rollback_10_moves_ms": ms(history["short"]["rollback"]),
        f"rollback_{long_moves}_moves_ms": ms(history["long"]["rollback"]),
        "ratio_rollback": round(
            statistics.median(history["long"]["rollback"]) / statistics.median(history["short"]["rollback"]), 2
        ),
        "status_10_moves_ms": ms(history["short"]["status"]),
        f"status_{long_moves}_moves_ms": ms(history["long"]["status"]),
        "ratio_status": round(
            statistics.median(history["long"]["status"]) / statistics.median(history["short"]["status"]), 2
        ),
        "small_50kb_rollback_ms": ms(size["small"]["rollback"]),
        f"large_{large_mb}mb_rollback_ms": ms(size["large"]["rollback"]),
        "ratio_size": round(
            statistics.median(size["large"]["rollback"]) / statistics.median(size["small"]["rollback"]), 2
        ),
        "setup_s": round(setup_s, 1),
        "target": f"history ratios <= 1.2 ({long_moves} vs 10 moves); rollback median <= 100 ms, large/small ~ 1",
    }
    out["ratio"] = max(out["ratio_rollback"], out["ratio_status"])
    return out


if __name__ == "__main__":
    import sys

    print(run(**(QUICK if "--quick" in sys.argv else {})))
