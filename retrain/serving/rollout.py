"""The rollout state and its rules, free of I/O: modes, shares, canary stages and breach decisions.

A rollout is a record kept in the registry (see `state.py`); every change is a new record with the
next sequence number, so the records are the rollout's history. The router reads the latest one:

- `single`: production answers everything (also when no rollout is active);
- `ab`: entities in the candidate's share get the candidate, the rest production;
- `canary`: like `ab`, with the share walking through `stages`; the controller advances a stage when
  the candidate served `min_requests` records in it within the guardrails, stops the rollout (share 0)
  on a breach, and promotes after the last stage;
- `shadow`: production answers everything; the candidate scores the same records off the request path.

A rollout only applies while production is still the version it was started against and the candidate
is not production: a rollback or promotion in between turns it off (the router says why in /status).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from retrain.errors import ConfigError

MODES = ("single", "ab", "canary", "shadow")
STARTABLE = ("ab", "canary", "shadow")
ACTIVE = "active"
STATUSES = (ACTIVE, "stopped", "breached", "promoted", "blocked", "unreadable")


class RolloutError(ConfigError):
    """A rollout request that makes no sense: unknown mode, bad share or stages (one line, names the value)."""


@dataclass(frozen=True)
class Rollout:
    """One record of the rollout state."""

    mode: str
    candidate: str | None
    production: str | None
    share: float
    stages: tuple[float, ...] = ()
    stage: int = 0
    status: str = ACTIVE
    reason: str = ""
    at: str = ""
    started_at: str = ""
    stage_started_at: str = ""
    actor: str = ""
    guardrails: dict[str, Any] = field(default_factory=dict)
    seq: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Rollout:
        raw = json.loads(text)
        raw["stages"] = tuple(raw.get("stages") or ())
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages)}


@dataclass(frozen=True)
class Route:
    """What the router does right now: mode, candidate version and share, and why."""

    mode: str
    candidate: str | None = None
    share: float = 0.0
    note: str = ""

    @property
    def needs_candidate(self) -> bool:
        return self.mode != "single"


def validate_start(mode: str, share: float | None, stages: tuple[float, ...]) -> None:
    """RolloutError naming the bad value; nothing is written before this passes."""
    if mode not in STARTABLE:
        raise RolloutError(
            f"unknown rollout mode {mode!r}; use one of: {', '.join(STARTABLE)} "
            "(`retrain rollout stop` returns to single)"
        )
    if mode == "ab" and (share is None or not 0 < share <= 100):
        raise RolloutError(f"--share must be a percentage in (0, 100] for an A/B rollout, got {share}")
    if mode == "canary":
        if not stages or any(not 0 < s <= 100 for s in stages) or list(stages) != sorted(set(stages)):
            raise RolloutError(f"--stages must be increasing percentages in (0, 100], got {','.join(map(str, stages))}")
        if stages[-1] != 100:
            raise RolloutError(
                f"--stages must end at 100 (the canary promotes after the last stage), got "
                f"{','.join(f'{s:g}' for s in stages)}"
            )


def route(rollout: Rollout | None, production: str | None) -> Route:
    """The effective route for the current production version and the latest rollout record."""
    if rollout is None or rollout.mode == "single":
        return Route("single", note=rollout.reason if rollout is not None and rollout.status == "unreadable" else "")
    if rollout.status != ACTIVE:
        return Route("single")
    if rollout.mode not in STARTABLE:
        return Route(
            "single", note=f"rollout record #{rollout.seq} has unknown mode {rollout.mode!r}; serving production only"
        )
    if rollout.candidate is None or rollout.candidate == production:
        return Route("single", note=f"candidate version {rollout.candidate} is production now")
    if rollout.production != production:
        return Route(
            "single",
            note=f"production moved from version {rollout.production} to {production} "
            "after the rollout started; the rollout no longer applies",
        )
    if rollout.mode == "shadow":
        return Route("shadow", rollout.candidate, 100.0)
    if rollout.share <= 0:
        return Route("single", note="candidate share is 0")
    return Route(rollout.mode, rollout.candidate, rollout.share)


# ---- canary decisions -----------------------------------------------------------------------


@dataclass(frozen=True)
class VariantStats:
    """What the prediction log says about one variant over a period."""

    records: int = 0
    errors: int = 0
    p99_ms: float | None = None
    labelled: int = 0
    metric: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.records if self.records else 0.0


@dataclass(frozen=True)
class Step:
    """The controller's decision for one look at the log."""

    action: str  # wait | advance | breach | promote
    reason: str
    share: float


def stage_share(rollout: Rollout) -> float:
    return rollout.stages[rollout.stage] if rollout.stages else rollout.share


