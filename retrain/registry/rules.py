"""Pure logic of the production history: move records, the head state, rollback targets, diagnosis.

No I/O here: the rest of `retrain.registry` reads the registry into these values and writes what they decide.
Every record read from the registry goes through `parse_move` / `parse_head`, which ignore unknown
keys and raise ValueError naming what is wrong, so a hand-edited tag is reported, never a crash.
Every text stored is bounded (`bounded`) so each tag value stays under MLflow's 5,000-character
column limit (SQLite accepts more; PostgreSQL and MySQL reject it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, overload

TAG_LIMIT = 5000
REASON_LIMIT = 1000
NAME_LIMIT = 200
STACK_LIMIT = 100  # versions kept for rollback; older ones are only in the move log
MIRRORS = 20  # most recent moves mirrored as registered-model tags for the MLflow UI
KINDS = ("promote", "force", "rollback", "external", "repair")


def bounded(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


@overload
def _version(value: Any, key: str, optional: Literal[False]) -> str: ...
@overload
def _version(value: Any, key: str, optional: bool) -> str | None: ...
def _version(value: Any, key: str, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError(f"{key} is {value!r}, not a version number")
    return str(value)


@dataclass(frozen=True)
class Move:
    """One move of the production alias, as claimed in the move log."""

    seq: int
    from_version: str | None
    to_version: str | None  # None only for a repair that found no version left to serve
    at: str
    actor: str
    kind: str  # promote | force | rollback | external | repair
    reason: str
    comparison_run_id: str | None = None
    aborted: bool = False
    token: str = ""
    host: str = ""
    pid: int = 0
    skipped: tuple[str, ...] = ()  # deleted versions a rollback passed over
    overrode: str | None = None  # the rolled-back mark a forced promotion overrode

    def record(self) -> dict[str, Any]:
        """The JSON-ready record, every text bounded."""
        data = asdict(self)
        data.update(
            v=2,
            reason=bounded(self.reason, REASON_LIMIT),
            actor=bounded(self.actor, NAME_LIMIT),
            host=bounded(self.host, NAME_LIMIT),
            skipped=list(self.skipped[:20]),
            overrode=bounded(self.overrode, REASON_LIMIT) if self.overrode else None,
        )
        return data

    def to_json(self) -> str:
        text = json.dumps(self.record(), sort_keys=True)
        assert len(text) < TAG_LIMIT, len(text)
        return text

    def describe(self) -> str:
        return (
            f"move #{self.seq} ({self.kind} {self.from_version or '(none)'} -> {self.to_version or '(none)'} "
            f"by {self.actor} at {self.at[:19]})"
        )


def _object(data: Any) -> dict[str, Any]:
    """A JSON object from its text (or as is); ValueError naming what it is instead."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def parse_move(data: Any, seq: int | None = None) -> Move:
    """A Move from a record (JSON text or decoded); ValueError naming the problem. Unknown keys are ignored."""
    data = _object(data)
    missing = [k for k in ("seq", "to_version", "kind") if k not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if isinstance(data["seq"], bool) or not isinstance(data["seq"], int) or data["seq"] < 1:
        raise ValueError(f"seq is {data['seq']!r}, not a positive integer")
    if seq is not None and data["seq"] != seq:
        raise ValueError(f"seq is {data['seq']} but the record is stored as move {seq}")
    kind = data["kind"]
    if kind not in KINDS:
        raise ValueError(f"kind is {kind!r}, not one of {', '.join(KINDS)}")
    skipped = data.get("skipped") or ()
    if not isinstance(skipped, (list, tuple)):
        raise ValueError(f"skipped is {skipped!r}, not a list")
    pid = data.get("pid") or 0
    return Move(
        seq=data["seq"],
        from_version=_version(data.get("from_version"), "from_version", True),
        to_version=_version(data["to_version"], "to_version", kind == "repair"),
        at=str(data.get("at") or ""),
        actor=str(data.get("actor") or "unknown"),
        kind=kind,
        reason=str(data.get("reason") or ""),
        comparison_run_id=data.get("comparison_run_id") or None,
        aborted=data.get("aborted") is True,
        token=str(data.get("token") or ""),
        host=str(data.get("host") or ""),
        pid=pid if isinstance(pid, int) else 0,
        skipped=tuple(str(v) for v in skipped),
        overrode=data.get("overrode") or None,
    )


@dataclass(frozen=True)
class Head:
    """The current state in one tag: last move number, production, and the versions rollback returns to."""

    seq: int = 0
    production: str | None = None
    stack: tuple[str, ...] = ()  # versions that served, oldest first; the last is production
    moved_at: str = ""  # when production last actually moved
    token: str = ""  # token of move `seq`, so its owner recognises its own completed move

    def to_json(self) -> str:
        text = json.dumps(
            {
                "v": 2,
                "seq": self.seq,
                "production": self.production,
                "stack": list(self.stack),
                "moved_at": self.moved_at,
                "token": self.token,
            },
            sort_keys=True,
        )
        assert len(text) < TAG_LIMIT, len(text)
        return text

    def after(self, move: Move) -> Head:
        """The head once `move` is resolved: applied, or (if aborted) only counted."""
        if move.aborted:
            return replace(self, seq=move.seq, token=move.token)
        return Head(move.seq, move.to_version, next_stack(self.stack, move), move.at, move.token)


def parse_head(text: str) -> Head:
    data = _object(text)
    seq = data.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq is {seq!r}, not a non-negative integer")
    stack = data.get("stack", [])
    if not isinstance(stack, list):
        raise ValueError(f"stack is {stack!r}, not a list")
    return Head(
        seq,
        _version(data.get("production"), "production", True),
        tuple(_version(v, "stack entry", False) for v in stack),
        str(data.get("moved_at") or ""),
        str(data.get("token") or ""),
    )


def next_stack(stack: tuple[str, ...], move: Move) -> tuple[str, ...]:
    """Promotions push; a rollback (or repair) to a version in the stack pops back to it."""
    items = list(stack)
    if move.to_version is None:
        if items and items[-1] == move.from_version:
            items.pop()
    elif move.kind in ("rollback", "repair") and move.to_version in items:
        while items[-1] != move.to_version:
            items.pop()
    else:
        items.append(move.to_version)
    return tuple(items[-STACK_LIMIT:])


def rollback_candidates(head: Head) -> list[str]:
    """Versions a rollback may return to, most recent first (the caller skips deleted ones)."""
    if not head.stack or head.stack[-1] != head.production:
        return []
    return [v for v in reversed(head.stack[:-1]) if v != head.production]


# ---- legacy history (retrain <= 0.1: one registered-model tag per move, no head) ---------------


def replay_legacy(moves: list[Move], production: str | None) -> list[Move]:
    """Legacy moves with `aborted` set where a move was recorded but never applied.

    Old versions wrote the record before moving the alias, so a crash left a record whose successor
    starts from the same version (the item-3 damage: `production 3 -> 3`). Such a record, and a
    move of a version to itself, is marked aborted; the last record is aborted when production
    still points at its origin.
    """
    out: list[Move] = []
    current: str | None = None
    last_applied: int | None = None  # index in `out`
    for move in sorted(moves, key=lambda m: m.seq):
        if move.aborted or move.to_version == move.from_version:
            out.append(replace(move, aborted=True))
            continue
        if last_applied is not None and move.from_version != current:
            previous = out[last_applied]
            if move.from_version == previous.from_version:
                out[last_applied] = replace(previous, aborted=True)
                current = previous.from_version
        out.append(move)
        last_applied = len(out) - 1
        current = move.to_version
    if last_applied is not None:
        last = out[last_applied]
        if production is not None and production != last.to_version and production == last.from_version:
            out[last_applied] = replace(last, aborted=True)
    return out


def head_from(moves: list[Move]) -> Head:
    head = Head()
    for move in sorted(moves, key=lambda m: m.seq):
        head = head.after(move)
    return head


# ---- diagnosis ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A disagreement between alias, head, move log and tags, and what `--repair` does about it."""

    what: str
    fix: str
    action: str
    target: str = ""
    blocking: bool = True  # writing commands refuse until it is repaired

    @classmethod
    def stale_mirror(cls, key: str, what: str) -> Problem:
        """A recent-moves tag (`key`) that does not tell its move as the move log does: rewritten, never blocking."""
        fix = f"rewrite {key} from the move log"
        return cls(f"history tag {key} {what}", fix, "rewrite_mirror", key, blocking=False)


@dataclass(frozen=True)
class Pending:
    """A claimed move past the head: finished by nobody yet (its mover is running, or died)."""

    seq: int
    move: Move | None
    problem: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything `diagnose` needs, read with a fixed number of calls."""

    production: str | None  # the alias
    head: Head | None
    head_problem: str | None = None  # the head tag is unreadable (or missing while moves exist)
    pending: Pending | None = None
    exists: dict[str, bool] = field(default_factory=dict)  # versions looked up -> still exist?
    archived: dict[str, bool] = field(default_factory=dict)  # versions looked up -> tagged archived?
    last_move: Move | None = None
    fallback: str | None = None  # newest earlier production version that still exists
    mirror_problems: tuple[tuple[str, str], ...] = ()
    stale_runs: tuple[tuple[str, str], ...] = ()  # (run id, why we think its process is gone)
    head_move: Move | None = None  # the move log's record of move head.seq
    head_unrecorded: bool = False  # the head names a move neither the log nor its mirror tag records
    log_production: tuple[int, str | None] | None = None  # (k, version) of the log's last applied move <= head.seq
    beyond: int | None = None  # a claimed entry past the pending one: the head is behind the log


def diagnose(s: Snapshot, head_key: str) -> list[Problem]:
    """Every problem in the snapshot; blocking ones first (they are repaired one at a time)."""
    problems = _structure(s, head_key)
    if not problems and s.head is not None and s.production is not None:
        problems += _version_tags(s)
    problems += [Problem.stale_mirror(key, what) for key, what in s.mirror_problems]
    for run_id, why in s.stale_runs:
        problems.append(
            Problem(
                f"run {run_id} is still RUNNING but {why}",
                f"mark run {run_id} KILLED",
                "kill_run",
                run_id,
                blocking=False,
            )
        )
    return problems


def _structure(s: Snapshot, head_key: str) -> list[Problem]:
    if s.head is None:
        if s.head_problem:
            return [
                Problem(f"tag {head_key} {s.head_problem}", f"rebuild {head_key} from the move log", "rebuild_head")
            ]
        if s.production is not None:
            return [
                Problem(
                    f"production is version {s.production} but no move is recorded",
                    f"record an external move to version {s.production}",
                    "record_external",
                    s.production,
                )
            ]
        return []
    head = s.head
    disagreement = head_disagrees(s)
    if disagreement is not None:
        return [
            Problem(
                f"tag {head_key} {disagreement}",
                f"rebuild {head_key} from the move log (moves stay as recorded)",
                "rebuild_head",
            )
        ]
    if s.pending is not None:
        return [_pending(s, head, s.pending)]
    if s.production == head.production:
        return []
    if s.production is None:
        assert head.production is not None
        if s.exists.get(head.production, True):
            return [
                Problem(
                    f"the production alias was removed; the last move (#{head.seq}) set version {head.production}",
                    f"point production at version {head.production} again",
                    "restore_alias",
                    head.production,
                )
            ]
        target = (
            f"version {s.fallback}, the newest earlier production version that still exists"
            if s.fallback
            else "nothing (no earlier production version still exists): record that"
        )
        return [
            Problem(
                f"production version {head.production} was deleted (its alias went with it)",
                f"move production to {target}",
                "replace_deleted",
                s.fallback or "",
            )
        ]
    return [
        Problem(
            f"production is version {s.production} but the last recorded move (#{head.seq}) set "
            f"{head.production or '(none)'}: it was moved outside retrain",
            f"record an external move {head.production or '(none)'} -> {s.production}",
            "record_external",
            s.production,
        )
    ]


def head_disagrees(s: Snapshot) -> str | None:
    """How the head tag disagrees with the move log, if it does: the log is the record, so the head is what
    gets rebuilt (behind or ahead of the log, another move's token, another production)."""
    head = s.head
    assert head is not None
    if s.head_unrecorded:
        return f"names move #{head.seq}, which is not in the move log (the tag was edited)"
    move = s.head_move
    if move is not None and head.token and move.token and head.token != move.token:
        return f"names move #{head.seq} but carries the token of another move (the tag was edited)"
    if s.log_production is not None and s.log_production[1] != head.production:
        seq, version = s.log_production
        return (
            f"says production is version {head.production or '(none)'}, but the move log's last applied move "
            f"(#{seq}) set {version or '(none)'} (the tag was edited)"
        )
    if s.pending is not None and s.beyond is not None:
        return f"names move #{head.seq}, but the move log goes on to move #{s.beyond}: the tag is behind"
    return None


def _pending(s: Snapshot, head: Head, pending: Pending) -> Problem:
    seq = pending.seq
    move = pending.move
    if move is None:
        return Problem(
            f"move #{seq} is recorded but unreadable ({pending.problem})",
            f"mark move #{seq} aborted (production stays version {s.production or '(none)'})",
            "abort",
            str(seq),
        )
    if move.from_version != head.production:
        return Problem(
            f"{move.describe()} starts from version {move.from_version or '(none)'}, but move "
            f"#{head.seq} left production at {head.production or '(none)'}",
            f"mark move #{seq} aborted",
            "abort",
            str(seq),
        )
    target_exists = move.to_version is None or s.exists.get(move.to_version, True)
    if s.production == move.to_version and target_exists:
        return Problem(
            f"{move.describe()} moved the alias but did not finish (its process is still running or died)",
            f"finish move #{seq}",
            "complete",
            str(seq),
        )
    if s.production == head.production:
        if target_exists:
            return Problem(
                f"{move.describe()} was claimed but never applied: the command that claimed it is "
                "still running, or it died",
                f"finish move #{seq} (production -> version {move.to_version or '(none)'})",
                "complete",
                str(seq),
            )
        return Problem(
            f"{move.describe()} was never applied and version {move.to_version} no longer exists",
            f"mark move #{seq} aborted (production stays version {s.production or '(none)'})",
            "abort",
            str(seq),
        )
    return Problem(
        f"{move.describe()} is unfinished and production is version {s.production or '(none)'}, "
        "neither its origin nor its target",
        f"mark move #{seq} aborted, then record where production is",
        "abort",
        str(seq),
    )


def _version_tags(s: Snapshot) -> list[Problem]:
    problems = []
    production = s.production
    assert production is not None
    if s.archived.get(production):
        problems.append(
            Problem(
                f"version {production} serves but is tagged archived",
                f"remove the archived tag of version {production}",
                "unarchive",
                production,
                blocking=False,
            )
        )
    last = s.last_move
    if (
        last is not None
        and not last.aborted
        and last.from_version
        and last.from_version != production
        and s.exists.get(last.from_version)
        and not s.archived.get(last.from_version, True)
    ):
        problems.append(
            Problem(
                f"version {last.from_version} served before move #{last.seq} but is not tagged archived",
                f"tag version {last.from_version} archived",
                "archive",
                last.from_version,
                blocking=False,
            )
        )
    return problems
