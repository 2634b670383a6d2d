"""Training claims its idempotency key atomically (issue 24, part 4): real `retrain train` processes started
together on one SQLite store register one version and the others reuse it; a trainer killed with kill -9
after claiming does not block the key. The processes are forked by registry_harness (real OS processes).
"""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from retrain.ledger import Ledger
from retrain.train_claim import RELEASED
from tests.conftest import FAST, unique_names
from tests.integration.test_registry_races import Harness

NAME = "churn-classifier"
KEY = "retrain.idempotency_key"


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


def train_job(store: str, cwd, data, as_of: str, kill_after: int | None = None, sets: tuple[str, ...] = ()) -> dict:
    args = [
        "train",
        "--data",
        str(data),
        "--as-of",
        as_of,
        "--json",
        *(a for o in (*FAST, *sets) for a in ("--set", o)),
    ]
    return {
        "cwd": str(cwd),
        "env": {"MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store},
        "kill_after": kill_after,
        "commands": [args],
    }


def versions_by_key(name: str = NAME) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in MlflowClient().search_model_versions(f"name = '{name}'"):
        out.setdefault(v.tags.get(KEY, ""), []).append(str(v.version))
    return out


def outputs(results: list[dict]) -> list[dict]:
    for r in results:
        assert r["signal"] is None and r["codes"] == [0], r
        assert "Traceback" not in r["stderr"], r["stderr"]
    return [json.loads(r["stdout"]) for r in results]


@pytest.mark.slow
def test_concurrent_trainings_with_the_same_inputs_register_one_version(harness, tracking, tmp_path, stable_data):
    for round_, as_of in enumerate(("2026-02-20", "2026-02-22", "2026-02-24")):
        jobs = [train_job(tracking, tmp_path, stable_data, as_of) for _ in range(3)]
        outs = outputs(harness.run(jobs))
        assert len({o["version"] for o in outs}) == 1, outs
        assert sorted(o["reused"] for o in outs) == [False, True, True], outs
        keys = versions_by_key()
        assert len(keys) == round_ + 1 and all(len(v) == 1 for v in keys.values()), keys


@pytest.mark.slow
def test_concurrent_trainings_through_a_tracking_server_register_one_version(
    harness, tracking_server, tmp_path, stable_data
):
    """The claim through `mlflow server` (REST): the session's server on SQLite; in CI also PostgreSQL's."""
    names = tuple(unique_names("claim"))
    name = names[0].split("=", 1)[1]
    jobs = [train_job(tracking_server, tmp_path, stable_data, "2026-02-20", sets=names) for _ in range(2)]
    outs = outputs(harness.run(jobs))
    assert len({o["version"] for o in outs}) == 1 and sorted(o["reused"] for o in outs) == [False, True], outs
    assert list(versions_by_key(name).values()) == [[outs[0]["version"]]]


@pytest.mark.slow
def test_a_trainer_killed_after_its_claim_does_not_block_the_key(harness, tracking, tmp_path, stable_data):
    as_of = "2026-02-20"
    # the claim is registry write 1, hiding it write 2: die right before write 3, long before a version
    (killed,) = harness.run([train_job(tracking, tmp_path, stable_data, as_of, kill_after=2)])
    assert killed["signal"] == 9, killed
    assert versions_by_key() == {}
    (experiment,) = [
        e
        for e in MlflowClient().search_experiments(view_type=3)
        if e.name.startswith("retrain-ledger/churn-classifier/training/")
    ]
    key = experiment.name.split("/")[-2]
    entry = Ledger(MlflowClient(), f"{NAME}/training/{key}").get(1)
    assert entry is not None and RELEASED not in entry.marks  # the dead trainer's claim is still held
    # its process is gone: the next trainings take over (one trains, the other waits and reuses)
    outs = outputs(harness.run([train_job(tracking, tmp_path, stable_data, as_of) for _ in range(2)]))
    assert len({o["version"] for o in outs}) == 1 and sorted(o["reused"] for o in outs) == [False, True], outs
    assert versions_by_key() == {key: [outs[0]["version"]]}
    claims = Ledger(MlflowClient(), f"{NAME}/training/{key}")
    assert (
        RELEASED in claims.get(2).marks and json.loads(claims.get(2).marks[RELEASED])["version"] == outs[0]["version"]
    )


def test_a_claim_is_held_while_its_trainer_may_live_and_taken_over_once_it_cannot():
    """The rules for taking a claim over, on a real store: a remote claim holds for REMOTE_CLAIM_HOURS, a claim
    released without a version holds nothing, a claim of a live process on this host holds."""
    import os
    import socket
    from datetime import UTC, datetime, timedelta

    from retrain.train_claim import REMOTE_CLAIM_HOURS, Claim, _over, claim

    client = MlflowClient()

    def held(key: str, **record) -> Ledger:
        ledger = Ledger(client, f"{NAME}/training/{key}")
        ledger.claim(1, {"token": key, "key": key, **record})
        return ledger

    old = (datetime.now(UTC) - timedelta(hours=REMOTE_CLAIM_HOURS + 1)).isoformat()
    now = datetime.now(UTC).isoformat()
    assert _over(held("remote-recent", host="elsewhere", pid=1, at=now).get(1)) is None
    assert "counts as dead" in _over(held("remote-old", host="elsewhere", pid=1, at=old).get(1))
    assert _over(held("alive-here", host=socket.gethostname(), pid=os.getpid(), at=now).get(1)) is None
    released = held("released", host=socket.gethostname(), pid=os.getpid(), at=now)
    Claim(released, released.get(1)).release(None, "TrainingError: learned nothing")
    assert "ended without a version" in _over(released.get(1))
    # an abandoned claim is taken over with the next attempt; the winner releases it with its version
    won = claim(client, NAME, "remote-old", lambda: None)
    assert isinstance(won, Claim) and won.entry.seq == 2
    won.release("7")
    assert json.loads(won.ledger.get(2).marks[RELEASED])["version"] == "7"
