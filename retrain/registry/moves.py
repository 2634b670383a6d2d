"""Moving the production alias: promote, rollback, and the claim-then-apply every move (repair's included)
goes through. A move claims its number in the move log, re-reads the registry, then writes the alias, the
version tags, the mirror and, last, the head; a claimed move that cannot be finished is recorded as aborted.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date
from functools import partial
from typing import Any

import retrain.registry.audit as audit
import retrain.registry.rules as mv
from retrain.errors import NotifyError, Refused, RegistryError
from retrain.ledger import Entry, Taken
from retrain.registry.access import RegisteredModel, View, describe_entry, entry_move, iso_ms, missing, utc_now
from retrain.registry.descriptions import refresh_descriptions
from retrain.registry.marks import ABORTED, ARCHIVED, rolled_back_mark, version_changes
from retrain.registry.rules import Head, Move

REPAIR_HINT = "run `retrain status` to see it and `retrain status --repair` to fix it"
CLAIM_MINUTES = 10  # a move claimed on another host and unfinished after this long counts as abandoned


def promote(
    model: RegisteredModel,
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
    view = writable(model)
    head = view.head
    assert head is not None
    candidate = str(candidate) if candidate else view.staging
    if candidate is None:
        raise RegistryError(
            f"no candidate: alias @{model.spec.staging_alias} of {model.name} is not set; "
            "run `retrain train` or pass --candidate VERSION"
        )
    found = model.find_versions(candidate, head.production)
    version = model.existing(candidate, found[candidate])
    if candidate == head.production:
        raise Refused(f"candidate version {candidate} is already @{model.spec.production_alias}; nothing to promote")
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
        run = check_comparison(model, candidate, head, as_of)
        comparison_id, metrics = run.info.run_id, dict(run.data.metrics or {})
        kind = "promote"
        reason = reason or run.data.tags.get("retrain.reason", "comparison passed the gate")
    move = move_production(
        model,
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
        metric = model.settings.gate.primary_metric
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
        announce(model, move, event)
    return move


def check_comparison(model: RegisteredModel, candidate: str, head: Head, as_of: date | None) -> Any:
    """The latest comparison run of `candidate` if it allows promoting it now; Refused saying why not."""
    run = model.latest_comparison(candidate)
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
    moved = iso_ms(head.moved_at)
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
    model: RegisteredModel,
    to: str | None = None,
    *,
    reason: str | None = None,
    force: bool = False,
    actor: str | None = None,
    notify: bool = True,
) -> Move:
    """Move production back to the previous production version (or `to`), skipping deleted versions."""
    view = writable(model)
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
        found = model.find_versions(to, head.production)
        target = model.existing(to, found[to])
        tags = target.tags or {}
        if ARCHIVED not in tags and to not in head.stack and not force:  # archived: it served, then stopped
            raise Refused(f"version {to} never served as production; add --force to roll back to it anyway")
    else:
        target = None
        for candidate in mv.rollback_candidates(head):
            found.update(model.find_versions(candidate, None if found else head.production))
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
    move = move_production(
        model,
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
        announce(
            model,
            move,
            {
                "kind": "rolled_back",
                "version": to,
                "from_version": move.from_version,
                "reason": move.reason + extra,
            },
        )
    return move


def writable(model: RegisteredModel) -> View:
    """The registry read for a move; RegistryError naming `status --repair` if anything is unrepaired."""
    from retrain import notify

    notify.ensure_writable(model.settings)
    view = model.read()
    if view.head is not None and view.production == view.head.production and mirror_agrees(model, view):
        return view
    blocking = [p for p in mv.diagnose(audit.snapshot(model, view), model.head_key) if p.blocking]
    if not blocking and view.head is not None and view.production == view.head.production:
        return view
    if not blocking:
        raise RegistryError(
            f"refusing to move production of {model.name}: production and the recorded history disagree; {REPAIR_HINT}"
        )
    raise refusal(model, blocking[0], view)


def refusal(model: RegisteredModel, problem: mv.Problem, view: View) -> RegistryError:
    """The one line a writer refuses with: wait for a move still being made, else repair `problem`."""
    if problem.action == "complete" and view.head is not None:
        entry = model.ledger.get(int(problem.target))
        move = entry_move(entry)[0] if entry is not None else None
        busy = still_moving(move) if move is not None else None
        if busy:
            return Refused(f"{busy}; nothing changed: try again once it has finished")
    now = model.read(migrate=False, probe=False)
    if view.head is not None and now.head is not None and now.head.seq > view.head.seq:  # it finished meanwhile
        return Refused(
            f"production of {model.name} was moved by another command meanwhile (move #{now.head.seq}); "
            "nothing changed: see `retrain status` and try again"
        )
    return RegistryError(f"refusing to move production of {model.name}: {problem.what}; {REPAIR_HINT}")


def mirror_agrees(model: RegisteredModel, view: View) -> bool:
    """Whether the head agrees with the mirror of its own move (free: the tags are read): the move a head names
    has its mirror written before the head, with the same token and, unless aborted, the same production."""
    head = view.head
    assert head is not None
    if head.seq == 0 or view.recreated is not None:
        return True
    move = model.mirror_move(view.tags, head.seq)
    if move is None:
        return False
    return (not head.token or move.token == head.token) and (move.aborted or move.to_version == head.production)


def still_moving(move: Move) -> str | None:
    """'another move ... is in progress' when the command that claimed `move` may still be running: its
    process is alive on this host, or it runs elsewhere and claimed the move less than CLAIM_MINUTES ago."""
    if move.host == socket.gethostname() and move.pid == os.getpid():
        return None  # claimed by a call of this very process that raised: nobody is finishing it
    if audit.process_gone(move.host, str(move.pid), iso_ms(move.at), CLAIM_MINUTES / 60) is not None:
        return None
    where = f"process {move.pid} on {move.host}" if move.host else "another process"
    return f"another move of production is in progress: {move.describe()}, by {where}"


def move_production(
    model: RegisteredModel,
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
        utc_now(),
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
        entry = model.ledger.claim(move.seq, move.record(), hide=False)  # hidden with the move's other writes
    except Taken as taken:
        raise lost(model, move, taken.entry) from None
    now = model.read(migrate=False, probe=view.recreated is not None)
    if now.head is None or now.head.seq != head.seq:
        if now.head is not None and now.head.seq >= move.seq:  # our number was re-used after `mlflow gc`
            model.ledger.mark(entry, ABORTED, json.dumps({"at": utc_now(), "why": "stale claim"}))
        else:
            model.ledger.hide(entry)
        raise Refused(f"production of {model.name} moved while this command ran; nothing changed, try again")
    if now.production != view.production:
        model.ledger.hide(entry)
        raise RegistryError(
            f"production of {model.name} was moved outside retrain while this command ran (now "
            f"{now.production or '(none)'}); move #{move.seq} is unfinished: {REPAIR_HINT}"
        )
    # The descriptions (a rendering of what the move wrote) are redrawn while the head is written.
    found = found or {}
    target = found.get(to) if to is not None else None
    apply_move(
        model,
        move,
        head,
        now,
        (target.tags or {}) if target is not None else None,
        also=[lambda: model.ledger.hide(entry)],
        with_head=[
            lambda: refresh_descriptions(
                model, move.from_version, move.to_version, move=move, previous=now.description, found=found, view=now
            )
        ],
    )
    if notify:
        announce(
            model, move, {"kind": move.kind, "version": to, "from_version": move.from_version, "reason": move.reason}
        )
    return move


def lost(model: RegisteredModel, move: Move, entry: Entry | None) -> RegistryError:
    """Why claiming `move` failed, read again: another command finished a move meanwhile, or is still making
    it (try again), or the registry needs repair (a dead mover's claim, a head behind the move log)."""
    other = describe_entry(entry)
    view = model.read(migrate=False)
    if view.head is not None and view.head.seq >= move.seq:
        return Refused(
            f"production of {model.name} was moved by another command meanwhile ({other}); nothing changed: "
            "see `retrain status` and try again"
        )
    blocking = [p for p in mv.diagnose(audit.snapshot(model, view), model.head_key) if p.blocking]
    if blocking:
        return refusal(model, blocking[0], view)
    return Refused(f"production of {model.name} was moved by another command at the same time ({other}); try again")


def apply_move(
    model: RegisteredModel,
    move: Move,
    head: Head,
    view: View,
    to_tags: dict[str, str] | None,
    *,
    also: Sequence[Callable[[], Any]] = (),
    with_head: Sequence[Callable[[], Any]] = (),
) -> None:
    """Every write of a claimed move, alias first and head last; idempotent, so repair can redo it.
    `also`: more calls to make between the two; `with_head`: calls to make alongside the head's write."""
    from mlflow.exceptions import MlflowException

    name, prod = model.name, model.spec.production_alias
    to = move.to_version
    try:
        if to is None:
            model.client.delete_registered_model_alias(name, prod)
        elif view.production != to:
            model.client.set_registered_model_alias(name, prod, to)
    except MlflowException as exc:
        if not missing(exc):
            raise
        abort_move(model, move, head, f"version {to} no longer exists")
        raise RegistryError(
            f"version {to} of {model.name} was deleted while moving production; nothing "
            f"changed (move #{move.seq} recorded as aborted)"
        ) from None
    # Between the alias (the move itself) and the head (its completion mark) every write is independent of
    # the others and repair redoes any of them; through a tracking server they go out together.
    writes: list[Callable[[], Any]] = []
    for version, changes in version_changes(move).items():
        for key, value in changes.items():
            if value is not None:
                writes.append(partial(model.set_version_tag, version, key, value))
            elif to_tags is None or key in to_tags:
                writes.append(partial(model.client.delete_model_version_tag, name, version, key))
    writes += model.mirror_writes(move, view.tags)
    if to is not None and view.staging == to:
        writes.append(lambda: model.client.delete_registered_model_alias(name, model.spec.staging_alias))
    model.together([*writes, *also])
    model.together(
        [lambda: model.client.set_registered_model_tag(name, model.head_key, head.after(move).to_json()), *with_head]
    )


def abort_move(model: RegisteredModel, move: Move, head: Head, why: str, entry: Entry | None = None) -> None:
    """Record claimed move `move` as aborted: mark its log entry, mirror it, advance the head past it."""
    entry = entry or model.ledger.get(move.seq)
    if entry is not None:
        model.ledger.mark(entry, ABORTED, json.dumps({"at": utc_now(), "why": mv.bounded(why, 1000)}))
    aborted = replace(move, aborted=True)
    model.write_mirror(aborted, model.read(migrate=False).tags)
    model.client.set_registered_model_tag(model.name, model.head_key, head.after(aborted).to_json())


def announce(model: RegisteredModel, move: Move, event: dict[str, Any]) -> None:
    """Notify `event` about `move`; NotifyError saying production moved all the same if that fails."""
    from retrain import notify

    event = {"model": model.name, "seq": move.seq, "actor": move.actor, **event}
    try:
        notify.notify(model.settings, event)
    except NotifyError as exc:
        raise NotifyError(
            f"production of {model.name} moved (move #{move.seq}: {move.from_version or '(none)'} "
            f"-> {move.to_version or '(none)'}) but the notification failed: {exc}"
        ) from None
