"""Promotion, rollback, history, status and repair against a real SQLite registry.

Each test of a defect from issue 7 names the item it covers; each fails on the code before it.
"""

from __future__ import annotations

import json
from datetime import date

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from retrain.cli import cli
from retrain.config import load_settings
from retrain.errors import Refused, RegistryError
from retrain.registry import ARCHIVED, ROLLED_BACK, Registry

NAME = "churn-classifier"
HEAD = "retrain.state.production"
MIRROR = "retrain.history.production."
WRITES = {
    "create_experiment",
    "delete_experiment",
    "restore_experiment",
    "set_experiment_tag",
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "set_model_version_tag",
    "delete_model_version_tag",
}


def make_versions(n: int, name: str = NAME) -> list[str]:
    """Register `n` real versions, each from its own run with a small artifact."""
    client = MlflowClient()
    client.create_registered_model(name)
    versions = []
    for i in range(n):
        with mlflow.start_run() as run:
            mlflow.log_text(f"model {i}", "model/weights.txt")
        mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        versions.append(str(mv.version))
    return versions


def record_comparison(
    candidate: str,
    incumbent: str | None,
    decision: str = "promote",
    *,
    as_of: str = "2026-03-01",
    status: str = "FINISHED",
    name: str = NAME,
) -> str:
    """A comparison run carrying the tags `retrain evaluate` writes (decision made elsewhere)."""
    mlflow.set_experiment("retrain-comparisons")
    run = mlflow.start_run()
    mlflow.set_tags(
        {
            "retrain.model_name": name,
            "retrain.candidate_version": candidate,
            "retrain.incumbent_version": incumbent or "none",
            "retrain.decision": decision,
            "retrain.reason": f"test says {decision}",
            "retrain.as_of": as_of,
        }
    )
    mlflow.log_metrics({"staging_roc_auc": 0.85, "production_roc_auc": 0.80})
    mlflow.end_run(status)
    return run.info.run_id


@pytest.fixture
def settings():
    return load_settings(None)


def aliases() -> dict[str, str]:
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def model_tags() -> dict[str, str]:
    return dict(MlflowClient().get_registered_model(NAME).tags)


def version_tags(version: str) -> dict[str, str]:
    return dict(MlflowClient().get_model_version(NAME, version).tags)


