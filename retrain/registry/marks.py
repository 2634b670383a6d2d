"""The tags a move leaves on model versions (archived, rolled back) and on its log entry (aborted), and how a
version reads once a move is applied. Pure: values in, values out.
"""

from __future__ import annotations

import json
from typing import Any

import retrain.registry.rules as mv
from retrain.registry.rules import Move

ARCHIVED = "retrain.archived"
ROLLED_BACK = "retrain.rolled_back"
ABORTED = "retrain.aborted"


def rolled_back_mark(tags: dict[str, str]) -> str | None:
    """'was rolled back on <date> by <actor>: <reason>' if the version carries the mark, else None."""
    text = tags.get(ROLLED_BACK)
    if text is None:
        return None
    try:
        mark = json.loads(text)
        if not isinstance(mark, dict):
            raise ValueError
    except ValueError:
        return f"was rolled back (unreadable mark: {mv.bounded(text, 200)})"
    return (
        f"was rolled back on {str(mark.get('at', '?'))[:10]} by {mark.get('actor', 'unknown')}: "
        f"{mark.get('reason', 'no reason recorded')}"
    )


def version_changes(move: Move) -> dict[str, dict[str, str | None]]:
    """The version tags a move writes (None: deleted): the replaced version is archived (and marked rolled
    back from, by a rollback); the target loses both marks."""
    changes: dict[str, dict[str, str | None]] = {}
    if move.from_version:
        changes[move.from_version] = {ARCHIVED: move.at}
        if move.kind == "rollback":
            mark = {
                "at": move.at,
                "actor": move.actor,
                "reason": mv.bounded(move.reason, 1000),
                "seq": move.seq,
                "to": move.to_version,
            }
            changes[move.from_version][ROLLED_BACK] = json.dumps(mark, sort_keys=True)
    if move.to_version is not None:
        changes.setdefault(move.to_version, {}).update({ARCHIVED: None, ROLLED_BACK: None})
    return changes


def after_move(
    move: Move,
    version: str,
    tags: dict[str, str],
    aliases: Any,
    staging: str | None,
    production_alias: str,
    staging_alias: str,
) -> tuple[dict[str, str], set[str]]:
    """A version's tags and aliases once `move` is applied, from what they were before it."""
    tags = dict(tags)
    for key, value in version_changes(move).get(version, {}).items():
        if value is None:
            tags.pop(key, None)
        else:
            tags[key] = value
    aliases = set(aliases) - {production_alias}
    if version == move.to_version:
        aliases.add(production_alias)
        if staging == version:
            aliases.discard(staging_alias)
    return tags, aliases
