"""Moves of the production alias, their history, rollback, status and repair, inside the MLflow registry.

Design (why every move of production is atomic, and what each piece of state is for):

- **Move log** (`retrain/ledger.py`): move N is a soft-deleted experiment
  `retrain-ledger/<model>/<alias>/<N>` whose tag holds the record (from, to, kind, actor, time,
  reason, comparison run id, host, pid, a random token). Creating an experiment with a taken name
  fails atomically in the tracking store, so claiming N is a compare-and-set: of N concurrent movers
  exactly one creates it; the others get "already exists", refuse with one line (exit 4) and write
  nothing. The log is complete and never rewritten; `history` pages through it.
- **Head** (registered-model tag `retrain.state.<alias>`): last resolved move number, production, the
  last 100 versions that served (the rollback stack), the time production last moved. Every
  command reads it with one `get_registered_model` call, so promote, rollback and status cost the
  same with 10 or 10,000 moves. Only the owner of move N+1 (or `status --repair` finishing it)
  writes the head, and it is written last.
- **Mirrors** (`retrain.history.<alias>.<N>`): the newest 20 records as registered-model tags, for
  the MLflow UI's model page. Older ones are deleted as new ones arrive (get_registered_model
  returns every tag, so the full log cannot live there).

A move: read the head (N) and check every precondition; claim N+1; re-read the registry and refuse
if the head or the alias changed meanwhile; then write the alias, the version tags (archived,
rolled_back), the mirror, drop staging if it pointed at the target, and finally
the head. A claim is a commitment (write-ahead): a crash after it leaves move N+1 claimed but
unfinished, which every writing command refuses to build on (naming `retrain status --repair`),
and which `--repair` finishes by doing exactly the writes the mover would have done. Finishing
rather than undoing is what makes repair safe while the claiming process might still be alive on
another machine: both write the same values, in any interleaving. A claimed move is aborted
(recorded, production untouched) only when it cannot be finished: its target version was deleted,
its record is unreadable, or the alias was moved elsewhere outside retrain.

Limits: aliases have no compare-and-set, so a move made outside retrain (the UI, another client) is
only detected afterwards (status reports it, repair records it as an external move). `mlflow gc`
without `--experiment-ids` permanently deletes all deleted experiments, and with them the move log
older than the 20 mirrored moves; nothing else depends on it (a mover re-reads the head after
claiming, so a re-used number is caught).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from retrain import moves as mv
from retrain.config import Settings
from retrain.errors import NotifyError, Refused, RegistryError
from retrain.ledger import Entry, Ledger, Taken
from retrain.moves import Head, Move, Pending, Problem, Snapshot

ARCHIVED = "retrain.archived"
ROLLED_BACK = "retrain.rolled_back"
ABORTED = "retrain.aborted"
RUN_HOST = "retrain.host"
RUN_PID = "retrain.pid"
STALE_RUN_HOURS = 24
REPAIR_HINT = "run `retrain status` to see it and `retrain status --repair` to fix it"

log = logging.getLogger("retrain")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _ms(iso: str) -> int | None:
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _missing(exc: Exception) -> bool:
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


@dataclass(frozen=True)
class Logged:
    """One entry of the history as `history` shows it."""

    seq: int
    move: Move | None
    state: str  # applied | aborted | unfinished | unreadable | missing
    problem: str | None = None
    deleted: tuple[str, ...] = ()  # versions of this move that no longer exist


class Registry:
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

    # ---- reading ---------------------------------------------------------------------------------

    def mirror_key(self, seq: int) -> str:
        return f"{self.mirror_prefix}{seq:06d}"

    def _read(self, migrate: bool = True, probe: bool = True) -> View:
        """The registered model, its aliases and head; a legacy history is migrated first if `migrate`.

        Without a head tag and without mirrors, the registry has no completed move; `probe` also
        checks the move log's first entry, to tell a fresh registry from one whose head was deleted.
        """
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
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
                return self._read(migrate=False)
            view.head_problem = "is missing: the history is still in the old format"
        elif mirrors or (probe and self.ledger.get(1) is not None):
            view.head_problem = "is missing but moves are recorded"
        else:
            view.head = Head()
        return view

    def state(self) -> State:
        view = self._read()
        return State(self.name, view.production, view.staging, view.head)

    def _version(self, version: str) -> Any | None:
        """The model version, or None if it does not exist (deleted, or never did)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise

    def version(self, version: str) -> Any:
        return self._existing(version, self._version(version))

    def _existing(self, version: str, found: Any | None) -> Any:
        if found is None:
            raise RegistryError(
                f"model {self.name} has no version {version}; `retrain history` lists the versions that served"
            )
        return found

    def _versions(self, *versions: str | None) -> dict[str, Any]:
        """The model versions (None for deleted ones), read together: a move also redraws the description of
        the version it replaces, so that one is read alongside the target instead of after the move."""
        wanted = list(dict.fromkeys(v for v in versions if v))
        return dict(zip(wanted, self._together([lambda v=v: self._version(v) for v in wanted])))

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

    # ---- moving production -------------------------------------------------------------------------

    def promote(
        self,
        candidate: str | None = None,
        *,
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
        as_of: date | None = None,
        notify: bool = True,
    ) -> Move:
        """Move production to the candidate if its latest comparison against current production says so."""
        if force and not reason:
            raise RegistryError("--force needs --reason TEXT: forced moves are recorded with their reason")
        view = self._writable()
        head = view.head
        assert head is not None
        candidate = str(candidate) if candidate else view.staging
        if candidate is None:
            raise RegistryError(
                f"no candidate: alias @{self.spec.staging_alias} of {self.name} is not set; "
                "run `retrain train` or pass --candidate VERSION"
            )
        found = self._versions(candidate, head.production)
        version = self._existing(candidate, found[candidate])
        if candidate == head.production:
            raise Refused(f"candidate version {candidate} is already @{self.spec.production_alias}; nothing to promote")
        mark = rolled_back_mark(version.tags or {})
        if mark is not None and not force:
            raise Refused(
                f"v{candidate} {mark}; to promote it again anyway: "
                "`retrain promote --candidate {0} --force --reason TEXT`".format(candidate)
            )
        comparison_id, metrics = None, {}
        if force:
            kind = "force"
        else:
            run = self._check_comparison(candidate, head, as_of)
            comparison_id, metrics = run.info.run_id, dict(run.data.metrics or {})
            kind = "promote"
            reason = reason or run.data.tags.get("retrain.reason", "comparison passed the gate")
        move = self._move(
            view,
            candidate,
            kind,
            reason or kind,
            actor,
            comparison_id=comparison_id,
            overrode=mark,
            found=found,
            notify=False,
        )
        if notify:
            metric = self.settings.gate.primary_metric
            event = {
                "kind": "promoted",
                "version": candidate,
                "from_version": move.from_version,
                "reason": ("forced: " if force else "") + move.reason,
            }
            if f"staging_{metric}" in metrics:
                event.update(
                    metric=metric,
                    after=metrics[f"staging_{metric}"],
                    before=metrics.get(f"production_{metric}") if move.from_version else None,
                )
            self._notify(move, event)
        return move

    def _check_comparison(self, candidate: str, head: Head, as_of: date | None) -> Any:
        run = self.latest_comparison(candidate)
        if run is None:
            raise Refused(
                f"no comparison of version {candidate} found; run `retrain evaluate` first "
                "(or `retrain promote --force --reason TEXT`)"
            )
        run_id, tags = run.info.run_id, run.data.tags
        if run.info.status != "FINISHED":
            raise Refused(
                f"the latest comparison of version {candidate} ({run_id}) did not finish "
                f"(status {run.info.status}); run `retrain evaluate` again"
            )
        if as_of is not None and tags.get("retrain.as_of") != as_of.isoformat():
            raise Refused(
                f"the latest comparison of version {candidate} ({run_id}) was made for as-of "
                f"{tags.get('retrain.as_of', 'unknown')}, not {as_of.isoformat()}; run "
                f"`retrain evaluate --as-of {as_of.isoformat()}`"
            )
        compared, current = tags.get("retrain.incumbent_version", "none"), head.production or "none"
        if compared != current:
            raise Refused(
                f"production moved since comparison {run_id}: it compared version {candidate} with "
                f"{compared}, production is now {current}; run `retrain evaluate` again"
            )
        moved = _ms(head.moved_at)
        if moved is not None and run.info.start_time is not None and run.info.start_time < moved:
            raise Refused(
                f"comparison {run_id} is older than the last move of production (#{head.seq} at "
                f"{head.moved_at[:19]}); run `retrain evaluate` again"
            )
        if tags.get("retrain.decision") != "promote":
            raise Refused(
                f"the latest comparison ({run_id}) decided to keep production: "
                f"{tags.get('retrain.reason', 'no reason recorded')}"
            )
        return run

    def rollback(
        self,
        to: str | None = None,
        *,
        reason: str | None = None,
        force: bool = False,
        actor: str | None = None,
        notify: bool = True,
    ) -> Move:
        """Move production back to the previous production version (or `to`), skipping deleted versions."""
        view = self._writable()
        head = view.head
        assert head is not None
        if head.production is None:
            raise RegistryError("nothing to roll back: the production alias is not set")
        skipped: list[str] = []
        found: dict[str, Any] = {}
        if to is not None:
            to = str(to)
            if to == head.production:
                raise Refused(f"version {to} is already production; nothing to roll back")
            found = self._versions(to, head.production)
            target = self._existing(to, found[to])
            tags = target.tags or {}
            if ARCHIVED not in tags and to not in head.stack and not force:  # archived: it served, then stopped
                raise Refused(f"version {to} never served as production; add --force to roll back to it anyway")
        else:
            target = None
            for candidate in mv.rollback_candidates(head):
                found.update(self._versions(candidate, None if found else head.production))
                target = found[candidate]
                if target is not None:
                    to = candidate
                    break
                skipped.append(candidate)
            if target is None:
                gone = f" (versions {', '.join(skipped)} served before but were deleted)" if skipped else ""
                raise RegistryError(
                    f"no earlier production version to roll back to from version {head.production}"
                    f"{gone}; pass --to VERSION --force to pick one"
                )
            tags = target.tags or {}
        assert to is not None
        mark = rolled_back_mark(tags)
        if mark is not None and not force:
            raise Refused(f"v{to} {mark}; add --force to roll back to it anyway")
        move = self._move(
            view,
            to,
            "rollback",
            reason or "rollback",
            actor,
            skipped=tuple(skipped),
            overrode=mark,
            found=found,
            notify=False,
        )
        if notify:
            extra = f" (skipped deleted versions {', '.join(skipped)})" if skipped else ""
            self._notify(
                move,
                {
                    "kind": "rolled_back",
                    "version": to,
                    "from_version": move.from_version,
                    "reason": move.reason + extra,
                },
            )
        return move

    def _writable(self) -> View:
        """The registry read for a move; RegistryError naming `status --repair` if anything is unrepaired."""
        from retrain import notify

        notify.ensure_writable(self.settings)
        view = self._read()
        if view.head is not None and view.production == view.head.production:
            return view
        snapshot = self._snapshot(view)
        blocking = [p for p in mv.diagnose(snapshot, self.head_key) if p.blocking]
        what = blocking[0].what if blocking else "production and the recorded history disagree"
        raise RegistryError(f"refusing to move production of {self.name}: {what}; {REPAIR_HINT}")

    def _move(
        self,
        view: View,
        to: str | None,
        kind: str,
        reason: str,
        actor: str | None,
        *,
        comparison_id: str | None = None,
        skipped: tuple[str, ...] = (),
        overrode: str | None = None,
        found: dict[str, Any] | None = None,
        notify: bool = True,
    ) -> Move:
        """Claim move head+1 (compare-and-set), check nothing moved meanwhile, then apply it.
        `found`: the model versions involved as read before the move (its target's tags decide which tags to
        delete; both versions' descriptions are redrawn from them without reading them again)."""
        from retrain.tracking import actor as who

        head = view.head
        assert head is not None
        move = Move(
            head.seq + 1,
            head.production,
            to,
            _now(),
            mv.bounded(actor or who(), mv.NAME_LIMIT),
            kind,
            mv.bounded(reason, mv.REASON_LIMIT),
            comparison_id,
            token=uuid.uuid4().hex,
            host=socket.gethostname(),
            pid=os.getpid(),
            skipped=skipped,
            overrode=overrode,
        )
        try:
            entry = self.ledger.claim(move.seq, move.record(), hide=False)  # hidden with the move's other writes
        except Taken as taken:
            other = _describe_entry(taken.entry)
            raise Refused(
                f"production of {self.name} was moved by another command at the same time ({other}); "
                "nothing changed. If no other retrain command is running, that one died: run "
                "`retrain status --repair`"
            ) from None
        now = self._read(migrate=False, probe=False)
        if now.head is None or now.head.seq != head.seq:
            if now.head is not None and now.head.seq >= move.seq:  # our number was re-used after `mlflow gc`
                self.ledger.mark(entry, ABORTED, json.dumps({"at": _now(), "why": "stale claim"}))
            else:
                self.ledger.hide(entry)
            raise Refused(f"production of {self.name} moved while this command ran; nothing changed, try again")
        if now.production != view.production:
            self.ledger.hide(entry)
            raise RegistryError(
                f"production of {self.name} was moved outside retrain while this command ran (now "
                f"{now.production or '(none)'}); move #{move.seq} is unfinished: {REPAIR_HINT}"
            )
        # The descriptions (a rendering of what the move wrote) are redrawn while the head is written.
        found = found or {}
        target = found.get(to) if to is not None else None
        self._apply(
            move,
            head,
            now,
            (target.tags or {}) if target is not None else None,
            also=[lambda: self.ledger.hide(entry)],
            with_head=[
                lambda: self.refresh_descriptions(
                    move.from_version, move.to_version, move=move, previous=now.description, found=found, view=now
                )
            ],
        )
        if notify:
            self._notify(
                move, {"kind": move.kind, "version": to, "from_version": move.from_version, "reason": move.reason}
            )
        return move

    def _apply(
        self,
        move: Move,
        head: Head,
        view: View,
        to_tags: dict[str, str] | None,
        *,
        also: list[Any] = (),
        with_head: list[Any] = (),
    ) -> None:
        """Every write of a claimed move, alias first and head last; idempotent, so repair can redo it.
        `also`: more calls to make between the two; `with_head`: calls to make alongside the head's write."""
        from mlflow.exceptions import MlflowException

        name, prod = self.name, self.spec.production_alias
        to = move.to_version
        try:
            if to is None:
                self.client.delete_registered_model_alias(name, prod)
            elif view.production != to:
                self.client.set_registered_model_alias(name, prod, to)
        except MlflowException as exc:
            if not _missing(exc):
                raise
            self._abort(move, head, f"version {to} no longer exists")
            raise RegistryError(
                f"version {to} of {self.name} was deleted while moving production; nothing "
                f"changed (move #{move.seq} recorded as aborted)"
            ) from None
        # Between the alias (the move itself) and the head (its completion mark) every write is independent of
        # the others and repair redoes any of them; through a tracking server they go out together.
        writes = []
        for version, changes in version_changes(move).items():
            for key, value in changes.items():
                if value is not None:
                    writes.append(lambda v=version, k=key, x=value: self._set_version_tag(v, k, x))
                elif to_tags is None or key in to_tags:
                    writes.append(lambda v=version, k=key: self.client.delete_model_version_tag(name, v, k))
        writes += self._mirror_writes(move, view.tags)
        if to is not None and view.staging == to:
            writes.append(lambda: self.client.delete_registered_model_alias(name, self.spec.staging_alias))
        self._together([*writes, *also])
        self._together(
            [lambda: self.client.set_registered_model_tag(name, self.head_key, head.after(move).to_json()), *with_head]
        )

    def _together(self, calls: list[Any]) -> list[Any]:
        """Run independent store calls and return their results: one after another on a local store (one SQLite
        writer at a time), at once through a tracking server (each call is a round trip). The first failure is
        raised after all ended."""
        if len(calls) < 2 or not self.remote:
            return [call() for call in calls]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]

    def refresh_descriptions(
        self,
        *versions: str | None,
        move: Move | None = None,
        previous: str | None = None,
        found: dict[str, Any] | None = None,
        view: View | None = None,
    ) -> None:
        """Redraw the model's description (production history, newest first) and the descriptions of
        `versions`: after `move`, its row on top of the table (`previous`: the description as read before the
        move, else read again) and each version drawn from `found` (as read before the move, with the move's tag
        and alias changes applied: no read) or else read again; without a move, the table from the move log.
        Best effort: the move log and tags are the record, this is their rendering."""

        def draw(version: str) -> None:
            before = (found or {}).get(version)
            if move is None or view is None or before is None:
                return write_version_description(self.client, self.settings, version)
            tags, aliases = after_move(
                move,
                version,
                before.tags or {},
                before.aliases or (),
                view.staging,
                self.spec.production_alias,
                self.spec.staging_alias,
            )
            self.client.update_model_version(
                self.name, version, description=version_description(self.settings, version, tags, aliases)
            )

        try:
            self._together(
                [
                    lambda: write_model_description(self, move, previous),
                    *(lambda v=v: draw(v) for v in dict.fromkeys(v for v in versions if v)),
                ]
            )
        except Exception as exc:
            log.warning("retrain: could not redraw the descriptions of %s: %s", self.name, exc)

    def _set_version_tag(self, version: str, key: str, value: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_model_version_tag(self.name, version, key, value)
        except MlflowException as exc:
            if not _missing(exc):  # a deleted version keeps no tags worth fixing
                raise

    def _mirror_writes(self, move: Move, tags: dict[str, str]) -> list[Any]:
        """The writes that mirror `move` as a model tag and drop the mirror that falls out of the window."""
        writes = [lambda: self.client.set_registered_model_tag(self.name, self.mirror_key(move.seq), move.to_json())]
        old = self.mirror_key(move.seq - mv.MIRRORS)
        if old in tags:
            writes.append(lambda: self.client.delete_registered_model_tag(self.name, old))
        return writes

    def _write_mirror(self, move: Move, tags: dict[str, str]) -> None:
        for write in self._mirror_writes(move, tags):
            write()

    def _abort(self, move: Move, head: Head, why: str, entry: Entry | None = None) -> None:
        """Record claimed move `move` as aborted: mark its log entry, mirror it, advance the head past it."""
        entry = entry or self.ledger.get(move.seq)
        if entry is not None:
            self.ledger.mark(entry, ABORTED, json.dumps({"at": _now(), "why": mv.bounded(why, 1000)}))
        aborted = replace(move, aborted=True)
        self._write_mirror(aborted, self._read(migrate=False).tags)
        self.client.set_registered_model_tag(self.name, self.head_key, head.after(aborted).to_json())

    def _notify(self, move: Move, event: dict[str, Any]) -> None:
        from retrain import notify

        event = {"model": self.name, "seq": move.seq, "actor": move.actor, **event}
        try:
            notify.notify(self.settings, event)
        except NotifyError as exc:
            raise NotifyError(
                f"production of {self.name} moved (move #{move.seq}: {move.from_version or '(none)'} "
                f"-> {move.to_version or '(none)'}) but the notification failed: {exc}"
            ) from None

    # ---- consistency ------------------------------------------------------------------------------

    def _snapshot(self, view: View, found: dict[str, Any] | None = None) -> Snapshot:
        """Everything diagnose() needs, with a fixed number of calls whatever the history's length.

        `found` collects the model versions looked up (None for deleted ones) for the caller to re-use.
        """
        head = view.head
        pending = None
        exists: dict[str, bool] = {}
        archived: dict[str, bool] = {}
        found = {} if found is None else found

        def look(version: str | None) -> None:
            if version is None or version in exists:
                return
            if version not in found:
                found[version] = self._version(version)
            exists[version] = found[version] is not None
            archived[version] = exists[version] and ARCHIVED in (found[version].tags or {})

        last_move = None
        if head is not None:
            entry = self.ledger.get(head.seq + 1)
            if entry is not None:
                move, problem = _entry_move(entry)
                pending = Pending(entry.seq, move, problem)
                if move is not None:
                    look(move.to_version)
            last_move = self._mirror_move(view.tags, head.seq)
            look(head.production)
            if last_move is not None:
                look(last_move.from_version)
        look(view.production)
        fallback = None
        if head is not None and view.production is None and head.production and not exists.get(head.production, True):
            fallback = self._first_existing(mv.rollback_candidates(head), found)[0]
        mirror_problems = []
        for key, value in sorted(view.tags.items()):
            suffix = key[len(self.mirror_prefix) :]
            if not key.startswith(self.mirror_prefix):
                continue
            if not suffix.isdigit():
                mirror_problems.append((key, f"{suffix!r} is not a move number"))
                continue
            try:
                mv.parse_move(value, int(suffix))
            except ValueError as exc:
                mirror_problems.append((key, str(exc)))
        return Snapshot(
            view.production,
            head,
            view.head_problem,
            pending,
            exists,
            archived,
            last_move,
            fallback,
            tuple(mirror_problems),
            tuple(self._stale_runs()),
        )

    def _mirror_move(self, tags: dict[str, str], seq: int) -> Move | None:
        text = tags.get(self.mirror_key(seq))
        if text is None:
            return None
        try:
            return mv.parse_move(text, seq)
        except ValueError:
            return None

    def _first_existing(
        self, candidates: list[str], found: dict[str, Any] | None = None
    ) -> tuple[str | None, list[str]]:
        """The first candidate version that still exists, and the deleted ones passed over."""
        skipped = []
        found = {} if found is None else found
        for candidate in candidates:
            if candidate not in found:
                found[candidate] = self._version(candidate)
            if found[candidate] is not None:
                return candidate, skipped
            skipped.append(candidate)
        return None, skipped

    def _stale_runs(self) -> list[tuple[str, str]]:
        """Runs of our experiments still RUNNING whose process is gone (or, elsewhere, older than a day)."""
        names = {
            self.settings.experiments.training,
            self.settings.experiments.comparisons,
            self.settings.experiments.monitoring,
            self.settings.experiments.cycles,
        }
        ids = self._experiment_ids(names)
        if not ids:
            return []
        runs = self.client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=200)
        stale = []
        for run in runs:
            why = process_gone(
                run.data.tags.get(RUN_HOST), run.data.tags.get(RUN_PID), run.info.start_time, STALE_RUN_HOURS
            )
            if why:
                stale.append((run.info.run_id, why))
        return stale

    def _experiment_ids(self, names: set[str]) -> list[str]:
        """Ids of the named active experiments. Looking an experiment up by name scans the experiments
        table in MLflow's SQL store (the move log adds a row per move), so names sharing a prefix are
        found with one search instead of one look-up each."""
        from mlflow.entities import ViewType

        prefix = os.path.commonprefix(sorted(names))
        if len(names) > 1 and len(prefix) >= 3:
            pattern = prefix.replace("'", "''")
            found, token = [], None
            while True:
                page = self.client.search_experiments(
                    view_type=ViewType.ACTIVE_ONLY,
                    max_results=1000,
                    filter_string=f"name LIKE '{pattern}%'",
                    page_token=token,
                )
                found += [e.experiment_id for e in page if e.name in names]
                token = page.token
                if not token:
                    return found
        return [
            e.experiment_id for e in (self.client.get_experiment_by_name(n) for n in sorted(names)) if e is not None
        ]

    def problems(self) -> list[Problem]:
        return mv.diagnose(self._snapshot(self._read()), self.head_key)

    def repair(self, actor: str | None = None) -> list[Problem]:
        """Fix what status finds, one blocking problem at a time (each fix changes what the next read shows)."""
        fixed: list[Problem] = []
        for _ in range(12):
            problems = self.problems()
            if not problems:
                break
            blocking = [p for p in problems if p.blocking]
            for problem in blocking[:1] or problems:
                self._fix(problem, actor)
                fixed.append(problem)
        return fixed

    def _fix(self, problem: Problem, actor: str | None) -> None:
        from retrain.tracking import actor as who

        view = self._read()
        head = view.head or Head()
        actor = actor or who()
        name = self.name
        if problem.action == "complete":
            entry = self.ledger.get(int(problem.target))
            move, _ = _entry_move(entry) if entry else (None, None)
            if entry is None or move is None:
                return
            self._apply(move, head, view, None)
            self.ledger.hide(entry)
            self._notify(
                move, {"kind": "repaired", "version": move.to_version, "reason": f"finished {move.describe()}"}
            )
        elif problem.action == "abort":
            seq = int(problem.target)
            entry = self.ledger.get(seq)
            move, unreadable = _entry_move(entry) if entry else (None, "missing")
            if move is None:
                move = Move(
                    seq,
                    head.production,
                    head.production,
                    _now(),
                    actor,
                    "repair",
                    f"unreadable record ({unreadable}) aborted by `retrain status --repair`",
                )
            self._abort(move, head, problem.what, entry)
        elif problem.action in ("record_external", "replace_deleted"):
            external = problem.action == "record_external"
            to = problem.target or None
            reason = (
                "recorded by `retrain status --repair`: the alias was moved outside retrain"
                if external
                else f"by `retrain status --repair`: production version {head.production} was deleted"
            )
            try:
                move = self._move(view, to, "external" if external else "repair", reason, actor, notify=False)
            except Refused:
                return  # somebody else moved first: the next round re-reads
            self._notify(move, {"kind": "repaired", "version": to, "reason": reason})
        elif problem.action == "restore_alias":
            self.client.set_registered_model_alias(name, self.spec.production_alias, problem.target)
            self._notify(
                Move(head.seq, None, problem.target, _now(), actor, "repair", ""),
                {"kind": "repaired", "version": problem.target, "reason": "production alias restored"},
            )
        elif problem.action == "rebuild_head":
            self._rebuild_head(view)
        elif problem.action == "rewrite_mirror":
            self._rewrite_mirror(problem.target)
        elif problem.action == "archive":
            self._set_version_tag(problem.target, ARCHIVED, _now())
        elif problem.action == "unarchive":
            self.client.delete_model_version_tag(name, problem.target, ARCHIVED)
        elif problem.action == "kill_run":
            self.client.set_terminated(problem.target, "KILLED")

    def _rebuild_head(self, view: View) -> None:
        """Replay the whole move log into a new head (repair only: linear in the history)."""
        seqs = [
            int(k[len(self.mirror_prefix) :])
            for k in view.tags
            if k.startswith(self.mirror_prefix) and k[len(self.mirror_prefix) :].isdigit()
        ]
        seq, log_moves = 1, []
        top = max(seqs, default=0)
        while True:
            entry = self.ledger.get(seq)
            if entry is None and seq > top:
                break
            move = _entry_move(entry)[0] if entry else None
            if move is not None:
                log_moves.append(move)
            seq += 1
        last = log_moves[-1] if log_moves else None
        if last is not None and not last.aborted and view.production != last.to_version:
            log_moves = log_moves[:-1]  # unfinished: stays pending for the next round
        self.client.set_registered_model_tag(self.name, self.head_key, mv.head_from(log_moves).to_json())

    def _rewrite_mirror(self, key: str) -> None:
        suffix = key[len(self.mirror_prefix) :]
        entry = self.ledger.get(int(suffix)) if suffix.isdigit() else None
        move = _entry_move(entry)[0] if entry else None
        if move is None:
            self.client.delete_registered_model_tag(self.name, key)
        else:
            self.client.set_registered_model_tag(self.name, key, move.to_json())

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
        if self.head_key not in self._read(migrate=False).tags:
            self.client.set_registered_model_tag(self.name, self.head_key, mv.head_from(moves).to_json())

    # ---- reporting --------------------------------------------------------------------------------

    def history_page(self, limit: int = 20, before: int | None = None) -> list[Logged]:
        """Moves of production, newest first: at most `limit`, numbered below `before` if given."""
        view = self._read()
        head_seq = (
            view.head.seq
            if view.head is not None
            else max(
                (
                    int(k[len(self.mirror_prefix) :])
                    for k in view.tags
                    if k.startswith(self.mirror_prefix) and k[len(self.mirror_prefix) :].isdigit()
                ),
                default=0,
            )
        )
        entries: list[tuple[int, Entry | None]] = []
        if before is None:
            pending = self.ledger.get(head_seq + 1)
            entries = [(head_seq + 1, pending)] if pending is not None else []
            top = head_seq
        else:
            top = min(before - 1, head_seq)
        entries += self.ledger.page(top, limit - len(entries))
        out: list[Logged] = []
        exists: dict[str, bool] = {}
        for seq, entry in entries:
            if entry is None:
                if seq > head_seq:
                    continue
                mirror = self._mirror_move(view.tags, seq)
                out.append(
                    Logged(
                        seq,
                        mirror,
                        "missing" if mirror is None else "applied",
                        "not in the move log (removed by `mlflow gc`?)",
                    )
                )
                continue
            move, problem = _entry_move(entry)
            if move is None:
                out.append(Logged(seq, None, "unreadable", problem))
                continue
            state = "unfinished" if seq > head_seq else "aborted" if move.aborted else "applied"
            deleted = []
            for version in dict.fromkeys(v for v in (move.from_version, move.to_version) if v):
                if version not in exists:
                    exists[version] = self._version(version) is not None
                if not exists[version]:
                    deleted.append(version)
            out.append(Logged(seq, move, state, None, tuple(deleted)))
        return out

    def history(self, limit: int = 20, before: int | None = None) -> list[Move]:
        """The readable moves of `history_page`, newest first."""
        return [entry.move for entry in self.history_page(limit, before) if entry.move is not None]

    def status(self, *, repair: bool = False) -> dict[str, Any]:
        """Production and staging with metrics and age; problems (or what was repaired); notes."""
        repaired = [asdict(p) for p in self.repair()] if repair else []
        if repair:
            view = self._read()
            self.refresh_descriptions(view.production, view.staging)
        view = self._read()
        found: dict[str, Any] = {}
        snapshot = self._snapshot(view, found)
        problems = mv.diagnose(snapshot, self.head_key)
        out: dict[str, Any] = {"model_name": self.name, "versions": {}, "repaired": repaired}
        for role, version in (("production", view.production), ("staging", view.staging)):
            if version and version not in found:
                found[version] = self._version(version)
            out["versions"][role] = self._describe(version, found[version]) if version else None
        notes = []
        head = view.head
        if head is not None and head.production and view.production == head.production:
            target, skipped = self._first_existing(mv.rollback_candidates(head), found)
            for version in skipped:
                notes.append(f"version {version} served before and no longer exists: rollback skips it")
            out["rollback_target"] = target
        if (
            snapshot.last_move is not None
            and snapshot.last_move.from_version
            and not snapshot.exists.get(snapshot.last_move.from_version, True)
        ):
            notes.append(
                f"version {snapshot.last_move.from_version} (production before move #{snapshot.last_move.seq}) "
                "no longer exists"
            )
        out["moves"] = head.seq if head is not None else None
        out["problems"] = [asdict(p) for p in problems]
        out["notes"] = list(dict.fromkeys(notes))
        out["consistent"] = not problems
        return out

    def _describe(self, version: str, found: Any) -> dict[str, Any]:
        if found is None:
            return {"version": version, "deleted": True}
        tags = found.tags or {}
        trained_at = tags.get("retrain.trained_at")
        age_days = None
        try:
            if trained_at:
                age_days = round(
                    (datetime.now(UTC) - datetime.fromisoformat(trained_at)).total_seconds() / 86400, 2
                )
        except ValueError:
            pass
        try:
            metrics = json.loads(tags.get("retrain.metrics", "{}"))
            metrics = (
                {k: v for k, v in metrics.items() if isinstance(v, (int, float))} if isinstance(metrics, dict) else {}
            )
        except ValueError:
            metrics = {}
        comparison = tags.get("retrain.comparison_run_id")
        return {
            "version": str(found.version),
            "run_id": found.run_id,
            "as_of": tags.get("retrain.as_of"),
            "trained_at": trained_at,
            "age_days": age_days,
            "metrics": metrics,
            "rolled_back": rolled_back_mark(tags),
            "last_comparison": {"run_id": comparison, "decision": tags.get("retrain.decision")} if comparison else None,
        }