def events(tmp_path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_line(result) -> str:
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    return result.output


def ship(reg: Registry, *versions: str) -> None:
    for v in versions:
        reg.promote(v, force=True, reason=f"ship {v}")


# ---- the basics ----------------------------------------------------------------------------------


def test_promote_needs_a_comparison_of_exactly_this_pair(settings):
    v1, v2, v3 = make_versions(3)
    reg = Registry(settings)
    with pytest.raises(RegistryError, match="no comparison of version 1"):
        reg.promote(v1)
    record_comparison(v1, None)
    first = reg.promote(v1)
    assert (first.from_version, first.to_version, first.kind) == (None, "1", "promote")
    record_comparison(v2, None)  # compared against "no production": stale now
    with pytest.raises(RegistryError, match="production moved since comparison"):
        reg.promote(v2)
    record_comparison(v3, v1, decision="keep")
    with pytest.raises(RegistryError, match="decided to keep production: test says keep"):
        reg.promote(v3)
    assert aliases() == {"production": "1"}
    run_id = record_comparison(v2, v1)
    second = reg.promote(v2)
    assert second.comparison_run_id == run_id and aliases()["production"] == "2"
    assert ARCHIVED in version_tags("1") and ARCHIVED not in version_tags("2")


def test_promote_bad_input_moves_nothing(settings):
    make_versions(2)
    reg = Registry(settings)
    with pytest.raises(RegistryError, match="no candidate: alias @staging"):
        reg.promote()
    with pytest.raises(RegistryError, match="has no version 99"):
        reg.promote("99")
    with pytest.raises(RegistryError, match="--force needs --reason"):
        reg.promote("1", force=True)
    reg.promote("1", force=True, reason="bootstrap")
    with pytest.raises(RegistryError, match="already @production"):
        reg.promote("1", force=True, reason="again")
    assert [m.to_version for m in reg.history()] == ["1"]


def test_rollback_walks_back_through_history_and_is_recorded(settings):
    make_versions(4)
    reg = Registry(settings)
    ship(reg, "1", "2", "3")
    MlflowClient().set_registered_model_alias(NAME, "staging", "4")
    assert reg.rollback(reason="bad metrics").to_version == "2"
    assert reg.rollback().to_version == "1"
    with pytest.raises(RegistryError, match="no earlier production version"):
        reg.rollback()
    with pytest.raises(RegistryError, match="never served"):
        reg.rollback("4")
    assert reg.rollback("4", force=True).to_version == "4"
    moves = reg.history()
    assert [(m.kind, m.from_version, m.to_version) for m in moves] == [
        ("rollback", "1", "4"),
        ("rollback", "2", "1"),
        ("rollback", "3", "2"),
        ("force", "2", "3"),
        ("force", "1", "2"),
        ("force", None, "1"),
    ]
    assert moves[-1].actor and moves[2].reason == "bad metrics"
    # the recent history is plain JSON in registered-model tags, readable by any MLflow client and the UI
    entries = [json.loads(v) for k, v in model_tags().items() if k.startswith(MIRROR)]
    assert len(entries) == 6 and {"from_version", "to_version", "at", "actor", "reason", "comparison_run_id"} <= set(
        entries[0]
    )
    assert "staging" not in aliases()  # it pointed at the version that went to production


def test_rollback_with_no_history_is_a_clear_error(settings):
    make_versions(1)
    with pytest.raises(RegistryError, match="production alias is not set"):
        Registry(settings).rollback()


def test_cli_promote_rollback_history_status(settings):
    make_versions(2)
    MlflowClient().set_registered_model_alias(NAME, "staging", "1")
    record_comparison("1", None)
    out = invoke("promote", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["to_version"] == "1"
    out = invoke("promote", "--candidate", "2")
    assert out.exit_code == 4 and "no comparison of version 2" in one_line(out)
    assert invoke("promote", "--candidate", "2", "--force", "--reason", "hotfix").exit_code == 0
    out = invoke("rollback", "--reason", "oops")
    assert out.exit_code == 0 and "production 2 -> 1" in out.output
    out = invoke("history", "--json")
    assert [m["to_version"] for m in json.loads(out.output)["moves"]] == ["1", "2", "1"]
    table = invoke("history").output
    assert "oops" in table and "hotfix" in table
    out = invoke("status")
    assert out.exit_code == 0 and "production  version 1" in out.output and "PROBLEM" not in out.output
    # each command left its run in the cycles experiment, created with its name, tags and description at once
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("retrain-cycles").experiment_id], order_by=["attributes.start_time ASC"]
    )
    names = [r.data.tags["mlflow.runName"] for r in runs]
    assert names == ["promote v- -> v1", "promote: REFUSED", "force v1 -> v2", "rollback v2 -> v1"], names
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED", "FINISHED", "FINISHED"]
    assert [r.data.tags.get("retrain.move_seq") for r in runs] == ["1", None, "2", "3"]
    assert [r.data.tags.get("retrain.move_kind") for r in runs] == ["promote", None, "force", "rollback"]
    assert all(r.data.tags["retrain.model_name"] == NAME and r.data.params["set"] == "none" for r in runs)
    notes = [r.data.tags["mlflow.note.content"] for r in runs]
    assert notes[2].startswith("## FORCE: production v1 -> v2 (move #2)") and "**Reason:** hotfix" in notes[2]
    assert notes[1].startswith("## REFUSED: promote") and "no comparison of version 2" in notes[1]
    assert "no comparison of version 2" in runs[1].data.tags["retrain.error"]


# ---- item 2: a rollback sticks ------------------------------------------------------------------


def test_a_version_production_was_rolled_back_from_is_refused_until_forced(settings, tmp_path):
    make_versions(2)
    reg = Registry(settings)
    record_comparison("1", None)
    reg.promote("1")
    record_comparison("2", "1")
    reg.promote("2")
    reg.rollback(reason="p95 latency doubled", actor="ops@pager")
    mark = json.loads(version_tags("2")[ROLLED_BACK])
    assert (mark["actor"], mark["reason"], mark["seq"]) == ("ops@pager", "p95 latency doubled", 3)
    record_comparison("2", "1")  # the scheduler's retry re-evaluates the same version: it passes again
    day = mark["at"][:10]
    with pytest.raises(Refused, match=f"v2 was rolled back on {day} by ops@pager: p95 latency doubled"):
        reg.promote("2")
    out = invoke("promote", "--candidate", "2")
    assert out.exit_code == 4 and "--force --reason" in one_line(out)
    assert invoke("promote", "--candidate", "2", "--force").exit_code == 4  # --force alone is not enough
    assert aliases()["production"] == "1"
    out = invoke("promote", "--candidate", "2", "--force", "--reason", "latency fixed upstream", "--json")
    assert out.exit_code == 0, out.output
    move = json.loads(out.output)
    assert move["kind"] == "force" and "p95 latency doubled" in move["overrode"]
    assert ROLLED_BACK not in version_tags("2") and aliases()["production"] == "2"


