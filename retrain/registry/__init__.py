"""Moves of the production alias, their history, rollback, status and repair, inside the MLflow registry.

`Registry` is the one entry point: the registered model (`access.RegisteredModel`) with the operations below.
Each module has one job, and imports only those above it in this list (no circles):

- `rules`: the pure rules: move records, the head, rollback targets, diagnosis (no I/O)
- `marks`: the tags a move leaves on versions and log entries (pure)
- `access`: reading the registered model and its move log; the writes every part shares
- `history`: the move log paged newest first (`retrain history`)
- `descriptions`: the model and version descriptions the MLflow UI shows
- `audit`: a snapshot of the registry and the problems in it, runs of dead processes
- `moves`: promote, rollback, and the claim-then-apply every move goes through
- `repair`: fixing what the audit finds (`retrain status --repair`)
- `status`: what `retrain status` reports

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
- The head and the mirrors are derived from the log: where they disagree with it (behind, ahead, another
  move's token or production), repair rebuilds them from it, never the other way round. The alias is not
  derived: one that disagrees with the log was moved by hand, and repair records that as an external move.

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

from datetime import date
from typing import Any

import retrain.registry.audit as audit
import retrain.registry.history as history
import retrain.registry.moves as moves
import retrain.registry.repair as repair
import retrain.registry.status as status
from retrain.registry.access import ModelGone, RegisteredModel, State, View
from retrain.registry.history import Logged
from retrain.registry.marks import ABORTED, ARCHIVED, ROLLED_BACK
from retrain.registry.rules import Move, Problem

__all__ = ["ABORTED", "ARCHIVED", "ROLLED_BACK", "Logged", "ModelGone", "Registry", "State", "View"]


class Registry(RegisteredModel):
    """The registered model of one use case, through an MlflowClient, and what retrain does with it."""

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
        return moves.promote(self, candidate, force=force, reason=reason, actor=actor, as_of=as_of, notify=notify)

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
        return moves.rollback(self, to, reason=reason, force=force, actor=actor, notify=notify)

    def history_page(self, limit: int = 20, before: int | None = None) -> list[Logged]:
        """Moves of production, newest first: at most `limit`, numbered below `before` if given."""
        return history.history_page(self, limit, before)

    def history(self, limit: int = 20, before: int | None = None) -> list[Move]:
        """The readable moves of `history_page`, newest first."""
        return history.history(self, limit, before)

    def problems(self) -> list[Problem]:
        return audit.problems(self)

    def repair(self, actor: str | None = None) -> list[Problem]:
        """Fix what status finds, one blocking problem at a time."""
        return repair.repair(self, actor)

    def status(self, *, repair: bool = False) -> dict[str, Any]:
        """Production and staging with metrics and age; problems (or what was repaired); notes."""
        return status.status(self, repair=repair)