def _is_v2(text: str) -> bool:
    try:
        return json.loads(text).get("v") == 2
    except (ValueError, AttributeError):
        return False


def _entry_move(entry: Entry) -> tuple[Move | None, str | None]:
    """The move an entry holds (aborted if so marked), or None and what is wrong with it."""
    if entry.record is None:
        return None, entry.problem
    try:
        move = mv.parse_move(entry.record, entry.seq)
    except ValueError as exc:
        return None, str(exc)
    return (replace(move, aborted=True) if ABORTED in entry.marks else move), None


def _describe_entry(entry: Entry | None) -> str:
    if entry is None:
        return "its record is gone"
    move, problem = _entry_move(entry)
    return move.describe() if move is not None else f"move #{entry.seq}, unreadable: {problem}"


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


def process_gone(host: str | None, pid: str | None, started_ms: int | None, stale_hours: float) -> str | None:
    """Why a RUNNING run's process is gone (None if it may be alive).

    On this host the recorded pid is checked (and a pid re-used by a later process counts as gone);
    elsewhere retrain cannot see the process, so a run older than `stale_hours` counts as gone.
    """
    import time

    age_h = (time.time() * 1000 - (started_ms or 0)) / 3_600_000
    if host == socket.gethostname() and pid and pid.isdigit():
        started = _process_start(int(pid))
        if started is None:
            return f"its process {pid} on this host is gone"
        if started_ms is not None and started > started_ms / 1000 + 1:
            return f"its process {pid} on this host is gone (the pid now belongs to a newer process)"
        return None
    if age_h > stale_hours:
        where = f"it was started on {host}" if host else "it records no host"
        return (
            f"{where} {age_h:.0f} h ago; retrain cannot see processes there, so a run older than "
            f"{stale_hours:g} h counts as dead"
        )
    return None


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds); None if there is no such live process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0  # alive, start time unknown