def test_promote_refuses_an_unfinished_older_or_other_as_of_comparison(settings):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1")
    record_comparison("2", "1", status="FAILED")
    with pytest.raises(Refused, match=r"did not finish \(status FAILED\)"):
        reg.promote("2")
    record_comparison("2", "1", as_of="2026-02-01")
    with pytest.raises(Refused, match="made for as-of 2026-02-01, not 2026-03-01"):
        reg.promote("2", as_of=date(2026, 3, 1))
    out = invoke("promote", "--candidate", "2", "--as-of", "2026-03-01")
    assert out.exit_code == 4 and "evaluate --as-of 2026-03-01" in one_line(out)
    # compared with version 1, then production went 1 -> 3 -> 1: same pair, but the comparison is stale
    record_comparison("2", "1")
    ship(reg, "3")
    reg.rollback()
    with pytest.raises(Refused, match="older than the last move of production"):
        reg.promote("2")
    record_comparison("2", "1")
    assert reg.promote("2", as_of=date(2026, 3, 1)).to_version == "2"


# ---- item 3: a crash is never hidden by the next command ------------------------------------------


class FaultyClient:
    """A real MlflowClient whose process 'dies' (raises) before registry write number `budget`."""

    def __init__(self, budget: int) -> None:
        self._client = MlflowClient()
        self.budget = budget

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            if self.budget == 0:
                raise KeyboardInterrupt("injected crash")  # not an Exception: nothing may catch it
            self.budget -= 1
            return attr(*args, **kwargs)

        return write


def test_a_promotion_killed_after_its_claim_blocks_every_writer_until_repaired(settings):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2")
    with pytest.raises(KeyboardInterrupt):
        Registry(settings, client=FaultyClient(1)).promote("3", force=True, reason="three")  # claim made, no more
    assert aliases()["production"] == "2"
    again = invoke("promote", "--candidate", "3", "--force", "--reason", "retry")
    assert again.exit_code == 4 and "retrain status --repair" in one_line(again)
    back = invoke("rollback")
    assert back.exit_code == 4 and "retrain status --repair" in one_line(back)
    out = invoke("status")
    assert out.exit_code == 9 and "move #3 (force 2 -> 3" in out.output and "never applied" in out.output
    fixed = invoke("status", "--repair", "--json")
    assert fixed.exit_code == 0 and json.loads(fixed.output)["consistent"]
    assert aliases()["production"] == "3"  # the claimed move is finished, exactly as recorded
    back = invoke("rollback")
    assert back.exit_code == 0 and "production 3 -> 2" in back.output
    assert [(m.seq, m.from_version, m.to_version) for m in reg.history()] == [
        (4, "3", "2"),
        (3, "2", "3"),
        (2, "1", "2"),
        (1, None, "1"),
    ]


@pytest.mark.parametrize("op", ["promote", "rollback"])
def test_a_crash_before_any_write_is_detected_and_repaired(settings, op):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2")
    MlflowClient().set_registered_model_alias(NAME, "staging", "3")
    budget = 0
    while True:
        seq_before = json.loads(model_tags()[HEAD])["seq"]
        faulty = Registry(settings, client=FaultyClient(budget))
        try:
            if op == "promote":
                faulty.promote("3", force=True, reason="three")
            else:
                faulty.rollback(reason="back", force=True)
        except KeyboardInterrupt:
            pass
        else:
            break
        assert aliases()["production"] in {"2", "3" if op == "promote" else "1"}
        problems = reg.problems()
        status = invoke("status")
        assert status.exit_code == (9 if problems else 0), status.output
        if any(p.blocking for p in problems):
            refused = invoke("promote", "--candidate", "1", "--force", "--reason", "x")
            assert refused.exit_code == 4 and "retrain status --repair" in one_line(refused)
        fixed = invoke("status", "--repair", "--json")
        assert fixed.exit_code == 0 and json.loads(fixed.output)["consistent"], fixed.output
        head = json.loads(model_tags()[HEAD])
        assert head["production"] == aliases()["production"]
        claimed = head["seq"] == seq_before + 1
        assert aliases()["production"] == ({"promote": "3", "rollback": "1"}[op] if claimed else "2")
        # put things back for the next crash point
        if claimed:
            reg.rollback("2", force=True, reason="reset")
        MlflowClient().set_registered_model_alias(NAME, "staging", "3")
        budget += 1
    assert budget >= 7  # every write of the move was a crash point


