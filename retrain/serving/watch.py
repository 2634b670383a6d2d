"""`retrain watch`: after a promotion, compare the new production's live accuracy with the previous one's;
roll back on a regression.

The watched move is the latest move of production in the registry history (a rollback is never
watched); every move into production is watched once, so a version promoted again is watched again: the
decision is kept per move (version tag `retrain.watch.<move seq>`, and `retrain.watch` for the latest).
New: what the new version served since the move, with feedback labels. Old: what the previous version
served as production in an equally long period before the move, when the log has `min_labels` labelled
records of it; else its recorded validation accuracy and row count (version tags). The test is
`stats.regression` (one-sided, beyond `watch.max_drop`, at `watch.alpha`). A regression rolls back
through `Registry.rollback` with the evidence as the reason, sends a `rolled_back` event and tags the
version; the watch ends at the first decision or after `watch.period_minutes`. Every decision is a run
in the monitoring experiment.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from retrain.config import Settings
from retrain.errors import RegistryError
from retrain.version_tags import expand

log = logging.getLogger("retrain.serving")
WATCH_TAG = "retrain.watch"


@dataclass(frozen=True)
class WatchResult:
    """One look: state (waiting | passed | regressed | rolled_back | nothing), why, and the numbers behind it."""

    state: str
    reason: str
    model_name: str
    version: str | None = None
    previous_version: str | None = None
    since: str | None = None
    new: dict[str, Any] | None = None
    old: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    run_id: str | None = None
    move_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def watch_once(settings: Settings, *, now: datetime | None = None) -> WatchResult:
    """Look once at the latest promotion; roll back when the new production regressed significantly."""
    from retrain.registry import Registry
    from retrain.serving.predlog import PredictionLog
    from retrain.serving.stats import regression

    policy = settings.watch
    name = settings.registry.model_name
    registry = Registry(settings)
    state = registry.state()
    moves = [e.move for e in registry.history_page(limit=10) if e.state == "applied" and e.move is not None]
    move = moves[0] if moves else None  # the latest applied move, newest first
    if move is None or move.kind == "rollback" or move.from_version is None or move.to_version is None:
        if move is None:
            what = "no move of production recorded"
        elif move.kind == "rollback":
            what = "the latest move of production is a rollback"
        elif move.to_version is None:
            what = "the latest move of production left no version serving"
        else:
            what = "the first production version has no predecessor"
        return WatchResult("nothing", f"nothing to watch: {what}", name, state.production)
    new_v, old_v = move.to_version, move.from_version
    Result = partial(WatchResult, move_seq=move.seq)
    if state.production != new_v:
        return Result(
            "nothing",
            f"production is version {state.production}, not {new_v} of the latest move; run `retrain status`",
            name,
            state.production,
        )
    decided = _decided(registry, new_v, move)
    if decided:
        return Result(
            "nothing",
            f"move #{move.seq} (version {old_v} -> {new_v}) was already watched: {decided}",
            name,
            new_v,
            old_v,
            move.at,
        )
    moved_at = datetime.fromisoformat(move.at).astimezone(UTC).replace(tzinfo=None)
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    period = timedelta(minutes=policy.period_minutes)
    predictions = PredictionLog.existing(settings.serving.log_url)
    try:  # counted in the database: the windows can hold a day of traffic
        new_tally = predictions.tally(name, since=moved_at, variants=("production",), versions=(new_v,))
        old_tally = predictions.tally(
            name, since=moved_at - period, until=moved_at, variants=("production",), versions=(old_v,)
        )
    finally:
        predictions.engine.dispose()
    new_correct, new_n = new_tally["correct"], new_tally["labelled"]
    old_correct, old_n = old_tally["correct"], old_tally["labelled"]
    old = {"version": old_v, "source": "live", "labelled": old_n, "accuracy": old_correct / old_n if old_n else None}
    if old_n < policy.min_labels:
        tags = expand(registry.version(old_v).tags)
        recorded = json.loads(tags.get("retrain.metrics", "{}")).get("accuracy")
        rows = int(tags.get("retrain.validation_rows", "0") or 0)
        if recorded is None or rows < 1:
            return Result(
                "waiting",
                f"version {old_v} has {old_n} labelled live records (need {policy.min_labels}) "
                "and no recorded validation accuracy to compare with",
                name,
                new_v,
                old_v,
                move.at,
            )
        old_correct, old_n = int(round(recorded * rows)), rows
        old = {"version": old_v, "source": "recorded validation metrics", "labelled": rows, "accuracy": recorded}
    new = {
        "version": new_v,
        "labelled": new_n,
        "accuracy": new_correct / new_n if new_n else None,
        "records": new_tally["records"],
    }
    ends = moved_at + period
    if new_n < policy.min_labels:
        if now >= ends:
            return _finish(
                settings,
                Result(
                    "passed",
                    f"watch period of {policy.period_minutes:g} min ended with {new_n} labelled records of version "
                    f"{new_v} (fewer than {policy.min_labels}): no evidence of a regression",
                    name,
                    new_v,
                    old_v,
                    move.at,
                    new,
                    old,
                ),
                final=True,
            )
        return Result(
            "waiting",
            f"version {new_v} has {new_n}/{policy.min_labels} labelled live records so far",
            name,
            new_v,
            old_v,
            move.at,
            new,
            old,
        )
    test = regression(new_correct, new_n, old_correct, old_n, policy.max_drop, policy.alpha)
    if not test.regressed:
        if now >= ends:
            return _finish(
                settings,
                Result("passed", test.reason, name, new_v, old_v, move.at, new, old, test.to_dict()),
                final=True,
            )
        return Result("waiting", test.reason, name, new_v, old_v, move.at, new, old, test.to_dict())
    if not policy.rollback:
        return _finish(
            settings,
            Result(
                "regressed",
                test.reason + "; watch.rollback is off: production stays",
                name,
                new_v,
                old_v,
                move.at,
                new,
                old,
                test.to_dict(),
            ),
            final=True,
        )
    rolled = registry.rollback(reason=f"watch: {test.reason}")
    from retrain import notify

    notify.notify(
        settings,
        {
            "kind": "rolled_back",
            "model": name,
            "version": rolled.to_version,
            "from_version": rolled.from_version,
            "reason": f"watch: {test.reason}",
        },
    )
    return _finish(
        settings,
        Result("rolled_back", test.reason, name, new_v, old_v, move.at, new, old, test.to_dict(), asdict(rolled)),
        final=True,
    )


def _decided(registry, version: str, move) -> str | None:
    """The recorded decision on `move`, if any. A version watched before decisions were kept per move carries
    only `retrain.watch`: it counts for this move when its run started after the move."""
    tags = registry.version(version).tags or {}
    found = tags.get(f"{WATCH_TAG}.{move.seq}")
    if found or not tags.get(WATCH_TAG) or any(k.startswith(f"{WATCH_TAG}.") for k in tags):
        return found
    legacy = tags[WATCH_TAG]
    run_id = legacy.rsplit("(", 1)[-1].rstrip(")")
    try:
        started = registry.client.get_run(run_id).info.start_time / 1000
    except Exception:
        return None
    return legacy if started >= datetime.fromisoformat(move.at).timestamp() else None


def _finish(settings: Settings, result: WatchResult, *, final: bool = True) -> WatchResult:
    """Log the decision as a run; mark the move (on its version) so later looks at it do nothing."""
    import mlflow

    from retrain import tracking
    from retrain.registry import Registry

    tags = {
        "retrain.model_name": result.model_name,
        "retrain.watch_state": result.state,
        "retrain.watched_version": str(result.version),
        "retrain.previous_version": str(result.previous_version),
        "retrain.move_seq": str(result.move_seq),
        "retrain.reason": result.reason[:5000],
    }
    with tracking.step_run(settings.experiments.monitoring, f"watch-v{result.version}", tags) as run:
        metrics = {}
        for side, values in (("new", result.new), ("old", result.old)):
            for key in ("accuracy", "labelled"):
                if values and values.get(key) is not None:
                    metrics[f"{side}_{key}"] = float(values[key])
        if result.test:
            metrics["p_value"] = result.test["p_value"]
        mlflow.log_metrics(metrics)
        tracking.log_json(result.to_dict(), "watch.json")
    if final and result.version:
        client = Registry(settings).client
        value = f"{result.state} ({run.info.run_id})"
        client.set_model_version_tag(result.model_name, result.version, f"{WATCH_TAG}.{result.move_seq}", value)
        client.set_model_version_tag(result.model_name, result.version, WATCH_TAG, value)
    return WatchResult(**{**asdict(result), "run_id": run.info.run_id})


def watch(settings: Settings, *, once: bool = False, on_look=None) -> WatchResult:
    """Look every `watch.interval_s` until a decision (passed, rolled back) or nothing to watch; once with `once`."""
    while True:
        try:
            result = watch_once(settings)
        except RegistryError as exc:  # e.g. production moved between reading and rolling back: look again
            if once:
                raise
            log.warning("watch: %s", exc)
        else:
            if on_look is not None:
                on_look(result)
            if once or result.state != "waiting":
                return result
        time.sleep(settings.watch.interval_s)
