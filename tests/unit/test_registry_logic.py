"""The pure parts of the registry: records read defensively, the head, rollback targets, diagnosis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from retrain.registry import rules as mv
from retrain.registry.audit import process_gone
from retrain.registry.marks import ARCHIVED, ROLLED_BACK, after_move, rolled_back_mark
from retrain.registry.rules import Head, Move, Pending, Snapshot, diagnose, parse_head, parse_move, replay_legacy
from retrain.store import bounded_http_retries, redact

HEAD_KEY = "retrain.state.production"


def move(seq: int, frm: str | None, to: str | None, kind: str = "promote", aborted: bool = False) -> Move:
    return Move(seq, frm, to, f"2026-01-{seq:02d}T00:00:00+00:00", "me@host", kind, "r", None, aborted, token=f"t{seq}")


def head_of(*moves: Move) -> Head:
    return mv.head_from(list(moves))


# ---- records: hand edits, unknown keys, size (items 5 and 7) -------------------------------------


def test_a_record_round_trips_and_unknown_keys_are_ignored():
    m = Move(3, "1", "2", "2026-01-01T00:00:00+00:00", "me@host", "force", "why", "abc", skipped=("7",), overrode="x")
    data = json.loads(m.to_json())
    assert parse_move(data, 3) == m
    data["added_by_hand"] = {"anything": 1}
    assert parse_move(json.dumps(data), 3) == m


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not JSON"),
        ('["a list"]', "not a JSON object"),
        ('{"seq": 1, "kind": "promote"}', "missing to_version"),
        ('{"seq": "one", "to_version": "1", "kind": "promote"}', "seq is 'one'"),
        ('{"seq": 2, "to_version": "1", "kind": "promote"}', "stored as move 1"),
        ('{"seq": 1, "to_version": "1", "kind": "teleport"}', "kind is 'teleport'"),
        ('{"seq": 1, "to_version": null, "kind": "promote"}', "to_version is None"),
        ('{"seq": 1, "to_version": {"v": 1}, "kind": "promote"}', "not a version number"),
    ],
)
def test_an_unreadable_record_says_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_move(text, 1)


def test_legacy_records_without_the_new_fields_are_read():
    legacy = {
        "seq": 4,
        "from_version": "1",
        "to_version": "2",
        "at": "t",
        "actor": "a",
        "kind": "rollback",
        "reason": "r",
        "comparison_run_id": None,
        "aborted": False,
    }
    m = parse_move(json.dumps(legacy), 4)
    assert (m.kind, m.from_version, m.to_version, m.token, m.skipped) == ("rollback", "1", "2", "", ())


def test_every_stored_text_stays_under_the_tag_limit():
    huge = "x" * 100_000
    m = Move(
        1,
        "1",
        "2",
        "t",
        huge,
        "force",
        huge,
        "c" * 32,
        host=huge,
        skipped=tuple(str(i) for i in range(500)),
        overrode=huge,
    )
    text = m.to_json()
    assert len(text) < 5000
    assert parse_move(text, 1).reason.endswith("...[truncated]")
    head = head_of(*[move(i, str(i - 1) if i > 1 else None, str(10**9 + i)) for i in range(1, 400)])
    assert len(head.stack) == mv.STACK_LIMIT and len(head.to_json()) < 5000


@pytest.mark.parametrize(
    "text, problem",
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"seq": -1}', "seq is -1"),
        ('{"seq": 1, "stack": "1,2"}', "stack is '1,2'"),
        ('{"seq": 1, "production": true}', "not a version"),
    ],
)
def test_an_unreadable_head_says_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_head(text)


def test_rolled_back_mark_reads_defensively():
    mark = json.dumps({"at": "2026-03-01T10:00:00+00:00", "actor": "ops@host", "reason": "bad latency"})
    assert rolled_back_mark({"retrain.rolled_back": mark}) == "was rolled back on 2026-03-01 by ops@host: bad latency"
    assert "unreadable mark" in rolled_back_mark({"retrain.rolled_back": "{oops"})
    assert rolled_back_mark({}) is None


# ---- the head and rollback -------------------------------------------------------------------------


def test_rollback_twice_walks_two_steps_back():
    head = head_of(move(1, None, "1"), move(2, "1", "2"), move(3, "2", "3"))
    assert head.stack == ("1", "2", "3") and mv.rollback_candidates(head) == ["2", "1"]
    head = head.after(move(4, "3", "2", "rollback"))
    assert head.stack == ("1", "2") and mv.rollback_candidates(head) == ["1"]
    head = head.after(move(5, "2", "1", "rollback"))
    assert mv.rollback_candidates(head) == [] and head.seq == 5 and head.production == "1"


def test_aborted_moves_count_but_never_serve():
    head = head_of(move(1, None, "1"), move(2, "1", "2", aborted=True))
    assert (head.seq, head.production, head.stack, head.moved_at) == (2, "1", ("1",), "2026-01-01T00:00:00+00:00")


def test_a_rollback_past_deleted_versions_pops_them_too():
    head = head_of(move(1, None, "1"), move(2, "1", "2"), move(3, "2", "3"))
    head = head.after(Move(4, "3", "1", "t", "a", "rollback", "r", skipped=("2",)))
    assert head.stack == ("1",)


def test_a_repair_with_nothing_left_to_serve_empties_production():
    head = head_of(move(1, None, "1")).after(move(2, "1", None, "repair"))
    assert head.production is None and head.stack == ()


def test_legacy_history_damaged_by_a_crash_is_replayed_without_the_move_that_never_happened():
    # item 3 on main: #3 recorded but never applied, #4 promoted again, #5 "rolled back" 3 -> 3
    legacy = [
        move(1, None, "1"),
        move(2, "1", "2"),
        move(3, "2", "3"),
        move(4, "2", "3"),
        move(5, "3", "3", "rollback"),
    ]
    replayed = replay_legacy(legacy, "3")
    assert [m.aborted for m in replayed] == [False, False, True, False, True]
    head = mv.head_from(replayed)
    assert head.production == "3" and mv.rollback_candidates(head) == ["2", "1"]
    # the last record was never applied when production still points at its origin
    assert [m.aborted for m in replay_legacy(legacy[:3], "2")] == [False, False, True]


# ---- diagnosis -------------------------------------------------------------------------------------


def diag(**kw) -> list[mv.Problem]:
    return diagnose(Snapshot(**kw), HEAD_KEY)


def test_a_consistent_registry_has_no_problems():
    head = head_of(move(1, None, "1"), move(2, "1", "2"))
    assert (
        diag(
            production="2",
            head=head,
            exists={"1": True, "2": True},
            archived={"1": True, "2": False},
            last_move=move(2, "1", "2"),
        )
        == []
    )
    assert diag(production=None, head=Head()) == []


def test_a_claimed_move_is_finished_whether_or_not_the_alias_moved():
    head = head_of(move(1, None, "1"))
    pending = Pending(2, move(2, "1", "2"))
    for production in ("1", "2"):
        (p,) = diag(production=production, head=head, pending=pending, exists={"2": True})
        assert p.action == "complete" and p.target == "2" and p.blocking


def test_a_claimed_move_that_cannot_be_finished_is_aborted():
    head = head_of(move(1, None, "1"))
    (p,) = diag(production="1", head=head, pending=Pending(2, move(2, "1", "2")), exists={"2": False})
    assert p.action == "abort" and "no longer exists" in p.what
    (p,) = diag(production="1", head=head, pending=Pending(2, None, "tag retrain.record is not JSON"))
    assert p.action == "abort" and "unreadable" in p.what
    (p,) = diag(production="7", head=head, pending=Pending(2, move(2, "1", "2")), exists={"2": True})
    assert p.action == "abort" and "neither its origin nor its target" in p.what
    (p,) = diag(production="1", head=head, pending=Pending(2, move(2, "5", "2")), exists={"2": True})
    assert p.action == "abort" and "starts from version 5" in p.what


def test_alias_problems_name_their_fix():
    head = head_of(move(1, None, "1"), move(2, "1", "2"))
    (p,) = diag(production="7", head=head)
    assert p.action == "record_external" and p.target == "7" and "outside retrain" in p.what
    (p,) = diag(production=None, head=head, exists={"2": True})
    assert p.action == "restore_alias" and p.target == "2"
    (p,) = diag(production=None, head=head, exists={"2": False}, fallback="1")
    assert p.action == "replace_deleted" and p.target == "1" and "was deleted" in p.what
    (p,) = diag(production=None, head=head, exists={"2": False}, fallback=None)
    assert p.action == "replace_deleted" and p.target == "" and "no earlier production version" in p.fix
    (p,) = diag(production="3", head=Head())
    assert p.action == "record_external"
    (p,) = diag(production="3", head=None, head_problem="is unreadable: not JSON")
    assert p.action == "rebuild_head" and HEAD_KEY in p.what


def test_tag_problems_do_not_block_writers():
    head = head_of(move(1, None, "1"), move(2, "1", "2"))
    problems = diag(
        production="2",
        head=head,
        exists={"1": True, "2": True},
        archived={"1": False, "2": True},
        last_move=move(2, "1", "2"),
        mirror_problems=(("retrain.history.production.000001", "not JSON"),),
        stale_runs=(("abc", "its process 12 on this host is gone"),),
    )
    assert [(p.action, p.blocking) for p in problems] == [
        ("unarchive", False),
        ("archive", False),
        ("rewrite_mirror", False),
        ("kill_run", False),
    ]


def test_a_head_that_disagrees_with_the_move_log_is_rebuilt_from_it_before_anything_else():
    """Issue 24.3: the log is the record; the head is rebuilt from it, never a move aborted or invented."""
    m1, m2, m3, m4 = move(1, None, "1"), move(2, "1", "2"), move(3, "2", "3"), move(4, "3", "4")
    head = head_of(m1, m2, m3, m4)
    base = {"production": "4", "exists": {"3": True, "4": True}}
    assert diag(head=head, head_move=m4, log_production=(4, "4"), **base) == []
    cases = {
        "not in the move log": {"head": replace(head, seq=99), "head_unrecorded": True},
        "token of another move": {"head": replace(head, seq=2), "head_move": m2},
        "set 4": {"head": replace(head, production="2"), "head_move": m4, "log_production": (4, "4")},
        "the tag is behind": {
            "head": head_of(m1, m2),
            "head_move": m2,
            "pending": Pending(3, m3),
            "beyond": 4,
        },
    }
    for words, kw in cases.items():
        (p,) = diag(**{**base, **kw})
        assert p.action == "rebuild_head" and p.blocking and words in p.what, (words, p)
    # an alias that disagrees with the log's last applied move is a real move: recorded, not rebuilt
    (p,) = diag(head=head, head_move=m4, log_production=(4, "4"), production="2", exists={"2": True})
    assert p.action == "record_external" and p.target == "2"


# ---- runs left RUNNING (item 11) ----------------------------------------------------------------


def test_a_run_whose_process_is_gone_is_stale():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    now_ms = int(time.time() * 1000)
    here = socket.gethostname()
    assert "is gone" in process_gone(here, str(child.pid), now_ms - 5000, 24)
    assert process_gone(here, str(os.getpid()), now_ms, 24) is None
    # a pid that belongs to a process started after the run is a re-used pid
    assert "newer process" in process_gone(here, str(os.getpid()), now_ms - 10**9, 24)
    assert process_gone("elsewhere", "1", now_ms - 3_600_000, 24) is None
    assert "counts as dead" in process_gone("elsewhere", "1", now_ms - 30 * 3_600_000, 24)
    assert "records no host" in process_gone(None, None, now_ms - 30 * 3_600_000, 24)


# ---- tracking server addresses and HTTP retries (item 10) ---------------------------------------


def test_uris_are_shown_without_credentials():
    assert (
        redact("https://alice:s3cret@mlflow.example.com:5000/path?token=abc")
        == "https://alice:***@mlflow.example.com:5000/path?token=***"
    )
    assert redact("postgresql://u:p@db/mlflow") == "postgresql://u:***@db/mlflow"
    assert redact("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"


def test_http_retries_are_bounded_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    with bounded_http_retries():
        from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2 and MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


# ---- calls to the store: contention retried, everything else one line (items 1 and 10) --------------


class Flaky:
    """Stands in for MlflowClient: raises the given errors first, then answers."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_registered_model(self, name: str) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return name


