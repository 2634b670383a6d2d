"""Aliases, the production history, promotion, rollback and repair, all inside the MLflow registry.

Every move of the production alias is a registered-model tag `retrain.history.<alias>.<seq>` holding
JSON (from, to, time, actor, kind, reason, comparison run id), so any MLflow client sees the history.
Versions that stop serving are tagged `retrain.archived`; nothing is ever copied.

Write order (crash safety): the history record first, then the alias, then version tags. A crash
after the record but before the alias leaves a move that never happened; `status` reports it and
`status --repair` marks it aborted. The alias itself moves atomically, so production always points
at a valid version. Promotion is optimistic: it refuses when production moved since the comparison,
and re-reads the registry just before writing to catch a concurrent move.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from retrain.config import Settings
from retrain.errors import RegistryError

HISTORY_PREFIX = "retrain.history."
ARCHIVED = "retrain.archived"


@dataclass(frozen=True)
class Move:
    """One move of the production alias."""

    seq: int
    from_version: str | None
    to_version: str
    at: str
    actor: str
    kind: str  # promote | force | rollback | external
    reason: str
    comparison_run_id: str | None = None
    aborted: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Problem:
    """A disagreement between alias, history and tags, and what `--repair` does about it."""

    what: str
    fix: str
    action: str  # set_alias | abort_move | record_external | archive | unarchive
    target: str  # the version (or move seq for abort_move) the action applies to


@dataclass(frozen=True)
class State:
    """What the registry says now."""

    name: str
    production: str | None
    staging: str | None
    moves: tuple[Move, ...]
    tags: dict[str, str] = field(default_factory=dict)


# ---- pure logic -----------------------------------------------------------------------------


def history_key(alias: str, seq: int) -> str:
    return f"{HISTORY_PREFIX}{alias}.{seq:06d}"


def parse_history(tags: dict[str, str], alias: str) -> tuple[Move, ...]:
    """The moves of `alias` recorded in registered-model tags, oldest first."""
    prefix = f"{HISTORY_PREFIX}{alias}."
    moves = [Move(**json.loads(v)) for k, v in tags.items() if k.startswith(prefix)]
    return tuple(sorted(moves, key=lambda m: m.seq))


def effective(moves: tuple[Move, ...]) -> list[Move]:
    return [m for m in moves if not m.aborted]


def serving_stack(moves: tuple[Move, ...]) -> list[str]:
    """Versions that served, as a stack: promotions push, a rollback pops back to its target."""
    stack: list[str] = []
    for move in effective(moves):
        if move.kind == "rollback" and move.to_version in stack:
            while stack[-1] != move.to_version:
                stack.pop()
        else:
            stack.append(move.to_version)
    return stack


def rollback_target(moves: tuple[Move, ...], current: str | None, to: str | None, force: bool) -> str:
    """Which version a rollback goes to; RegistryError when there is none or it needs --force."""
    if current is None:
        raise RegistryError("nothing to roll back: the production alias is not set")
    if to is None:
        stack = serving_stack(moves)
        if len(stack) < 2 or stack[-1] != current:
            raise RegistryError(
                f"no earlier production version to roll back to from version {current} "
                f"(history has {len(effective(moves))} moves); pass --to VERSION --force to pick one"
            )
        return stack[-2]
    if to == current:
        raise RegistryError(f"version {to} is already production; nothing to roll back")
    served = {m.to_version for m in effective(moves)}
    if to not in served and not force:
        raise RegistryError(f"version {to} never served as production; add --force to roll back to it anyway")
    return to


def find_problems(moves: tuple[Move, ...], production: str | None, archived: dict[str, bool]) -> list[Problem]:
    """Disagreements between the alias, the history and the archived tags."""
    problems: list[Problem] = []
    done = effective(moves)
    last = done[-1] if done else None
    serving = production
    if last is None and production is not None:
        problems.append(Problem(f"production is version {production} but no move is recorded",
                                f"record an external move to version {production}", "record_external", production))
    elif last is not None and production != last.to_version:
        if production is None:
            problems.append(Problem(f"the production alias is missing; the history's last move is to version "
                                    f"{last.to_version}", f"set production to version {last.to_version}",
                                    "set_alias", last.to_version))
            serving = last.to_version
        elif production == last.from_version:
            problems.append(Problem(f"move #{last.seq} to version {last.to_version} was recorded but never applied "
                                    f"(production is still version {production})", f"mark move #{last.seq} aborted",
                                    "abort_move", str(last.seq)))
            done = done[:-1]  # the move never happened: its target did not serve
        else:
            problems.append(Problem(f"production is version {production} but the history's last move is to version "
                                    f"{last.to_version} (moved outside retrain)",
                                    f"record an external move {last.to_version} -> {production}",
                                    "record_external", production))
    served = {m.to_version for m in done} | {m.from_version for m in done if m.from_version}
    for version, is_archived in sorted(archived.items(), key=lambda kv: int(kv[0])):
        if version not in served:
            continue
        if version == serving and is_archived:
            problems.append(Problem(f"version {version} serves but is tagged archived",
                                    f"remove the archived tag of version {version}", "unarchive", version))
        elif version != serving and not is_archived:
            problems.append(Problem(f"version {version} served before but is not tagged archived",
                                    f"tag version {version} archived", "archive", version))
    return problems


# ---- registry I/O ---------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Registry:
    """The registered model of one use case, through an MlflowClient."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        from retrain.tracking import client as make_client

        self.settings = settings
        self.spec = settings.registry
        self.name = settings.registry.model_name
        self.client = client if client is not None else make_client()

    # -- reading

    def state(self) -> State:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException:
            return State(self.name, None, None, ())
        aliases = {k: str(v) for k, v in (model.aliases or {}).items()}
        tags = dict(model.tags or {})
        return State(
            self.name,
            aliases.get(self.spec.production_alias),
            aliases.get(self.spec.staging_alias),
            parse_history(tags, self.spec.production_alias),
            tags,
        )

    def version(self, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException:
            raise RegistryError(f"model {self.name} has no version {version}; see `retrain status` for versions") from None

    def latest_comparison(self, candidate: str) -> Any | None:
        """The newest comparison run of exactly this candidate version, in any experiment.

        `mlflow run . -e evaluate` without --experiment-name logs to the default experiment, so the
        search is not limited to settings.experiments.comparisons.
        """
        from mlflow.entities import ViewType

        ids = [e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        runs = self.client.search_runs(
            ids,
            filter_string=f"tags.`retrain.model_name` = '{self.name}' and tags.`retrain.candidate_version` = '{candidate}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    # -- moving production

    def promote(self, candidate: str | None = None, *, force: bool = False, reason: str | None = None,
                actor: str | None = None) -> Move:
        """Move production to the candidate if its latest comparison against current production says so."""
        state = self.state()
        candidate = str(candidate) if candidate else state.staging
        if candidate is None:
            raise RegistryError(
                f"no candidate: alias @{self.spec.staging_alias} of {self.name} is not set; "
                "run `retrain train` or pass --candidate VERSION"
            )
        self.version(candidate)
        if candidate == state.production:
            raise RegistryError(f"candidate version {candidate} is already @{self.spec.production_alias}; nothing to promote")
        comparison_id = None
        if force:
            if not reason:
                raise RegistryError("--force needs --reason TEXT: forced moves are recorded with their reason")
            kind = "force"
        else:
            run = self.latest_comparison(candidate)
            if run is None:
                raise RegistryError(
                    f"no comparison of version {candidate} found; run `retrain evaluate` first "
                    "(or `retrain promote --force --reason TEXT`)"
                )
            tags = run.data.tags
            compared = tags.get("retrain.incumbent_version", "none")
            current = state.production or "none"
            comparison_id = run.info.run_id
            if compared != current:
                raise RegistryError(
                    f"production moved since comparison {comparison_id}: it compared version {candidate} with "
                    f"{compared}, production is now {current}; run `retrain evaluate` again"
                )
            if tags.get("retrain.decision") != "promote":
                raise RegistryError(
                    f"the latest comparison ({comparison_id}) decided to keep production: "
                    f"{tags.get('retrain.reason', 'no reason recorded')}"
                )
            kind = "promote"
            reason = reason or tags.get("retrain.reason", "comparison passed the gate")
        return self._move(state, candidate, kind, reason or kind, comparison_id, actor)

    def rollback(self, to: str | None = None, *, reason: str | None = None, force: bool = False,
                 actor: str | None = None) -> Move:
        """Move production back to the previous production version from the history (or `to`)."""
        state = self.state()
        if to is not None:
            self.version(to)
        target = rollback_target(state.moves, state.production, str(to) if to else None, force)
        return self._move(state, target, "rollback", reason or "rollback", None, actor)

    def _move(self, state: State, to: str, kind: str, reason: str, comparison_id: str | None,
              actor: str | None) -> Move:
        from retrain.tracking import actor as who

        seq = (state.moves[-1].seq if state.moves else 0) + 1
        move = Move(seq, state.production, to, _now(), actor or who(), kind, reason, comparison_id)
        self._check_unchanged(state, seq)
        prod = self.spec.production_alias
        self.client.set_registered_model_tag(self.name, history_key(prod, seq), move.to_json())
        self.client.set_registered_model_alias(self.name, prod, to)
        self._tag_versions(move)
        if state.staging == to:
            self.client.delete_registered_model_alias(self.name, self.spec.staging_alias)
        return move

    def _check_unchanged(self, state: State, seq: int) -> None:
        """Optimistic concurrency: refuse if production or the history changed since `state` was read."""
        model = self.client.get_registered_model(self.name)
        current = (model.aliases or {}).get(self.spec.production_alias)
        current = str(current) if current is not None else None
        if current != state.production or history_key(self.spec.production_alias, seq) in (model.tags or {}):
            raise RegistryError(
                f"production of {self.name} moved while this command ran (now {current}); nothing changed, try again"
            )

    def _tag_versions(self, move: Move) -> None:
        if move.from_version:
            self.client.set_model_version_tag(self.name, move.from_version, ARCHIVED, move.at)
        self.client.set_model_version_tag(self.name, move.to_version, "retrain.production_since", move.at)
        if ARCHIVED in (self.client.get_model_version(self.name, move.to_version).tags or {}):
            self.client.delete_model_version_tag(self.name, move.to_version, ARCHIVED)

    # -- consistency

    def problems(self, state: State | None = None) -> list[Problem]:
        state = state or self.state()
        served = {m.to_version for m in effective(state.moves)} | {m.from_version for m in effective(state.moves) if m.from_version}
        archived = {v: ARCHIVED in (self.version(v).tags or {}) for v in served}
        return find_problems(state.moves, state.production, archived)

    def repair(self, actor: str | None = None) -> list[Problem]:
        """Make alias, history and tags agree, keeping production where it is; returns what was fixed.

        History problems are fixed first and tags re-checked after, since aborting a move changes
        which versions count as having served.
        """
        fixed: list[Problem] = []
        for _ in range(3):
            state = self.state()
            problems = self.problems(state)
            if not problems:
                break
            first = [p for p in problems if p.action not in ("archive", "unarchive")] or problems
            for problem in first:
                self._apply(state, problem, actor)
            fixed += first
        return fixed

    def _apply(self, state: State, problem: Problem, actor: str | None) -> None:
        from retrain.tracking import actor as who

        prod = self.spec.production_alias
        if problem.action == "set_alias":
            self.client.set_registered_model_alias(self.name, prod, problem.target)
        elif problem.action == "abort_move":
            move = next(m for m in state.moves if m.seq == int(problem.target))
            self.client.set_registered_model_tag(self.name, history_key(prod, move.seq),
                                                 replace(move, aborted=True).to_json())
        elif problem.action == "record_external":
            done = effective(state.moves)
            seq = (state.moves[-1].seq if state.moves else 0) + 1
            move = Move(seq, done[-1].to_version if done else None, problem.target, _now(), actor or who(),
                        "external", "recorded by `retrain status --repair`: the alias was moved outside retrain")
            self.client.set_registered_model_tag(self.name, history_key(prod, seq), move.to_json())
        elif problem.action == "archive":
            self.client.set_model_version_tag(self.name, problem.target, ARCHIVED, _now())
        elif problem.action == "unarchive":
            self.client.delete_model_version_tag(self.name, problem.target, ARCHIVED)

    # -- reporting

    def history(self) -> list[Move]:
        """Every recorded move of production, newest first."""
        return list(reversed(self.state().moves))

    def status(self, *, repair: bool = False) -> dict[str, Any]:
        """Production and staging versions with metrics, age and last comparison; problems (or repairs)."""
        repaired = [asdict(p) for p in self.repair()] if repair else []
        state = self.state()
        out: dict[str, Any] = {"model_name": self.name, "versions": {}, "repaired": repaired}
        for role, version in (("production", state.production), ("staging", state.staging)):
            out["versions"][role] = self._describe(version) if version else None
        out["problems"] = [asdict(p) for p in self.problems(state)] if state.moves or state.production else []
        out["consistent"] = not out["problems"]
        out["moves"] = len(state.moves)
        return out

    def _describe(self, version: str) -> dict[str, Any]:
        mv = self.version(version)
        tags = mv.tags or {}
        trained_at = tags.get("retrain.trained_at")
        age_days = None
        if trained_at:
            age_days = (datetime.now(timezone.utc) - datetime.fromisoformat(trained_at)).total_seconds() / 86400
        comparison = tags.get("retrain.comparison_run_id")
        return {
            "version": str(mv.version),
            "run_id": mv.run_id,
            "as_of": tags.get("retrain.as_of"),
            "trained_at": trained_at,
            "age_days": None if age_days is None else round(age_days, 2),
            "metrics": json.loads(tags.get("retrain.metrics", "{}")),
            "last_comparison": {"run_id": comparison, "decision": tags.get("retrain.decision")} if comparison else None,
        }
