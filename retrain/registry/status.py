"""What `retrain status` reports: production and staging with their metrics and age, the rollback target,
the problems the audit finds (or, with --repair, what was fixed first) and notes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import retrain.registry.audit as audit
import retrain.registry.repair as repairs
import retrain.registry.rules as mv
from retrain.registry.access import RegisteredModel
from retrain.registry.descriptions import refresh_descriptions
from retrain.registry.marks import rolled_back_mark
from retrain.version_tags import expand


def status(model: RegisteredModel, *, repair: bool = False) -> dict[str, Any]:
    """Production and staging with metrics and age; problems (or what was repaired); notes."""
    repaired = [asdict(p) for p in repairs.repair(model)] if repair else []
    if repair:
        view = model.read()
        refresh_descriptions(model, view.production, view.staging)
    view = model.read()
    found: dict[str, Any] = {}
    snapshot = audit.snapshot(model, view, found)
    problems = mv.diagnose(snapshot, model.head_key)
    out: dict[str, Any] = {"model_name": model.name, "versions": {}, "repaired": repaired}
    for role, version in (("production", view.production), ("staging", view.staging)):
        if version and version not in found:
            found[version] = model.find_version(version)
        out["versions"][role] = describe_version(version, found[version]) if version else None
    notes = [view.recreated] if view.recreated else []
    head = view.head
    if head is not None and head.production and view.production == head.production:
        target, skipped = audit.first_existing(model, mv.rollback_candidates(head), found)
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
    out["moves"] = model.recorded_top(view) if head is not None else None  # not a number edited past the log
    out["problems"] = [asdict(p) for p in problems]
    out["notes"] = list(dict.fromkeys(notes))
    out["consistent"] = not problems
    return out


def describe_version(version: str, found: Any) -> dict[str, Any]:
    """A version as status shows it (run, as-of, metrics, rolled-back mark, last comparison), or deleted. Its age
    is data time (the latest data day minus its as-of, as the age trigger counts it): the command adds it."""
    if found is None:
        return {"version": version, "deleted": True}
    tags = expand(found.tags)
    trained_at = tags.get("retrain.trained_at")
    try:
        metrics = json.loads(tags.get("retrain.metrics", "{}"))
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))} if isinstance(metrics, dict) else {}
    except ValueError:
        metrics = {}
    comparison = tags.get("retrain.comparison_run_id")
    return {
        "version": str(found.version),
        "run_id": found.run_id,
        "as_of": tags.get("retrain.as_of"),
        "trained_at": trained_at,
        "metrics": metrics,
        "rolled_back": rolled_back_mark(tags),
        "last_comparison": {"run_id": comparison, "decision": tags.get("retrain.decision")} if comparison else None,
    }