def test_a_legacy_history_damaged_by_a_crash_is_read_correctly(settings):
    """Registries written by retrain 0.1 keep their history in tags; item 3's damage must not survive."""
    make_versions(3)
    client = MlflowClient()

    def legacy(seq, frm, to, kind="promote", **extra):
        record = {
            "seq": seq,
            "from_version": frm,
            "to_version": to,
            "at": f"2026-01-0{seq}T00:00:00+00:00",
            "actor": "old@host",
            "kind": kind,
            "reason": f"legacy {seq}",
            "comparison_run_id": None,
            "aborted": False,
            **extra,
        }
        client.set_registered_model_tag(NAME, f"{MIRROR}{seq:06d}", json.dumps(record))

    legacy(1, None, "1")
    legacy(2, "1", "2", note="an extra key added by hand")
    legacy(3, "2", "3")  # killed before the alias moved
    legacy(4, "2", "3")  # promoted again without --repair
    legacy(5, "3", "3", kind="rollback")  # main printed "production 3 -> 3"
    client.set_registered_model_alias(NAME, "production", "3")
    reg = Registry(settings)
    out = invoke("status")
    assert out.exit_code == 0, out.output
    page = reg.history_page(10)
    assert [(e.seq, e.state) for e in page] == [
        (5, "aborted"),
        (4, "applied"),
        (3, "aborted"),
        (2, "applied"),
        (1, "applied"),
    ]
    assert HEAD in model_tags()
    move = reg.rollback()
    assert (move.seq, move.from_version, move.to_version) == (6, "3", "2")


def test_a_long_legacy_history_moves_into_the_log_keeping_every_move(settings):
    make_versions(2)
    client = MlflowClient()
    for seq in range(1, 26):
        frm, to = ("1", "2") if seq % 2 == 0 else ("2", "1")
        record = {
            "seq": seq,
            "from_version": None if seq == 1 else frm,
            "to_version": to,
            "at": "2026-01-01T00:00:00",
            "actor": "old@host",
            "kind": "force",
            "reason": f"legacy {seq}",
            "comparison_run_id": None,
            "aborted": False,
        }
        client.set_registered_model_tag(NAME, f"{MIRROR}{seq:06d}", json.dumps(record))
    client.set_registered_model_alias(NAME, "production", "1")
    reg = Registry(settings)
    assert [m.seq for m in reg.history(limit=30)] == list(range(25, 0, -1))
    assert len([k for k in model_tags() if k.startswith(MIRROR)]) == 20
    assert reg.rollback().to_version == "2"


# ---- item 4: deleted versions ----------------------------------------------------------------


def test_rollback_skips_a_deleted_version_and_says_so(settings, tmp_path):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2", "3")
    MlflowClient().delete_model_version(NAME, "2")
    out = invoke("status")
    assert out.exit_code == 0 and "version 2 served before and no longer exists: rollback skips it" in out.output
    with pytest.raises(RegistryError, match="has no version 2"):
        reg.rollback("2", force=True)
    assert json.loads(model_tags()[HEAD])["seq"] == 3  # nothing written
    out = invoke("rollback", "--reason", "bad")
    assert out.exit_code == 0 and "production 3 -> 1" in out.output and "skipped deleted versions 2" in out.output
    assert "skipped deleted versions 2" in events(tmp_path)[-1]["message"]
    history = invoke("history").output
    assert "[v2 deleted]" in history
    assert invoke("status").exit_code == 0


def test_a_deleted_production_version_is_reported_and_repaired(settings, tmp_path):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2", "3")
    MlflowClient().delete_model_version(NAME, "3")  # deletes its alias too
    out = invoke("status")
    assert out.exit_code == 9 and "production version 3 was deleted" in out.output
    refused = invoke("rollback")
    assert refused.exit_code == 4 and "production version 3 was deleted" in one_line(refused)
    assert "retrain status --repair" in refused.output
    fixed = invoke("status", "--repair")
    assert fixed.exit_code == 0, fixed.output
    assert aliases()["production"] == "2"
    latest = reg.history()[0]
    assert (latest.kind, latest.from_version, latest.to_version) == ("repair", "3", "2")
    assert events(tmp_path)[-1]["kind"] == "repaired"
    assert reg.rollback().to_version == "1"


