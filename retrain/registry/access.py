"""Reading the registered model of one use case (aliases, head, versions, move log entries) and the writes
every other part shares (version tags, history mirrors, store calls in parallel). A history in the old
format (retrain <= 0.1) is migrated into the move log on first read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import retrain.registry.rules as mv
from retrain.config import Settings
from retrain.errors import RegistryError
from retrain.ledger import Entry, Ledger, Taken
from retrain.registry.marks import ABORTED
from retrain.registry.rules import Head, Move

log = logging.getLogger("retrain")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def iso_ms(iso: str) -> int | None:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


class ModelGone(RegistryError):
    """The registered model was deleted but its move log is still there (`retrain status` exits 9 on it)."""


def missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class State:
    """What the registry says now: the aliases and the head."""

    name: str
    production: str | None
    staging: str | None
    head: Head | None


@dataclass
class View:
    """One read of the registered model."""

    production: str | None = None
    staging: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    head: Head | None = None
    head_problem: str | None = None
    description: str | None = None
    recreated: str | None = None  # the model was deleted and created again after its last recorded move


class RegisteredModel:
    """The registered model of one use case, through an MlflowClient."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        from retrain.store import GuardedClient
        from retrain.tracking import client as make_client

        self.settings = settings
        self.spec = settings.registry
        self.name = settings.registry.model_name
        self.client = GuardedClient(client if client is not None else make_client())
        uri = getattr(self.client, "_registry_uri", None) or ""
        self.remote = str(uri).startswith(("http://", "https://", "databricks"))
        prod = self.spec.production_alias
        self.ledger = Ledger(self.client, f"{self.name}/{prod}")
        self.head_key = f"retrain.state.{prod}"
        self.mirror_prefix = f"retrain.history.{prod}."

    def mirror_key(self, seq: int) -> str:
        return f"{self.mirror_prefix}{seq:06d}"

    def read(self, migrate: bool = True, probe: bool = True) -> View:
        """The registered model, its aliases and head; a legacy history is migrated first if `migrate`.

        Without a head tag and without mirrors, the registry has no completed move; `probe` also
        checks the move log's first entry, to tell a fresh registry from one whose head was deleted.
        """
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                if probe and self.ledger.get(1) is not None:
                    raise self.gone() from None
                return View(head=Head())
            raise RegistryError(f"cannot read model {self.name!r}: {str(exc).splitlines()[0][:300]}") from None
        aliases = {k: str(v) for k, v in (model.aliases or {}).items()}
        tags = dict(model.tags or {})
        view = View(
            aliases.get(self.spec.production_alias),
            aliases.get(self.spec.staging_alias),
            tags,
            description=model.description,
        )
        text = tags.get(self.head_key)
        if text is not None:
            try:
                view.head = mv.parse_head(text)
            except ValueError as exc:
                view.head_problem = f"is unreadable: {exc}"
            return view
        mirrors = [v for k, v in tags.items() if k.startswith(self.mirror_prefix)]
        if mirrors and not any(_is_v2(v) for v in mirrors):  # written by retrain 0.1
            if migrate:
                self._migrate(view)
                return self.read(migrate=False)
            view.head_problem = "is missing: the history is still in the old format"
        elif mirrors or (probe and self.ledger.get(1) is not None):
            view.head_problem = "is missing but moves are recorded"
            if not mirrors:
                self._recreated(view, model.creation_timestamp)
        else:
            view.head = Head()
        return view

    def gone(self) -> ModelGone:
        """The registered model was deleted while its move log remains: what is gone and how to recreate it."""
        top = self.ledger.top()
        last = self.ledger.get(top)
        return ModelGone(
            f"registered model {self.name} does not exist (deleted?), but its move log holds {top} recorded moves of "
            f"production (the last: {describe_entry(last)}). To recreate it, run `retrain train` (or a cycle, "
            "`retrain run`), then promote the new version; the log and `retrain history` are kept"
        )

    def mirror_top(self, tags: dict[str, str]) -> int:
        """The highest move number among the mirror tags (0 if none)."""
        n = len(self.mirror_prefix)
        return max((int(k[n:]) for k in tags if k.startswith(self.mirror_prefix) and k[n:].isdigit()), default=0)

    def recorded_top(self, view: View) -> int:
        """The last move recorded anywhere: the head's if the log or its mirror holds it, else the log's end."""
        seq = view.head.seq if view.head is not None else 0
        if seq and (self.mirror_key(seq) in view.tags or self.ledger.get(seq) is not None):
            return seq
        return max(self.ledger.top(), self.mirror_top(view.tags))

    def _recreated(self, view: View, created_ms: int | None) -> None:
        """A registered model created after the last move of its log was deleted and created again (`retrain
        train` does that): the versions the log names belonged to the deleted model, production starts afresh
        and the next move continues the numbering. Anything else without a head is for repair to rebuild."""
        top = self.ledger.top()
        for seq in (top, top - 1):  # the last move before the re-creation; one after it is the first claim since
            entry = self.ledger.get(seq) if seq > 0 else None
            move = entry_move(entry)[0] if entry is not None else None
            at = iso_ms(move.at) if move is not None else None
            if move is None or at is None or created_ms is None:
                return
            if at < created_ms:
                top = seq
                break
        else:
            return
        created = datetime.fromtimestamp(created_ms / 1000, UTC).isoformat(timespec="seconds")
        view.head, view.head_problem = Head(top, None, (), "", move.token), None
        view.recreated = (
            f"registered model {self.name} was re-created on {created}, after the last recorded move (#{top} at "
            f"{move.at[:19]}): the versions moves #1-#{top} name belonged to the deleted model; the next move is "
            f"#{top + 1}"
        )

    def state(self) -> State:
        view = self.read()
        return State(self.name, view.production, view.staging, view.head)

    def find_version(self, version: str) -> Any | None:
        """The model version, or None if it does not exist (deleted, or never did)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as exc:
            if missing(exc):
                return None
            raise

    def version(self, version: str) -> Any:
        return self.existing(version, self.find_version(version))

    def existing(self, version: str, found: Any | None) -> Any:
        if found is None:
            raise RegistryError(
                f"model {self.name} has no version {version}; `retrain history` lists the versions that served"
            )
        return found

    def find_versions(self, *versions: str | None) -> dict[str, Any]:
        """The model versions (None for deleted ones), read together: a move also redraws the description of
        the version it replaces, so that one is read alongside the target instead of after the move."""
        wanted = list(dict.fromkeys(v for v in versions if v))
        return dict(zip(wanted, self.together([partial(self.find_version, v) for v in wanted]), strict=True))

    def latest_comparison(self, candidate: str) -> Any | None:
        """The newest comparison run of exactly this candidate version, in any experiment.

        `mlflow run . -e evaluate` without --experiment-name logs to the default experiment, so the
        search is not limited to settings.experiments.comparisons.
        """
        from mlflow.entities import ViewType

        ids = [e.experiment_id for e in self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
        runs = self.client.search_runs(
            ids,
            filter_string=(
                f"tags.`retrain.model_name` = '{self.name}' and tags.`retrain.candidate_version` = '{candidate}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def together(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run independent store calls and return their results: one after another on a local store (one SQLite
        writer at a time), at once through a tracking server (each call is a round trip). The first failure is
        raised after all ended."""
        if len(calls) < 2 or not self.remote:
            return [call() for call in calls]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_model_version_tag(self.name, version, key, value)
        except MlflowException as exc:
            if not missing(exc):  # a deleted version keeps no tags worth fixing
                raise

    def mirror_writes(self, move: Move, tags: dict[str, str]) -> list[Callable[[], Any]]:
        """The writes that mirror `move` as a model tag and drop the mirror that falls out of the window."""
        writes = [lambda: self.client.set_registered_model_tag(self.name, self.mirror_key(move.seq), move.to_json())]
        old = self.mirror_key(move.seq - mv.MIRRORS)
        if old in tags:
            writes.append(lambda: self.client.delete_registered_model_tag(self.name, old))
        return writes

    def write_mirror(self, move: Move, tags: dict[str, str]) -> None:
        for write in self.mirror_writes(move, tags):
            write()

    def mirror_move(self, tags: dict[str, str], seq: int) -> Move | None:
        text = tags.get(self.mirror_key(seq))
        if text is None:
            return None
        try:
            return mv.parse_move(text, seq)
        except ValueError:
            return None

    def _migrate(self, view: View) -> None:
        """Move a history kept in registered-model tags only (retrain <= 0.1) into the move log, once."""
        records = {k: v for k, v in view.tags.items() if k.startswith(self.mirror_prefix)}
        log.warning("retrain: moving %d recorded moves of %s into the move log (once)", len(records), self.name)
        moves: list[Move] = []
        for key, text in records.items():
            suffix = key[len(self.mirror_prefix) :]
            if not suffix.isdigit() or int(suffix) < 1:
                continue  # not a move record: left in place, reported by status
            seq = int(suffix)
            try:
                moves.append(mv.parse_move(text, seq))
            except ValueError as exc:
                moves.append(
                    Move(
                        seq,
                        None,
                        None,
                        "",
                        "unknown",
                        "repair",
                        mv.bounded(f"unreadable record {key} ({exc}): {text}", 900),
                        aborted=True,
                    )
                )
        moves = mv.replay_legacy(moves, view.production)
        top = max((m.seq for m in moves), default=0)
        for move in moves:
            move = replace(move, token=f"legacy-{move.seq}")
            try:
                self.ledger.claim(move.seq, move.record())
            except Taken:
                pass  # a concurrent migration wrote the same record
            key = self.mirror_key(move.seq)
            if move.seq > top - mv.MIRRORS:
                self.client.set_registered_model_tag(self.name, key, move.to_json())
        for key in records:
            suffix = key[len(self.mirror_prefix) :]
            if suffix.isdigit() and (int(suffix) <= top - mv.MIRRORS or key != self.mirror_key(int(suffix))):
                self.client.delete_registered_model_tag(self.name, key)
        if self.head_key not in self.read(migrate=False).tags:
            self.client.set_registered_model_tag(self.name, self.head_key, mv.head_from(moves).to_json())


def _is_v2(text: str) -> bool:
    try:
        return json.loads(text).get("v") == 2
    except (ValueError, AttributeError):
        return False


def entry_move(entry: Entry) -> tuple[Move | None, str | None]:
    """The move an entry holds (aborted if so marked), or None and what is wrong with it."""
    if entry.record is None:
        return None, entry.problem
    try:
        move = mv.parse_move(entry.record, entry.seq)
    except ValueError as exc:
        return None, str(exc)
    return (replace(move, aborted=True) if ABORTED in entry.marks else move), None


def describe_entry(entry: Entry | None) -> str:
    if entry is None:
        return "its record is gone"
    move, problem = entry_move(entry)
    return move.describe() if move is not None else f"move #{entry.seq}, unreadable: {problem}"