def excess_errors(candidate: VariantStats, production: VariantStats) -> float:
    """The candidate's errors beyond what production's error rate on the same window predicts for its records."""
    return max(0.0, candidate.errors - production.error_rate * candidate.records)


def canary_step(
    rollout: Rollout,
    candidate: VariantStats,
    production: VariantStats,
    live_candidate: VariantStats | None = None,
    live_production: VariantStats | None = None,
) -> Step:
    """Advance, wait, breach or promote, from the candidate's records in this stage.

    `candidate`/`production` cover the current stage (error rate and p99 latency judge the load the stage
    brought); `live_candidate`/`live_production` cover the whole rollout (labels arrive late, so the live
    metric uses every labelled row since the start). Errors are judged against production on the same window:
    records neither version can score (bad client input) fail both, so only the candidate's errors beyond
    production's rate count (`excess_errors`), and `max_error_rate` is the error rate the candidate may add.
    Rules, in order:
    1. before `min_requests` records, more excess errors than `max_error_rate * min_requests` breach at once
       (judged at `min_requests` records the stage could not pass: no need to send more traffic to it);
    2. with both variants at `min_labels` labelled rows, a live metric below production's by more than
       `max_metric_drop` breaches;
    3. fewer than `min_requests` candidate records: wait;
    4. error rate above production's by more than `max_error_rate`, or p99 above `max_p99_ms`: breach;
    5. otherwise advance to the next stage, or promote after the last one.
    """
    g = rollout.guardrails
    share = stage_share(rollout)
    where = f"stage {rollout.stage + 1}/{len(rollout.stages)} ({share:g}%)"
    excess = excess_errors(candidate, production)
    if candidate.records < g["min_requests"] and excess > g["max_error_rate"] * g["min_requests"]:
        return Step(
            "breach",
            f"{where}: {candidate.errors} candidate errors in {candidate.records} records ({excess:.1f} beyond "
            f"production's rate {production.error_rate:.4f} on the same window), more than max_error_rate "
            f"{g['max_error_rate']:g} allows in a {g['min_requests']}-record stage",
            0.0,
        )
    live_c, live_p = live_candidate or candidate, live_production or production
    if (
        live_c.metric is not None
        and live_p.metric is not None
        and min(live_c.labelled, live_p.labelled) >= g["min_labels"]
        and live_p.metric - live_c.metric > g["max_metric_drop"]
    ):
        return Step(
            "breach",
            f"{where}: live {g['metric']} {live_c.metric:.4f} on {live_c.labelled} labelled records is "
            f"{live_p.metric - live_c.metric:.4f} below production's {live_p.metric:.4f} "
            f"(allowed drop {g['max_metric_drop']:g})",
            0.0,
        )
    if candidate.records < g["min_requests"]:
        return Step("wait", f"{where}: {candidate.records}/{g['min_requests']} candidate records so far", share)
    if candidate.error_rate - production.error_rate > g["max_error_rate"]:
        return Step(
            "breach",
            f"{where}: candidate error rate {candidate.error_rate:.4f} ({candidate.errors}/{candidate.records}) "
            f"above production's {production.error_rate:.4f} ({production.errors}/{production.records}) on the "
            f"same window by more than {g['max_error_rate']:g}",
            0.0,
        )
    if candidate.p99_ms is not None and candidate.p99_ms > g["max_p99_ms"]:
        return Step(
            "breach", f"{where}: candidate p99 latency {candidate.p99_ms:.1f} ms above {g['max_p99_ms']:g} ms", 0.0
        )
    passed = (
        f"{where} passed: {candidate.records} records, error rate {candidate.error_rate:.4f} "
        f"(production {production.error_rate:.4f}), "
        f"p99 {candidate.p99_ms if candidate.p99_ms is not None else float('nan'):.1f} ms"
    )
    if rollout.stage + 1 >= len(rollout.stages):
        return Step("promote", passed, share)
    return Step("advance", f"{passed}; next {rollout.stages[rollout.stage + 1]:g}%", rollout.stages[rollout.stage + 1])


def apply_step(rollout: Rollout, step: Step, at: str, actor: str) -> Rollout | None:
    """The next rollout record after `step`, or None when nothing changes (wait)."""
    if step.action == "wait":
        return None
    if step.action == "advance":
        return replace(
            rollout,
            stage=rollout.stage + 1,
            share=step.share,
            reason=step.reason,
            at=at,
            stage_started_at=at,
            actor=actor,
        )
    if step.action == "breach":
        return replace(rollout, share=0.0, status="breached", reason=step.reason, at=at, actor=actor)
    raise RolloutError(f"apply_step does not handle {step.action!r}; promotion goes through the registry")
