"""The pure parts of the registry: history replay, rollback targets, consistency problems."""

from __future__ import annotations

import json

import pytest

from retrain.errors import RegistryError
from retrain.registry import Move, find_problems, history_key, parse_history, rollback_target, serving_stack


def move(seq: int, frm: str | None, to: str, kind: str = "promote", aborted: bool = False) -> Move:
    return Move(seq, frm, to, f"2026-01-0{seq}T00:00:00Z", "me@host", kind, "r", None, aborted)


def test_history_round_trips_through_tags_in_sequence_order():
    moves = [move(2, "1", "2"), move(1, None, "1"), move(10, "2", "3")]
    tags = {history_key("production", m.seq): m.to_json() for m in moves}
    tags["other"] = "x"
    tags[history_key("staging", 1)] = move(1, None, "9").to_json()
    assert [m.seq for m in parse_history(tags, "production")] == [1, 2, 10]
    assert json.loads(tags[history_key("production", 10)])["to_version"] == "3"


def test_rollback_twice_walks_two_steps_back():
    moves = (move(1, None, "1"), move(2, "1", "2"), move(3, "2", "3"))
    assert rollback_target(moves, "3", None, False) == "2"
    moves += (move(4, "3", "2", "rollback"),)
    assert serving_stack(moves) == ["1", "2"]
    assert rollback_target(moves, "2", None, False) == "1"
    moves += (move(5, "2", "1", "rollback"),)
    with pytest.raises(RegistryError, match="no earlier production version"):
        rollback_target(moves, "1", None, False)


def test_aborted_moves_do_not_count():
    moves = (move(1, None, "1"), move(2, "1", "2", aborted=True))
    assert serving_stack(moves) == ["1"]
    with pytest.raises(RegistryError, match="no earlier"):
        rollback_target(moves, "1", None, False)


def test_rollback_to_a_version_that_never_served_needs_force():
    moves = (move(1, None, "1"), move(2, "1", "2"))
    assert rollback_target(moves, "2", "1", False) == "1"
    with pytest.raises(RegistryError, match="never served.*--force"):
        rollback_target(moves, "2", "5", False)
    assert rollback_target(moves, "2", "5", True) == "5"
    with pytest.raises(RegistryError, match="already production"):
        rollback_target(moves, "2", "2", True)
    with pytest.raises(RegistryError, match="not set"):
        rollback_target((), None, None, False)


def test_problems_name_each_disagreement_and_its_fix():
    moves = (move(1, None, "1"), move(2, "1", "2"))
    assert find_problems(moves, "2", {"1": True, "2": False}) == []
    (p,) = find_problems(moves, "1", {"1": False, "2": False})
    assert p.action == "abort_move" and p.target == "2" and "never applied" in p.what
    (p,) = find_problems(moves, "7", {"1": True, "2": True})
    assert p.action == "record_external" and p.target == "7"
    (p,) = find_problems(moves, None, {"1": True, "2": False})
    assert p.action == "set_alias" and p.target == "2"
    (p,) = find_problems(moves, "2", {"1": False, "2": False})
    assert p.action == "archive" and p.target == "1"
    (p,) = find_problems(moves, "2", {"1": True, "2": True})
    assert p.action == "unarchive" and p.target == "2"
    (p,) = find_problems((), "3", {})
    assert p.action == "record_external"