def test_lock_contention_is_retried_and_other_failures_become_one_line():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    from retrain.errors import RegistryError, ServiceError
    from retrain.store import GuardedClient

    locked = MlflowException("(sqlite3.OperationalError) database is locked", error_code=TEMPORARILY_UNAVAILABLE)
    flaky = Flaky([locked, locked])
    assert GuardedClient(flaky, first_wait_s=0.001).get_registered_model("m") == "m" and flaky.calls == 3
    with pytest.raises(MlflowException) as missing:
        GuardedClient(
            Flaky([MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST)])
        ).get_registered_model("m")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"  # an answer, passed on for the caller to read
    with pytest.raises(RegistryError, match=r"failed \(get_registered_model\): API request failed with 401$"):
        GuardedClient(Flaky([MlflowException("API request failed with 401\nResponse body: ...")])).get_registered_model(
            "m"
        )
    flaky = Flaky([locked] * 10)
    with pytest.raises(ServiceError, match="database is locked"):  # still locked after the retries: exit 7
        GuardedClient(flaky, attempts=4, first_wait_s=0.001).get_registered_model("m")
    assert flaky.calls == 4
    with pytest.raises(RegistryError, match="ConnectionResetError$"):
        GuardedClient(Flaky([ConnectionResetError()])).get_registered_model("m")