MODEL_HEADER = "Churn classifier managed by retrain: @{staging} = candidate, @{production} = serving."


def _run_link(client: Any, run_id: str | None, label: str | None = None) -> str:
    from retrain.describe import run_link

    if not run_id:
        return "-"
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
    except Exception:
        experiment_id = None
    return run_link(experiment_id, run_id, label)


def write_model_description(registry: Registry, move: Move | None = None, previous: str | None = None) -> None:
    """The registered model's description: production now and the latest moves, newest first. After `move`
    its row goes on top of the rows shown (constant calls); without, the table is redrawn from the move log."""
    from retrain.describe import HISTORY_ROWS, history_after_move, history_markdown, move_row, run_link

    spec, client = registry.spec, registry.client
    header = MODEL_HEADER.format(staging=spec.staging_alias, production=spec.production_alias)

    def row(m: Move) -> str:  # the UI's direct run links (#/runs/<id>): no read per row while production moves
        return move_row(registry.name, m, run_link(None, m.comparison_run_id, "comparison"))

    if move is not None:
        if previous is None:
            previous = client.get_registered_model(registry.name).description
        text = history_after_move(registry.name, move.to_version, row(move), previous, header)
    else:
        moves = registry.history(limit=HISTORY_ROWS + 1)
        text = history_markdown(registry.name, registry.state().production, [row(m) for m in moves], header)
    client.update_registered_model(registry.name, description=text)


def write_version_description(client: Any, settings: Settings, version: str) -> None:
    """A version's description: trained on, validation metrics, fate (from its tags and aliases)."""
    found = client.get_model_version(settings.registry.model_name, version)
    text = version_description(settings, str(version), found.tags or {}, found.aliases or [])
    client.update_model_version(settings.registry.model_name, version, description=text)


def version_description(settings: Settings, version: str, tags: dict[str, str], aliases: Any) -> str:
    """The text of `write_version_description`, drawn from given tags and aliases (no reads: its run link is
    the UI's direct route)."""
    from retrain.describe import run_link, version_markdown

    reg = settings.registry
    comparison = tags.get("retrain.comparison_run_id")
    link = run_link(None, comparison, "comparison") if comparison else None
    return version_markdown(
        reg.model_name,
        version,
        tags,
        aliases,
        production_alias=reg.production_alias,
        staging_alias=reg.staging_alias,
        comparison=link,
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