def test_with_every_served_version_deleted_repair_records_that_nothing_serves(settings):
    make_versions(2)
    reg = Registry(settings)
    ship(reg, "1", "2")
    MlflowClient().delete_model_version(NAME, "1")
    MlflowClient().delete_model_version(NAME, "2")
    assert invoke("status", "--repair").exit_code == 0
    assert reg.state().production is None and reg.history()[0].to_version is None
    assert invoke("status").exit_code == 0


# ---- item 5: hand-edited tags -------------------------------------------------------------------


def test_a_hand_edited_history_tag_is_reported_and_skipped(settings):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2")
    client = MlflowClient()
    client.set_registered_model_tag(NAME, f"{MIRROR}000001", "{edited by hand")
    record = json.loads(model_tags()[f"{MIRROR}000002"])
    client.set_registered_model_tag(NAME, f"{MIRROR}000002", json.dumps({**record, "ticket": "OPS-1"}))
    out = invoke("status")
    assert out.exit_code == 9 and f"history tag {MIRROR}000001 is unreadable: not JSON" in out.output
    assert "000002" not in out.output  # an extra key is fine
    assert [m.seq for m in reg.history()] == [2, 1]  # the full log is elsewhere
    assert reg.promote("3", force=True, reason="x").seq == 3  # not a blocking problem
    assert invoke("status", "--repair").exit_code == 0
    assert json.loads(model_tags()[f"{MIRROR}000001"])["to_version"] == "1"


def test_a_hand_edited_head_blocks_writers_until_rebuilt(settings):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2")
    reg.rollback()
    MlflowClient().set_registered_model_tag(NAME, HEAD, "production=1")
    out = invoke("status")
    assert out.exit_code == 9 and f"tag {HEAD} is unreadable: not JSON" in out.output
    assert "(None recorded" not in out.output and "recorded moves unknown" in out.output
    refused = invoke("promote", "--candidate", "3", "--force", "--reason", "x")
    assert refused.exit_code == 4 and "retrain status --repair" in one_line(refused)
    assert invoke("history").exit_code == 0
    assert invoke("status", "--repair").exit_code == 0
    head = json.loads(model_tags()[HEAD])
    assert (head["seq"], head["production"], head["stack"]) == (3, "1", ["1"])
    MlflowClient().delete_registered_model_tag(NAME, HEAD)
    assert invoke("status").exit_code == 9
    assert invoke("status", "--repair").exit_code == 0 and json.loads(model_tags()[HEAD])["seq"] == 3


def test_an_unreadable_rolled_back_mark_still_refuses(settings):
    make_versions(2)
    reg = Registry(settings)
    ship(reg, "1")
    MlflowClient().set_model_version_tag(NAME, "2", ROLLED_BACK, "yes")
    record_comparison("2", "1")
    with pytest.raises(Refused, match="unreadable mark: yes"):
        reg.promote("2")


# ---- item 6: cost independent of the history's length ------------------------------------------


class CountingClient:
    def __init__(self) -> None:
        self._client = MlflowClient()
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def test_rollback_and_status_make_the_same_calls_with_a_short_and_a_long_history(settings):
    calls = {}
    for n_moves, name in ((22, "short"), (44, "long")):
        make_versions(2, name)
        s = load_settings(None, [f"registry.model_name={name}"])
        reg = Registry(s)
        for i in range(n_moves):
            reg.promote(str(i % 2 + 1), force=True, reason="x")
        counting = CountingClient()
        Registry(s, client=counting).rollback("1" if n_moves % 2 == 0 else "2", force=True)
        rollback_calls = list(counting.calls)
        counting.calls.clear()
        Registry(s, client=counting).status()
        calls[name] = (rollback_calls, list(counting.calls))
    assert calls["short"] == calls["long"], calls
    assert len(calls["long"][1]) <= 14


def test_history_pages_through_the_log(settings):
    make_versions(2)
    reg = Registry(settings)
    for i in range(7):
        reg.promote(str(i % 2 + 1), force=True, reason=f"move {i + 1}")
    out = invoke("history", "--limit", "3", "--json")
    page = json.loads(out.output)
    assert [m["seq"] for m in page["moves"]] == [7, 6, 5] and page["next_before"] == 5
    out = invoke("history", "--limit", "3", "--before", "5")
    assert "move 4" in out.output and "move 2" in out.output and "move 5" not in out.output
    assert "retrain history --before 2" in out.output


# ---- item 7: bounded texts ----------------------------------------------------------------------


