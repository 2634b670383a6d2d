"""The history of production as `retrain history` pages through it: moves from the move log, newest first,
each with its state (applied, aborted, unfinished, unreadable, missing) and the versions since deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrain.ledger import Entry
from retrain.registry.access import RegisteredModel, entry_move
from retrain.registry.rules import Move


@dataclass(frozen=True)
class Logged:
    """One entry of the history as `history` shows it."""

    seq: int
    move: Move | None
    state: str  # applied | aborted | unfinished | unreadable | missing
    problem: str | None = None
    deleted: tuple[str, ...] = ()  # versions of this move that no longer exist


def history_page(model: RegisteredModel, limit: int = 20, before: int | None = None) -> list[Logged]:
    """Moves of production, newest first: at most `limit`, numbered below `before` if given."""
    view = model.read()
    head_seq = model.recorded_top(view)  # a head edited past the log does not invent missing moves
    entries: list[tuple[int, Entry | None]] = []
    if before is None:
        pending = model.ledger.get(head_seq + 1)
        entries = [(head_seq + 1, pending)] if pending is not None else []
        top = head_seq
    else:
        top = min(before - 1, head_seq)
    entries += model.ledger.page(top, limit - len(entries))
    out: list[Logged] = []
    exists: dict[str, bool] = {}
    for seq, entry in entries:
        if entry is None:
            if seq > head_seq:
                continue
            mirror = model.mirror_move(view.tags, seq)
            out.append(
                Logged(
                    seq,
                    mirror,
                    "missing" if mirror is None else "applied",
                    "not in the move log (removed by `mlflow gc`?)",
                )
            )
            continue
        move, problem = entry_move(entry)
        if move is None:
            out.append(Logged(seq, None, "unreadable", problem))
            continue
        state = "unfinished" if seq > head_seq else "aborted" if move.aborted else "applied"
        deleted = []
        for version in dict.fromkeys(v for v in (move.from_version, move.to_version) if v):
            if version not in exists:
                exists[version] = model.find_version(version) is not None
            if not exists[version]:
                deleted.append(version)
        out.append(Logged(seq, move, state, None, tuple(deleted)))
    return out


def history(model: RegisteredModel, limit: int = 20, before: int | None = None) -> list[Move]:
    """The readable moves of `history_page`, newest first."""
    return [entry.move for entry in history_page(model, limit, before) if entry.move is not None]
