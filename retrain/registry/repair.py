"""Repairing the registry: fixing what the audit finds, one blocking problem at a time. An unfinished move is
finished (the same writes its mover would have made), one that cannot be finished is aborted, an alias moved
outside retrain is recorded as a move, a lost head is rebuilt from the move log, bad mirrors are rewritten.
"""

from __future__ import annotations

import retrain.registry.audit as audit
import retrain.registry.rules as mv
from retrain.errors import Refused
from retrain.registry.access import RegisteredModel, View, entry_move, utc_now
from retrain.registry.marks import ARCHIVED
from retrain.registry.moves import abort_move, announce, apply_move, move_production
from retrain.registry.rules import Head, Move, Problem


def repair(model: RegisteredModel, actor: str | None = None) -> list[Problem]:
    """Fix what status finds, one blocking problem at a time (each fix changes what the next read shows)."""
    fixed: list[Problem] = []
    for _ in range(12):
        problems = audit.problems(model)
        if not problems:
            break
        blocking = [p for p in problems if p.blocking]
        for problem in blocking[:1] or problems:
            fix(model, problem, actor)
            fixed.append(problem)
    return fixed + sweep_mirrors(model)


def sweep_mirrors(model: RegisteredModel) -> list[Problem]:
    """Rewrite every recent-moves tag whose record differs from the move log's (repair only: a call per tag;
    status checks the head's own tag). A tag whose move the log no longer holds (`mlflow gc`) is kept."""
    view = model.read()
    fixed = []
    for key, text in sorted(view.tags.items()):
        suffix = key[len(model.mirror_prefix) :]
        if not key.startswith(model.mirror_prefix) or not suffix.isdigit():
            continue
        entry = model.ledger.get(int(suffix))
        move = entry_move(entry)[0] if entry is not None else None
        if move is None:
            continue
        try:
            same = mv.parse_move(text, int(suffix)).record() == move.record()
        except ValueError:
            same = False
        if not same:
            rewrite_mirror(model, key)
            fixed.append(Problem.stale_mirror(key, "disagrees with the move log"))
    return fixed


def fix(model: RegisteredModel, problem: Problem, actor: str | None) -> None:
    """Carry out the fix `rules.diagnose` chose for `problem` (its `action` on its `target`)."""
    from retrain.tracking import actor as who

    view = model.read()
    head = view.head or Head()
    actor = actor or who()
    name = model.name
    if problem.action == "complete":
        entry = model.ledger.get(int(problem.target))
        move, _ = entry_move(entry) if entry else (None, None)
        if entry is None or move is None:
            return
        apply_move(model, move, head, view, None)
        model.ledger.hide(entry)
        announce(model, move, {"kind": "repaired", "version": move.to_version, "reason": f"finished {move.describe()}"})
    elif problem.action == "abort":
        seq = int(problem.target)
        entry = model.ledger.get(seq)
        move, unreadable = entry_move(entry) if entry else (None, "missing")
        if move is None:
            move = Move(
                seq,
                head.production,
                head.production,
                utc_now(),
                actor,
                "repair",
                f"unreadable record ({unreadable}) aborted by `retrain status --repair`",
            )
        abort_move(model, move, head, problem.what, entry)
    elif problem.action in ("record_external", "replace_deleted"):
        external = problem.action == "record_external"
        to = problem.target or None
        reason = (
            "recorded by `retrain status --repair`: the alias was moved outside retrain"
            if external
            else f"by `retrain status --repair`: production version {head.production} was deleted"
        )
        try:
            move = move_production(model, view, to, "external" if external else "repair", reason, actor, notify=False)
        except Refused:
            return  # somebody else moved first: the next round re-reads
        announce(model, move, {"kind": "repaired", "version": to, "reason": reason})
    elif problem.action == "restore_alias":
        model.client.set_registered_model_alias(name, model.spec.production_alias, problem.target)
        announce(
            model,
            Move(head.seq, None, problem.target, utc_now(), actor, "repair", ""),
            {"kind": "repaired", "version": problem.target, "reason": "production alias restored"},
        )
    elif problem.action == "rebuild_head":
        rebuild_head(model, view)
    elif problem.action == "rewrite_mirror":
        rewrite_mirror(model, problem.target)
    elif problem.action == "archive":
        model.set_version_tag(problem.target, ARCHIVED, utc_now())
    elif problem.action == "unarchive":
        model.client.delete_model_version_tag(name, problem.target, ARCHIVED)
    elif problem.action == "kill_run":
        model.client.set_terminated(problem.target, "KILLED")


def rebuild_head(model: RegisteredModel, view: View) -> None:
    """Replay the whole move log into a new head (repair only: linear in the history). The log is the record:
    a head behind it, ahead of it or naming another production is replaced, and no move is marked or added.
    Moves `mlflow gc` removed from the log are read from their mirror tags where those remain."""
    top = model.mirror_top(view.tags)
    seq, log_moves = 1, []
    while True:
        entry = model.ledger.get(seq)
        if entry is None and seq > top:
            break
        move = entry_move(entry)[0] if entry else model.mirror_move(view.tags, seq)
        if move is not None:
            log_moves.append(move)
        seq += 1
    last = log_moves[-1] if log_moves else None
    if last is not None and not last.aborted and view.production != last.to_version:
        mirrored = model.mirror_move(view.tags, last.seq)
        if mirrored is None or mirrored.token != last.token:  # its mover never got past the alias: unfinished,
            log_moves = log_moves[:-1]  # it stays pending for the next round (finished or aborted as recorded)
    if log_moves and model.mirror_key(log_moves[-1].seq) not in view.tags:  # the head's move, for the UI and
        model.write_mirror(log_moves[-1], view.tags)  # for writers, which check the head against it
    model.client.set_registered_model_tag(model.name, model.head_key, mv.head_from(log_moves).to_json())


def rewrite_mirror(model: RegisteredModel, key: str) -> None:
    """Rewrite mirror tag `key` from the move log, or delete it if the log holds no such move."""
    suffix = key[len(model.mirror_prefix) :]
    entry = model.ledger.get(int(suffix)) if suffix.isdigit() else None
    move = entry_move(entry)[0] if entry else None
    if move is None:
        model.client.delete_registered_model_tag(model.name, key)
    else:
        model.client.set_registered_model_tag(model.name, key, move.to_json())
