"""Repair that never guesses (issue 24, part 3): the move log is the record. A head tag or mirror that disagrees
with it is rebuilt from it, behind or ahead; a deleted registered model is one line; a loser of a race is
told another move is in progress, not to repair. Real SQLite registry, no mocks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from retrain.config import load_settings
from retrain.ledger import Ledger
from retrain.registry import ABORTED, Registry
from tests.conftest import FAST, REPO
from tests.integration.test_registry import HEAD, NAME, aliases, invoke, make_versions, model_tags, one_line, ship


def edit_head(**changes) -> None:
    head = json.loads(model_tags()[HEAD])
    MlflowClient().set_registered_model_tag(NAME, HEAD, json.dumps({**head, **changes}))


def log_marks() -> dict[int, set[str]]:
    """Which entries of the move log carry which marks (aborted ...), read straight from MLflow."""
    ledger = Ledger(MlflowClient(), f"{NAME}/production")
    out, seq = {}, 1
    while (entry := ledger.get(seq)) is not None:
        out[seq] = set(entry.marks)
        seq += 1
    return out


def four_moves() -> Registry:
    """Production moved 1 -> 2 -> 3 -> 4: four applied moves, stack [1, 2, 3, 4]."""
    make_versions(4)
    reg = Registry(load_settings(None))
    ship(reg, "1", "2", "3", "4")
    return reg


def states(reg: Registry) -> list[tuple[int, str]]:
    return [(e.seq, e.state) for e in reg.history_page(50)]


def test_a_deleted_registered_model_is_one_line_and_nothing_is_written():
    four_moves()
    MlflowClient().delete_registered_model(NAME)
    for args in (["status"], ["status", "--repair"], ["status", "--json"]):
        out = invoke(*args)
        line = one_line(out)
        assert out.exit_code == 9, out.output
        assert f"registered model {NAME} does not exist" in line and "4 recorded moves" in line
        assert "retrain train" in line
    refused = invoke("rollback")
    assert refused.exit_code == 4 and "does not exist" in one_line(refused)
    assert log_marks() == {1: set(), 2: set(), 3: set(), 4: set()}  # the log is untouched


def test_a_re_created_registered_model_keeps_the_log_and_starts_afresh():
    four_moves()
    MlflowClient().delete_registered_model(NAME)
    make_versions(2)  # what `retrain train` does: create the registered model, register a version
    out = invoke("status")
    assert out.exit_code == 0, out.output
    assert "re-created" in out.output and "the next move is #5" in out.output
    assert invoke("status", "--repair").exit_code == 0
    assert log_marks() == {1: set(), 2: set(), 3: set(), 4: set()}
    reg = Registry(load_settings(None))
    assert states(reg) == [(4, "applied"), (3, "applied"), (2, "applied"), (1, "applied")]
    move = reg.promote("1", force=True, reason="first of the new model")
    assert (move.seq, move.from_version, move.to_version) == (5, None, "1")
    # versions 1-4 of the deleted model are not this model's: nothing to roll back to
    refused = invoke("rollback")
    assert refused.exit_code == 4 and "no earlier production version" in one_line(refused)
    assert invoke("status").exit_code == 0


def test_a_head_edited_back_is_rebuilt_from_the_log():
    reg = four_moves()
    edit_head(seq=2)
    out = invoke("status")
    assert out.exit_code == 9 and f"tag {HEAD}" in out.output, out.output
    refused = invoke("rollback")
    assert refused.exit_code == 4 and "retrain status --repair" in one_line(refused)
    fixed = invoke("status", "--repair")
    assert fixed.exit_code == 0, fixed.output
    assert ABORTED not in set().union(*log_marks().values())
    assert states(reg) == [(4, "applied"), (3, "applied"), (2, "applied"), (1, "applied")]
    back = invoke("rollback")
    assert back.exit_code == 0 and "production 4 -> 3" in back.output, back.output
    assert reg.history()[0].seq == 5


def test_a_head_copied_from_an_older_move_is_rebuilt_from_the_log():
    reg = four_moves()
    old = json.loads(reg.client.get_experiment_by_name(reg.ledger.name(2)).tags["retrain.record"])
    edit_head(seq=2, production="2", stack=["1", "2"], token=old["token"])  # exactly the head move #2 wrote
    assert invoke("status").exit_code == 9
    assert invoke("status", "--repair").exit_code == 0
    assert ABORTED not in set().union(*log_marks().values())
    assert json.loads(model_tags()[HEAD])["seq"] == 4
    assert reg.rollback().to_version == "3"


def test_a_head_edited_beyond_the_log_is_reported_and_rebuilt():
    reg = four_moves()
    edit_head(seq=99)
    out = invoke("status")
    assert out.exit_code == 9 and "#99" in out.output and "not in the move log" in out.output, out.output
    assert "(4 recorded moves of production)" in out.output
    history = invoke("history")
    assert history.exit_code == 0 and "missing" not in history.output and "99" not in history.output
    refused = invoke("promote", "--candidate", "1", "--force", "--reason", "x")
    assert refused.exit_code == 4 and "retrain status --repair" in one_line(refused)
    assert invoke("status", "--repair").exit_code == 0
    assert json.loads(model_tags()[HEAD])["seq"] == 4
    move = reg.promote("1", force=True, reason="after repair")
    assert move.seq == 5


def test_a_head_naming_the_wrong_production_follows_the_log():
    reg = four_moves()
    edit_head(production="2")  # the alias still says 4, as the log does
    out = invoke("status")
    assert out.exit_code == 9 and "moved outside retrain" not in out.output, out.output
    assert invoke("status", "--repair").exit_code == 0
    assert [m.kind for m in reg.history()] == ["force"] * 4  # no invented external move
    assert json.loads(model_tags()[HEAD])["production"] == "4" and aliases()["production"] == "4"
    assert reg.rollback().to_version == "3"


def test_an_alias_moved_by_hand_is_a_real_external_move_even_with_a_wrong_head():
    reg = four_moves()
    MlflowClient().set_registered_model_alias(NAME, "production", "2")  # moved in the UI
    edit_head(production="3")  # and the head edited too
    assert invoke("status").exit_code == 9
    assert invoke("status", "--repair").exit_code == 0
    latest = reg.history()[0]
    assert (latest.seq, latest.kind, latest.from_version, latest.to_version) == (5, "external", "4", "2")
    assert ABORTED not in set().union(*log_marks().values())


# ---- the loser of a race is told to wait, not to repair -------------------------------------------------


def stopped_mover(writes: int, tmp_path) -> subprocess.Popen:
    """A real `retrain promote` process that claimed move #3 and stopped itself (SIGSTOP) before registry
    write number `writes` + 1: alive, mid-move, as a slow mover is."""
    script = (
        "import signal, sys\n"
        "from tests.integration.registry_harness import install_killer\n"
        f"install_killer({writes}, signal.SIGSTOP)\n"
        "from retrain.cli import cli\n"
        "cli.main(args=['promote', '--candidate', '3', '--force', '--reason', 'slow mover'], prog_name='retrain')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for _ in range(600):  # a condition, not a duration: until the process reports itself stopped
        with open(f"/proc/{proc.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return proc
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("the mover never stopped")


@pytest.mark.slow
@pytest.mark.parametrize("writes", [1, 2], ids=["claimed", "alias-moved"])
def test_a_writer_racing_a_live_mover_is_told_to_wait_and_a_dead_one_to_repair(tmp_path, writes):
    make_versions(3)
    reg = Registry(load_settings(None))
    ship(reg, "1", "2")
    mover = stopped_mover(writes, tmp_path)
    try:
        for args in (["promote", "--candidate", "1", "--force", "--reason", "loser"], ["rollback"]):
            out = invoke(*args)
            line = one_line(out)
            assert out.exit_code == 4 and "in progress" in line and "move #3" in line, line
            assert "--repair" not in line
        os.kill(mover.pid, signal.SIGCONT)
        assert mover.wait(timeout=300) == 0, mover.stdout.read()
    finally:
        mover.kill()
    assert aliases()["production"] == "3" and invoke("status").exit_code == 0
    # the same, with the mover killed instead: nobody will finish it, so the writer names the repair
    ship(reg, "2")
    dead = stopped_mover(writes, tmp_path)
    dead.kill()
    dead.wait(timeout=60)
    out = invoke("promote", "--candidate", "1", "--force", "--reason", "after a crash")
    assert out.exit_code == 4 and "retrain status --repair" in one_line(out)
    assert invoke("status", "--repair").exit_code == 0 and aliases()["production"] == "3"


def test_a_recent_moves_tag_that_disagrees_with_the_log_is_rewritten_from_it():
    reg = four_moves()
    client = MlflowClient()
    for seq, version in ((4, "1"), (2, "4")):  # readable, but not what the log records
        key = f"retrain.history.production.{seq:06d}"
        client.set_registered_model_tag(NAME, key, json.dumps({**json.loads(model_tags()[key]), "to_version": version}))
    out = invoke("status")
    assert out.exit_code == 9 and "000004 disagrees with the move log" in out.output, out.output
    fixed = invoke("status", "--repair", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert {p["what"] for p in json.loads(fixed.output)["repaired"]} >= {
        "history tag retrain.history.production.000002 disagrees with the move log"
    }
    assert [json.loads(model_tags()[f"retrain.history.production.{s:06d}"])["to_version"] for s in (2, 4)] == ["2", "4"]
    assert reg.rollback().to_version == "3"


@pytest.mark.slow
def test_a_real_train_re_creates_a_deleted_model_and_no_recorded_move_is_aborted(stable_data):
    four_moves()
    MlflowClient().delete_registered_model(NAME)
    args = ["train", "--data", str(stable_data), "--as-of", "2026-02-20", "--json"]
    trained = invoke(*args, *(a for o in FAST for a in ("--set", o)))
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["version"]
    out = invoke("status")
    assert out.exit_code == 0 and "re-created" in out.output, out.output
    assert invoke("status", "--repair").exit_code == 0
    assert log_marks() == {1: set(), 2: set(), 3: set(), 4: set()}
    promoted = invoke("promote", "--candidate", version, "--force", "--reason", "the new model", "--json")
    assert promoted.exit_code == 0, promoted.output
    move = json.loads(promoted.stdout)
    assert (move["seq"], move["from_version"], move["to_version"]) == (5, None, version)