def test_every_tag_written_stays_under_5000_characters(settings):
    make_versions(2)
    reg = Registry(settings)
    reason = "why " * 5000
    reg.promote("1", force=True, reason=reason)
    reg.promote("2", force=True, reason=reason)
    reg.rollback(reason=reason, actor="x" * 10_000)
    lengths = [len(v) for v in model_tags().values()]
    lengths += [len(v) for version in ("1", "2") for v in version_tags(version).values()]
    lengths += [len(v) for e in MlflowClient().search_experiments(view_type=3) for v in e.tags.values()]
    assert max(lengths) < 5000
    assert reg.history()[0].reason.endswith("...[truncated]")


# ---- item 8: exit codes -------------------------------------------------------------------------


def test_status_exits_9_on_problems_and_a_blocked_rollback_names_repair(settings):
    make_versions(3)
    reg = Registry(settings)
    ship(reg, "1", "2")
    MlflowClient().set_registered_model_alias(NAME, "production", "3")  # moved in the UI
    out = invoke("status", "--json")
    assert out.exit_code == 9 and not json.loads(out.output)["consistent"]
    refused = invoke("rollback")
    assert refused.exit_code == 4 and "moved outside retrain" in one_line(refused)
    assert "retrain status --repair" in refused.output
    assert "9 problems found" in invoke("status", "--help").output
    assert invoke("status", "--repair").exit_code == 0
    latest = reg.history()[0]
    assert (latest.kind, latest.from_version, latest.to_version) == ("external", "2", "3")
    assert reg.rollback().to_version == "2"


# ---- item 9: every move of production notifies ----------------------------------------------------


def test_promote_rollback_and_forced_moves_notify(settings, tmp_path):
    make_versions(2)
    record_comparison("1", None)
    assert invoke("promote", "--candidate", "1").exit_code == 0
    assert invoke("promote", "--candidate", "2", "--force", "--reason", "hotfix").exit_code == 0
    assert invoke("rollback", "--reason", "errors up").exit_code == 0
    sent = events(tmp_path)
    assert [e["kind"] for e in sent] == ["promoted", "promoted", "rolled_back"]
    assert sent[0]["message"] == "promoted churn-classifier v1 (roc_auc 0.850; first production model)"
    assert sent[1]["message"] == "promoted churn-classifier v2: forced: hotfix"
    assert sent[2]["message"] == "rolled back churn-classifier to v1 from v2: errors up"
    assert sent[2]["seq"] == 3 and sent[2]["actor"]


def test_a_broken_events_file_stops_a_move_before_it_writes(settings, tmp_path):
    make_versions(1)
    (tmp_path / "events-dir").mkdir()
    out = invoke(
        "promote",
        "--candidate",
        "1",
        "--force",
        "--reason",
        "x",
        "--set",
        f"notify.events_path={tmp_path / 'events-dir'}",
    )
    assert out.exit_code == 6 and "events-dir" in one_line(out)
    assert HEAD not in model_tags() and aliases() == {}


# ---- item 11: runs left RUNNING by a killed process -------------------------------------------------


@pytest.mark.slow
def test_runs_left_running_by_a_killed_process_are_listed_and_marked_killed(settings, tracking, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    script = (
        "import os, signal\n"
        "from retrain.tracking import step_run\n"
        "with step_run('retrain-training', 'train-killed'):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("retrain-training").experiment_id])
    assert run.info.status == "RUNNING"
    out = invoke("status")
    assert out.exit_code == 9 and f"run {run.info.run_id} is still RUNNING but its process" in out.output
    from retrain.tracking import step_run

    with step_run("retrain-training", "live") as live:  # this process is alive: its run is not stale
        assert invoke("status", "--repair").exit_code == 0
        assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(run.info.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_mlflow_run_promote_and_rollback_entry_points(settings, tmp_path, tracking):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    make_versions(2)
    reg = Registry(settings)
    reg.promote("1", force=True, reason="first")
    MlflowClient().set_registered_model_alias(NAME, "staging", "2")
    record_comparison("2", "1")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}

    def mlflow_run(entry: str, *params: str) -> None:
        cmd = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", entry, "--env-manager", "local"]
        for p in params:
            cmd += ["-P", p]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    mlflow_run("promote")
    assert aliases()["production"] == "2"
    mlflow_run("rollback", "reason=canary failed")
    assert aliases()["production"] == "1"
    latest = reg.history()[0]
    assert (latest.kind, latest.to_version, latest.reason) == ("rollback", "1", "canary failed")