def test_after_move_gives_the_tags_and_aliases_a_move_leaves():
    move = Move(4, "2", "1", "2026-03-01T00:00:00.000+00:00", "ana", "rollback", "accuracy fell", token="t")
    tags, aliases = after_move(
        move, "2", {"retrain.metrics": "{}"}, ["production", "shadow"], None, "production", "staging"
    )
    assert aliases == {"shadow"} and tags[ARCHIVED] == move.at and json.loads(tags[ROLLED_BACK])["to"] == "1"
    tags, aliases = after_move(
        move, "1", {ARCHIVED: "x", ROLLED_BACK: "{}", "k": "v"}, ["staging"], "1", "production", "staging"
    )
    assert tags == {"k": "v"} and aliases == {"production"}
    promote = replace(move, kind="promote", from_version=None, to_version="3")
    tags, aliases = after_move(promote, "3", {}, ["staging"], "2", "production", "staging")
    assert aliases == {"production", "staging"} and tags == {}  # staging pointed elsewhere: untouched


def test_the_loops_bounds_are_looser_and_an_enclosing_commands_win(monkeypatch):
    from retrain.store import HTTP_BOUNDS, LOOP_HTTP_BOUNDS

    for key in HTTP_BOUNDS:
        monkeypatch.delenv(key, raising=False)
    with bounded_http_retries(LOOP_HTTP_BOUNDS):
        assert {k: os.environ[k] for k in LOOP_HTTP_BOUNDS} == LOOP_HTTP_BOUNDS
    with bounded_http_retries(), bounded_http_retries(LOOP_HTTP_BOUNDS):  # fail_fast outside settings_options
        assert {k: os.environ[k] for k in HTTP_BOUNDS} == HTTP_BOUNDS
    assert not any(k in os.environ for k in HTTP_BOUNDS)
    assert (
        int(LOOP_HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"]) < 120
        and int(HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) < 7
    )


def test_mlflows_run_links_are_off_only_while_a_uri_with_secrets_is_in_use(monkeypatch):
    from retrain.store import no_run_links_with_secrets

    key = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    monkeypatch.delenv(key, raising=False)
    with no_run_links_with_secrets(["http://127.0.0.1:5000"]):
        assert key not in os.environ
    with no_run_links_with_secrets(["sqlite:///x.db", "http://u:pw@127.0.0.1:5000"]):
        assert os.environ[key] == "true"
    assert key not in os.environ  # not left behind for later commands or the processes they start
    monkeypatch.setenv(key, "false")  # the user's choice stands
    with no_run_links_with_secrets(["http://u:pw@127.0.0.1:5000"]):
        assert os.environ[key] == "false"
