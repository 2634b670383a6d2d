"""Moves of production under real concurrent processes and real `kill -9`, repeated.

The processes are real `retrain` CLI processes forked by tests/integration/registry_harness.py; they
share one tracking store: the test's SQLite file, and (marker `server`, `python -m pytest -m server`
with the services of .ci/run) CI's `mlflow server` on PostgreSQL. Every test uses its own registered
model and experiments, so one store serves all of them.

How many tries. A race that goes wrong in a fraction p of tries escapes n independent tries with
probability (1 - p)^n; catching p = 5% with probability 99% needs (0.95)^n <= 0.01, n >= 90
(0.95^90 = 0.0099). Each race test below makes TRIES = 90 tries on each store (SQLite, and CI's server),
so a 5% race is caught with 99% on either store by itself. A try is cheap: the rounds are chained on one
registered model (each round adds the candidate it needs: one run, one version, one comparison, where a
fresh model took three versions and two moves), and the racing processes are forked from the harness,
which imported MLflow and the CLI once. Every round checks its outcome (exactly the expected successes,
production and the head where they must be, no problem `retrain status` would report); the whole chained
history is checked move by move at the end. The forty-promotions test counts every forced promotion as a
try (80 per round, two processes interleaving them). RETRAIN_RACE_TRIES overrides TRIES for a quick look.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import subprocess
import sys
import uuid

import mlflow
import pytest
from mlflow import MlflowClient

from retrain.config import load_settings
from retrain.registry import Registry
from tests.conftest import REPO
from tests.integration.test_registry import make_versions, record_comparison

TRIES = int(os.environ.get("RETRAIN_RACE_TRIES", "90"))
# two processes, 40 forced promotions each: 80 contended moves a round, so two rounds are 160 tries
FORCED_ROUNDS = max(1, -(-TRIES // 80))
HEAD = "retrain.state.production"
SELF_MOVE = re.compile(r"production (\S+) -> \1 ")


class Harness:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.registry_harness"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, jobs: list[dict]) -> list[dict]:
        self.proc.stdin.write(json.dumps({"jobs": jobs}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["results"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def harness():
    h = Harness()
    yield h
    h.close()


@pytest.fixture(params=["sqlite", pytest.param("ci-server", marks=pytest.mark.server)])
def store(request, tracking) -> str:
    """The tracking URI the processes share (MLflow in this process pointed at it too)."""
    return request.getfixturevalue("ci_server") if request.param == "ci-server" else tracking


def overrides(name: str) -> list[str]:
    """The model `name`, and experiments of its own (a shared server holds other tests' runs)."""
    return [
        f"registry.model_name={name}",
        *(f"experiments.{kind}={name}-{kind}" for kind in ("training", "comparisons", "monitoring", "cycles")),
    ]


def job(store: str, cwd, name: str, *commands: list[str], kill_after: int | None = None) -> dict:
    sets = [arg for o in overrides(name) for arg in ("--set", o)]
    return {
        "cwd": str(cwd),
        "env": {"MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store},
        "kill_after": kill_after,
        "commands": [[*c, *sets] for c in commands],
    }


def registry(name: str) -> Registry:
    return Registry(load_settings(None, overrides(name)))


def model(name: str, versions: int = 3, production: tuple[str, ...] = ("1", "2")) -> Registry:
    """A registered model with real versions and production moved through `production`."""
    make_versions(versions, name)
    reg = registry(name)
    for v in production:
        reg.promote(v, force=True, reason="setup")
    return reg


def head(name: str) -> dict:
    return json.loads(MlflowClient().get_registered_model(name).tags[HEAD])


def assert_clean(results: list[dict], racing: bool = False) -> int:
    """No process died, no traceback, failures are one line with exit 4; returns the number of successes.
    `racing`: every process was alive, so no loser may be told to repair (issue 24: only to try again)."""
    successes = 0
    for r in results:
        assert r["signal"] is None, r
        text = r["stdout"] + r["stderr"]
        assert "Traceback" not in text and not SELF_MOVE.search(text), text
        assert not (racing and "--repair" in text), text
        for code in r["codes"]:
            # a code other than success or refusal: show the process's own last lines (the repr of `r` is cut)
            assert code in (0, 4), (code, r["stderr"].splitlines()[-5:], r["stdout"].splitlines()[-3:])
            successes += code == 0
        failures = [ln for ln in r["stderr"].splitlines() if ln.startswith("Error:")]
        assert len(failures) == r["codes"].count(4), r  # one line per refusal
    return successes


def assert_history_intact(name: str, first_seq: int) -> None:
    """Every recorded move applied, each starting where the previous one ended, production at the last."""
    reg = registry(name)
    state = reg.state()
    moves = list(reversed(reg.history(limit=1000)))
    assert [m.seq for m in moves] == list(range(1, state.head.seq + 1))
    assert all(not m.aborted for m in moves)
    for before, after in itertools.pairwise(moves):
        assert after.from_version == before.to_version, (before, after)
    assert state.production == state.head.production == moves[-1].to_version
    assert reg.status()["problems"] == []


def oracle_consistent(name: str) -> bool:
    """Consistency read from raw MLflow, independently of retrain's own diagnosis."""
    client = MlflowClient()
    m = client.get_registered_model(name)
    h = json.loads(m.tags[HEAD])
    pending = client.get_experiment_by_name(f"retrain-ledger/{name}/production/{h['seq'] + 1:010d}")
    alias = m.aliases.get("production")
    return pending is None and (None if alias is None else str(alias)) == h["production"]


# ---- races ---------------------------------------------------------------------------------------


def new_version(name: str) -> str:
    """One more real version of `name` (a run with a small artifact), as make_versions registers them."""
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_text(f"model of {run.info.run_id}", "model/weights.txt")
    return str(client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id).version)


def candidate(name: str, production: str, staging: bool = True) -> str:
    """A new version with a comparison against `production` that says promote (and alias staging)."""
    version = new_version(name)
    if staging:
        MlflowClient().set_registered_model_alias(name, "staging", version)
    comparison(name, version, production)
    return version


def comparison(name: str, candidate: str, incumbent: str) -> None:
    """The finished comparison run `record_comparison` writes (same tags and metrics, decision promote), in
    three calls instead of six: a try makes one or two of them on each store."""
    from mlflow.entities import Metric

    client = MlflowClient()
    run = client.create_run(
        comparisons_experiment(mlflow.get_tracking_uri()),
        tags={
            "retrain.model_name": name,
            "retrain.candidate_version": candidate,
            "retrain.incumbent_version": incumbent or "none",
            "retrain.decision": "promote",
            "retrain.reason": "test says promote",
            "retrain.as_of": "2026-03-01",
        },
    )
    at = run.info.start_time
    metrics = [Metric("staging_roc_auc", 0.85, at, 0), Metric("production_roc_auc", 0.80, at, 0)]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.set_terminated(run.info.run_id, "FINISHED")


@functools.cache
def comparisons_experiment(uri: str) -> str:
    """The id of experiment retrain-comparisons in the store at `uri`, created if missing (read once)."""
    client = MlflowClient(uri, uri)
    found = client.get_experiment_by_name("retrain-comparisons")
    return found.experiment_id if found is not None else client.create_experiment("retrain-comparisons")


def assert_round(name: str, seq: int, production: set[str] | None = None) -> dict:
    """After a round: the head moved to `seq`, production is one of `production`, nothing for status to report."""
    now = head(name)
    assert now["seq"] == seq and (production is None or now["production"] in production), (now, seq, production)
    assert registry(name).status()["problems"] == []
    return now


@pytest.mark.slow
def test_two_concurrent_promotions_of_the_same_candidate_succeed_once(harness, store, tmp_path):
    name = f"race-promote-{uuid.uuid4().hex[:6]}"
    model(name)
    now = head(name)
    for _ in range(TRIES):
        v = candidate(name, now["production"])
        results = harness.run([job(store, tmp_path, name, ["promote"]), job(store, tmp_path, name, ["promote"])])
        assert assert_clean(results, racing=True) == 1, results
        now = assert_round(name, now["seq"] + 1, {v})
    assert_history_intact(name, 3)


@pytest.mark.slow
def test_two_concurrent_promotions_of_different_candidates_succeed_once(harness, store, tmp_path):
    name = f"race-two-{uuid.uuid4().hex[:6]}"
    model(name)
    now = head(name)
    for _ in range(TRIES):
        a = candidate(name, now["production"], staging=False)
        b = candidate(name, now["production"], staging=False)
        results = harness.run(
            [
                job(store, tmp_path, name, ["promote", "--candidate", a]),
                job(store, tmp_path, name, ["promote", "--candidate", b]),
            ]
        )
        assert assert_clean(results, racing=True) == 1, results
        now = assert_round(name, now["seq"] + 1, {a, b})
    assert_history_intact(name, 3)


@pytest.mark.slow
def test_a_promotion_racing_a_rollback_never_loses_a_move(harness, store, tmp_path):
    name = f"race-mixed-{uuid.uuid4().hex[:6]}"
    model(name)
    now = head(name)
    outcomes = set()
    for _ in range(TRIES):
        candidate(name, now["production"])
        results = harness.run(
            [job(store, tmp_path, name, ["promote"]), job(store, tmp_path, name, ["rollback", "--reason", "race"])]
        )
        successes = assert_clean(results, racing=True)
        assert successes >= 1, results
        now = assert_round(name, now["seq"] + successes)  # where production is depends on the order
        outcomes.add(tuple(r["codes"][0] for r in results))
    assert_history_intact(name, 3)
    assert outcomes  # (which orders occurred is up to the scheduler)


@pytest.mark.slow
def test_forty_forced_promotions_from_each_of_two_processes_record_every_success(harness, store, tmp_path):
    for rep in range(FORCED_ROUNDS):
        name = f"race-many-{rep}-{uuid.uuid4().hex[:6]}"
        model(name, versions=4, production=("1",))
        jobs = [
            job(
                store,
                tmp_path,
                name,
                *[["promote", "--candidate", vs[i % 2], "--force", "--reason", who] for i in range(40)],
            )
            for vs, who in ((("2", "3"), "a"), (("4", "1"), "b"))
        ]
        results = harness.run(jobs)
        successes = assert_clean(results, racing=True)
        assert head(name)["seq"] == 1 + successes, (successes, head(name))
        assert_history_intact(name, 2)


# ---- kill -9 at every registry write ---------------------------------------------------------------


def _kill_scenario(harness, store, tmp_path, op: list[str], name: str, kill_after: int) -> bool:
    """Kill `op` before write `kill_after`+1, then promote, rollback, status, repair; False when op finished."""
    model(name)
    MlflowClient().set_registered_model_alias(name, "staging", "3")
    record_comparison("3", "2", name=name)
    (killed,) = harness.run([job(store, tmp_path, name, op, kill_after=kill_after)])
    if killed["signal"] is None:
        assert killed["codes"] == [0], killed
        return False
    assert killed["signal"] == 9
    consistent = oracle_consistent(name)
    # killed while writing the move's own run (after the move): the registry is consistent, but a run is left
    # RUNNING by a dead process, which status reports (exit 9) and repair marks KILLED
    left_running = _runs_left_running(name)
    (status,) = harness.run([job(store, tmp_path, name, ["status"])])
    assert status["codes"] == [0 if consistent and not left_running else 9], (kill_after, status)
    (after,) = harness.run(
        [job(store, tmp_path, name, ["promote"], ["rollback", "--reason", "after crash"], ["status"])]
    )
    assert_clean([{**after, "codes": after["codes"][:2]}])
    text = after["stdout"] + after["stderr"]
    if not consistent:  # both writers refused, naming the repair
        assert after["codes"] == [4, 4, 9] and text.count("retrain status --repair") >= 2, text
    else:
        assert after["codes"][2] == (9 if left_running else 0), text
    (repaired,) = harness.run([job(store, tmp_path, name, ["status", "--repair"], ["rollback"], ["status"])])
    assert repaired["codes"][0] == 0 and repaired["codes"][2] == 0, repaired
    assert "Traceback" not in repaired["stdout"] + repaired["stderr"]
    assert not SELF_MOVE.search(repaired["stdout"] + repaired["stderr"])
    assert_history_intact(name, 3)
    return True


def _runs_left_running(name: str) -> bool:
    """Whether a run of model `name` is still RUNNING (the harness's processes have all ended by now): one in the
    model's own experiments (`overrides`), or tagged with the model anywhere in the store. Other runs are not
    this scenario's: on CI's shared server, other tests' processes are running theirs meanwhile."""
    from mlflow.entities import ViewType

    client = MlflowClient()
    experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=5000)
    own = {e.experiment_id for e in experiments if e.name.startswith(f"{name}-")}
    ids = [e.experiment_id for e in experiments]
    running = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000) if ids else []
    return any(r.info.experiment_id in own or r.data.tags.get("retrain.model_name") == name for r in running)


@pytest.mark.slow
@pytest.mark.parametrize("op", [["promote"], ["rollback", "--reason", "killed"]], ids=["promote", "rollback"])
def test_kill_9_at_every_registry_write_is_never_silent(harness, store, tmp_path, op):
    kill_after = 0
    while _kill_scenario(harness, store, tmp_path, op, f"kill-{op[0]}-{kill_after}-{uuid.uuid4().hex[:6]}", kill_after):
        kill_after += 1
    assert kill_after >= 7  # every write was a kill point, then the operation ran through
