"""The rollout state's compare-and-set, proved with real concurrent processes and processes killed mid-write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from retrain.config import load_settings
from retrain.serving.rollout import Rollout
from retrain.serving.state import RolloutConflict, RolloutStore, tag_key
from tests.conftest import REPO

NAME = "churn-classifier"

# One writer: wait for the start file, then try to append its record after `expected` (exit 0 won, 4 lost).
# With KILL_AT=mirror it dies by SIGKILL exactly when it is about to mirror its claimed record into the tag.
WRITER = """
import os, signal, sys, time
from pathlib import Path
from retrain.config import load_settings
from retrain.serving.rollout import Rollout
from retrain.errors import RegistryError
from retrain.serving.state import RolloutStore

start, who, expected = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = RolloutStore(load_settings(None))
if os.environ.get("KILL_AT") == "mirror":
    real = store.client.set_registered_model_tag
    def die(*args, **kw):
        os.kill(os.getpid(), signal.SIGKILL)
    store.client.set_registered_model_tag = die
Path(str(start) + "-ready-" + who).touch()
while not start.exists():
    time.sleep(0.002)
record = Rollout("ab", "2", "1", 5.0, reason=who)
try:
    store.write(record, expected)
except RegistryError as exc:  # a conflict, or the store too busy to take the claim: either way nothing written
    print(type(exc).__name__, exc)
    sys.exit(4)
print("won", who)
"""


@pytest.fixture
def registered(tracking):
    client = MlflowClient()
    client.create_registered_model(NAME)
    for i in range(2):
        with mlflow.start_run() as run:
            mlflow.log_text(f"model {i}", "model/weights.txt")
        client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(NAME, "production", "1")
    return tracking


def _writers(
    tmp_path: Path, n: int, expected: int, round_: int, env: dict | None = None
) -> list[subprocess.CompletedProcess]:
    start = tmp_path / f"start-{round_}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(start), f"writer-{round_}-{i}", str(expected)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob(f"start-{round_}-ready-*"))) < n:  # every process imported and waits at the line
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.poll() for p in procs]
        time.sleep(0.05)
    start.touch()
    return [(p, p.communicate(timeout=120)[0]) for p in procs]


@pytest.mark.slow
def test_concurrent_writers_exactly_one_wins_each_round(registered, tmp_path):
    store = RolloutStore(load_settings(None))
    for round_, expected in enumerate((0, 1)):
        results = _writers(tmp_path, 4, expected, round_)
        codes = sorted(p.returncode for p, _ in results)
        if codes != [0, 4, 4, 4]:
            pytest.fail(f"exit codes {codes}:\n" + "\n----\n".join(out for _, out in results), pytrace=False)
        winner = next(out.split()[-1] for p, out in results if p.returncode == 0)
        latest = store.read()
        assert latest.seq == expected + 1 and latest.reason == winner
        losers = [out for p, out in results if p.returncode == 4]
        # a loser saw the winner's claim, or (SQLite under load) could not take a claim at all: never both writing
        assert all("nothing was written" in out for out in losers), losers
        assert any("changed while this command ran" in out for out in losers), losers
    assert [r.seq for r in store.history()] == [1, 2]


@pytest.mark.slow
def test_a_writer_killed_between_claim_and_mirror_leaves_a_record_the_next_read_completes(registered, tmp_path):
    store = RolloutStore(load_settings(None))
    [(process, out)] = _writers(tmp_path, 1, 0, 0, env={"KILL_AT": "mirror"})
    assert process.returncode == -9, out
    assert tag_key(1) not in MlflowClient().get_registered_model(NAME).tags  # died before the mirror
    latest = store.read()
    assert latest.seq == 1 and latest.reason == "writer-0-0"
    assert Rollout.from_json(MlflowClient().get_registered_model(NAME).tags[tag_key(1)]) == latest  # mirrored now
    with pytest.raises(RolloutConflict):
        store.write(Rollout("shadow", "2", "1", 100.0), 0)  # a writer that read before the crash
    assert store.write(Rollout("shadow", "2", "1", 100.0), 1).seq == 2
    # claims leave the UI: they are deleted experiments
    visible = [e.name for e in MlflowClient().search_experiments()]
    assert not [n for n in visible if n.startswith("retrain-ledger/")]


def test_a_stale_writer_is_refused_and_writes_nothing(registered):
    store = RolloutStore(load_settings(None))
    store.write(Rollout("ab", "2", "1", 5.0), 0)
    store.write(Rollout("ab", "2", "1", 10.0), 1)
    with pytest.raises(RolloutConflict, match=r"now record #2: ab active"):
        store.write(Rollout("ab", "2", "1", 50.0), 1)
    assert [r.share for r in store.history()] == [5.0, 10.0]
