"""`retrain backtest`: replay the loop and fixed policies over history in a throwaway registry, and score what each
would have served on the labelled rows of the following period.

Each step is an as-of day (`--from`, then every `--every` days up to `--to`). Every policy has its own production
alias on one registered model in a temporary tracking store (`--store` keeps the replay in a given one):

- `loop`: one real in-process cycle of the loop (`pipeline.run_cycle`): check, train, evaluate, gate, promote;
- `always`: train and promote at every step;
- `never`: train and promote the first model, then keep it;
- `every:Nd`: train and promote when production's training as-of is N or more days old.

Trainings with the same window and settings are the same registry version (training's idempotency key leaves
out what does not shape the model: aliases, experiments, triggers, checks, notifications), so policies share
them: a backtest of four policies costs little more than `always` alone. The served metrics are each
production model loaded from the registry as served, at its own threshold, on the labelled rows of the days
after the as-of up to the next step (as-of + 1 .. as-of + every). Nothing is notified (events go to the
temporary folder, no webhook). The report (table, JSON, PNG) is logged as a run in `retrain-backtests` of the
tracking store the command was pointed at.

What a replay leaves out (`retrain.replay`, listed in the report's notes): the pre-promotion latency checks (they
time this machine now, not the history), the figures of the replayed check and comparison runs, and repeated
loads of a version's model or reads of a day (each is loaded or read once for all policies and steps).
`shortcuts=False` replays with none of that left out (slower; decisions differ only where a latency check fails).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from retrain.config import Settings
from retrain.errors import CheckError, ConfigError, DataError, TrainingError

EXPERIMENT = "retrain-backtests"
# a variable nobody sets: the replay's events never reach the operator's webhook
NO_WEBHOOK_ENV = "RETRAIN_BACKTEST_HAS_NO_WEBHOOK"
_CLEARED_ENV = (
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "RETRAIN_PARENT_RUN_ID",
    "RETRAIN_EVENTS_PATH",
    "RETRAIN_PROJECT_DIR",
)


@dataclass(frozen=True)
class Policy:
    """One way of choosing what serves: loop | never | always | every:Nd, optionally with its own settings
    (`loop@trigger.drift_action=warn@gate.mode=auto`: the loop with those overrides)."""

    name: str
    kind: str
    days: int = 0
    overrides: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        """The policy as alias and metric-name text (`every:28d` -> `every-28d`)."""
        return re.sub(r"[^\w-]", "-", self.name)


def parse_policies(text: str) -> list[Policy]:
    """`loop,never,always,every:28d` -> policies; ConfigError naming the bad one."""
    out: list[Policy] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        base, *overrides = part.split("@")
        found = re.fullmatch(r"every:(\d+)d", base)
        if base in ("loop", "never", "always"):
            policy = Policy(base, base)
        elif found and 1 <= int(found.group(1)) <= 36_500:
            policy = Policy(f"every:{int(found.group(1))}d", "every", int(found.group(1)))
        else:
            raise ConfigError(
                f"--policies: {part!r} is not a policy; use loop, never, always or every:<N>d "
                "(e.g. every:28d), optionally with @section.key=value overrides"
            )
        if overrides:
            policy = replace(policy, name="@".join([policy.name, *overrides]), overrides=tuple(overrides))
        if policy.name in {p.name for p in out}:
            raise ConfigError(f"--policies: {policy.name!r} is listed twice")
        out.append(policy)
    if not out:
        raise ConfigError("--policies: no policy given; e.g. loop,never,always,every:28d")
    return out


def parse_day(option: str, text: str) -> date:
    """`YYYY-MM-DD` -> date; ConfigError naming the option otherwise."""
    if not (text or "").strip():
        raise ConfigError(f"{option} is required: the day, YYYY-MM-DD")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", (text or "").strip()):
            raise ValueError
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date; use YYYY-MM-DD") from None


def parse_every(text: str) -> int:
    """`7d` or `7` -> 7 days; ConfigError otherwise."""
    found = re.fullmatch(r"\s*(\d+)\s*d?\s*", text or "")
    if not found or not 1 <= int(found.group(1)) <= 36_500:
        raise ConfigError(f"--every: {text!r} is not a number of days between 1 and 36500; e.g. 7d")
    return int(found.group(1))


def step_days(start: date, end: date, every: int) -> list[date]:
    """The as-of days: start, start + every, ... up to end (included)."""
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=k * every) for k in range((end - start).days // every + 1)]


@dataclass
class Step:
    """What one policy did at one as-of, and how the model it then served did on the following period."""

    policy: str
    as_of: str
    decision: str  # promoted | kept | skipped | failed | trained-first | none
    trained: bool
    promoted: bool
    production_before: str | None
    served_version: str | None
    reasons: list[str] = field(default_factory=list)
    served: dict[str, float] | None = None  # metrics on the following period's labelled rows
    served_rows: int = 0


@dataclass(frozen=True)
class Summary:
    """One policy over the whole backtest."""

    policy: str
    mean_roc_auc: float | None
    worst_roc_auc: float | None
    mean_primary: float | None
    mean_expected_cost: float | None
    trainings: int
    promotions: int
    rollbacks: int
    steps_scored: int


def summarise(policy: str, steps: list[Step], primary: str, rollbacks: int = 0) -> Summary:
    """Mean and worst served ROC AUC, mean primary metric and expected cost, and counts (pure)."""
    mine = [s for s in steps if s.policy == policy]
    scored = [s.served for s in mine if s.served is not None]

    def mean(key: str) -> float | None:
        values = [m[key] for m in scored if key in m and math.isfinite(m[key])]
        return sum(values) / len(values) if values else None

    aucs = [m["roc_auc"] for m in scored if math.isfinite(m.get("roc_auc", math.nan))]
    return Summary(
        policy,
        mean("roc_auc"),
        min(aucs) if aucs else None,
        mean(primary),
        mean("expected_cost"),
        sum(s.trained for s in mine),
        sum(s.promoted for s in mine),
        rollbacks,
        len(scored),
    )


@dataclass
class BacktestResult:
    """What `retrain backtest --json` prints and `backtest.json` stores."""

    start: str
    end: str
    every_days: int
    policies: list[str]
    primary_metric: str
    summaries: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    timings: dict[str, float]
    store: str
    run_id: str = ""
    figure: str | None = None
    notes: list[str] = field(default_factory=list)  # what the replay left out (see retrain.replay)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The per-policy table, then each step's decisions."""
        out = [
            f"backtest {self.start}..{self.end} every {self.every_days}d: served metrics on the labelled rows of "
            "the days after each as-of up to the next step",
            *summary_table(self.summaries, self.primary_metric),
        ]
        for step in self.steps:
            auc = step["served"]["roc_auc"] if step["served"] else None
            out.append(
                f"  {step['as_of']} {step['policy']:<10} {step['decision']:<9} serves "
                f"v{step['served_version'] or '-'} AUC {num(auc, 6).strip()}"
                f"{'; ' + '; '.join(step['reasons'])[:300] if step['reasons'] else ''}"
            )
        t = self.timings
        out.append(
            f"wall {t['total_s']:.1f}s, of which fitting {t['fit_s']:.1f}s ({t['fit_share']:.0%}); "
            f"{t['trainings_fitted']} model(s) fitted for {sum(s['trainings'] for s in self.summaries)} "
            "trainings"
        )
        out += [f"note: {n}" for n in self.notes]
        if self.run_id:
            out.append(f"run {self.run_id} in experiment {EXPERIMENT}")
        return out


def num(v: float | None, width: int) -> str:
    return f"{v:{width}.4f}" if v is not None else f"{'-':>{width}}"


def summary_table(summaries: list[dict[str, Any]], primary: str) -> list[str]:
    """The per-policy table: a header line, then one line per policy (as wide as the longest name)."""
    w = max([12, *(len(s["policy"]) for s in summaries)])
    out = [
        f"{'policy':<{w}} {'mean AUC':>9} {'worst AUC':>9} {'mean ' + primary:>14} {'exp. cost':>9} {'trainings':>9} "
        f"{'promotions':>10} {'rollbacks':>9}"
    ]
    for s in summaries:
        out.append(
            f"{s['policy']:<{w}} {num(s['mean_roc_auc'], 9)} {num(s['worst_roc_auc'], 9)} "
            f"{num(s['mean_primary'], 14)} {num(s['mean_expected_cost'], 9)} {s['trainings']:>9} "
            f"{s['promotions']:>10} {s['rollbacks']:>9}"
        )
    return out


@contextlib.contextmanager
def pointed_at(uri: str) -> Iterator[None]:
    """Point MLflow (fluent API and the environment) at `uri`, without the variables of an enclosing `mlflow run`;
    restore everything afterwards."""
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", *_CLEARED_ENV)}
    old_tracking, old_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    for key in _CLEARED_ENV:
        os.environ.pop(key, None)
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.tracking.fluent._active_experiment_id = None  # set_experiment's cache must not cross stores
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)
        mlflow.tracking.fluent._active_experiment_id = None


def policy_settings(settings: Settings, policy: Policy, folder: Path) -> Settings:
    """The settings a policy replays with: its own aliases; events in the temporary folder; no webhook."""
    if policy.overrides:
        from retrain.config import Settings as SettingsType
        from retrain.config import _apply_override, _build

        raw = settings.to_dict()
        for item in policy.overrides:
            _apply_override(raw, item)
        settings = _build(SettingsType, raw, "")
    registry = replace(
        settings.registry, production_alias=f"bt-{policy.slug}", staging_alias=f"bt-{policy.slug}-staging"
    )
    notify = replace(settings.notify, events_path=str(folder / "events.jsonl"), webhook_env=NO_WEBHOOK_ENV)
    return replace(settings, registry=registry, notify=notify)


def run_backtest(
    settings: Settings,
    start: date,
    end: date,
    every: int,
    policies: list[Policy],
    *,
    store: str | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
    shortcuts: bool = True,
) -> BacktestResult:
    """Replay `policies` from `start` to `end` every `every` days; log the report in `retrain-backtests`.

    `shortcuts=False`: measure latency, draw every replayed run's figure and load models afresh, as the live loop
    does (see `retrain.replay`)."""
    import shutil
    import tempfile

    from retrain import data, replay
    from retrain.pipeline import absolute_tracking_uri

    as_ofs = step_days(start, end, every)
    for policy in policies:  # bad overrides fail here, before any store is made
        policy_settings(settings, policy, Path("."))
    source = data.DataSource(settings.data)
    source.files()  # a missing data path fails here, before any store is made
    report_uri = absolute_tracking_uri()
    folder = Path(tempfile.mkdtemp(prefix="retrain-backtest-"))
    clock = time.perf_counter()
    try:
        replay_uri = store or f"sqlite:///{folder / 'mlflow.db'}"
        with pointed_at(replay_uri), replay.replaying() if shortcuts else contextlib.nullcontext():
            _make_experiments(settings, folder if store is None else None)
            steps, fitted = _replay(settings, as_ofs, every, policies, folder, source, progress)
            rollbacks = {p.name: _rollbacks(policy_settings(settings, p, folder), len(as_ofs)) for p in policies}
        total = time.perf_counter() - clock
        fit_s = sum(fitted.values())
        summaries = [
            asdict(summarise(p.name, steps, settings.gate.primary_metric, rollbacks[p.name])) for p in policies
        ]
        result = BacktestResult(
            start.isoformat(),
            end.isoformat(),
            every,
            [p.name for p in policies],
            settings.gate.primary_metric,
            summaries,
            [asdict(s) for s in steps],
            {
                "total_s": round(total, 3),
                "fit_s": round(fit_s, 3),
                "fit_share": round(fit_s / total, 4) if total else 0.0,
                "trainings_fitted": len(fitted),
            },
            store if store else "temporary (deleted)",
            notes=[replay.NOTE] if shortcuts else [],
        )
        with pointed_at(report_uri):
            result.run_id, result.figure = _log(result, out)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _make_experiments(settings: Settings, folder: Path | None) -> None:
    """The replay's experiments, with artifacts in the temporary folder (not the working folder)."""
    import mlflow

    e = settings.experiments
    for name in (e.training, e.comparisons, e.monitoring, e.cycles):
        if mlflow.get_experiment_by_name(name) is None:
            location = (folder / "artifacts" / name).as_uri() if folder is not None else None
            mlflow.create_experiment(name, artifact_location=location)


def _replay(
    settings: Settings, as_ofs: list[date], every: int, policies: list[Policy], folder: Path, source, progress
) -> tuple[list[Step], dict[str, float]]:
    from retrain import data

    steps: list[Step] = []
    fitted: dict[str, float] = {}  # version -> seconds its fit took (each version fitted once)
    served_cache: dict[tuple[str, str], tuple[dict[str, float] | None, int]] = {}
    by_policy = {p.name: policy_settings(settings, p, folder) for p in policies}
    # one read of each day for all policies, unless a policy's own settings read the data differently
    sources = {name: source if s.data == settings.data else data.DataSource(s.data) for name, s in by_policy.items()}
    for as_of in as_ofs:
        period = data.Window(
            "served",
            datetime.combine(as_of + timedelta(days=1), datetime.min.time()),
            datetime.combine(as_of + timedelta(days=every + 1), datetime.min.time()),
        )
        for policy in policies:
            step = _act(policy, by_policy[policy.name], as_of, sources[policy.name], fitted)
            key = (step.served_version or "", as_of.isoformat())
            if step.served_version is not None:
                if key not in served_cache:
                    served_cache[key] = _served(
                        by_policy[policy.name], step.served_version, period, sources[policy.name]
                    )
                step.served, step.served_rows = served_cache[key]
            steps.append(step)
            if progress is not None:
                progress(f"{as_of} {policy.name}")
    return steps, fitted


def _production(settings: Settings) -> str | None:
    from retrain.registry import Registry

    return Registry(settings).state().production


def _rollbacks(settings: Settings, steps: int) -> int:
    """Rollbacks recorded in the policy's promotion history (none unless someone moved production back)."""
    from retrain.registry import Registry

    return sum(move.kind == "rollback" for move in Registry(settings).history(limit=2 * steps + 10))


def _trained_as_of(settings: Settings, version: str) -> date | None:
    from retrain.tracking import client

    tag = client().get_model_version(settings.registry.model_name, version).tags.get("retrain.as_of")
    return date.fromisoformat(tag[:10]) if tag else None


def _note_fit(settings: Settings, version: str, fitted: dict[str, float]) -> None:
    """Record how long fitting `version` took, once per version (reused versions were fitted earlier)."""
    from retrain.tracking import client

    if version in fitted:
        return
    mv = client().get_model_version(settings.registry.model_name, version)
    if mv.run_id is None:  # a version registered without a run: no fit time to read
        fitted[version] = 0.0
        return
    fitted[version] = float(client().get_run(mv.run_id).data.metrics.get("time_fit_s", 0.0))


def _act(policy: Policy, settings: Settings, as_of: date, source, fitted: dict[str, float]) -> Step:
    """Let one policy decide at `as_of`; returns what it did and the version it serves afterwards."""
    before = _production(settings)
    if policy.kind == "loop":
        return _loop_step(policy, settings, as_of, before, fitted, source)
    reasons: list[str] = []
    if before is None:
        reasons.append("no production model")
    elif policy.kind == "always":
        reasons.append("always retrain")
    elif policy.kind == "every":
        trained = _trained_as_of(settings, before)
        age = (as_of - trained).days if trained else None
        if age is None or age >= policy.days:
            reasons.append(f"schedule: production trained {age} days before as-of (every {policy.days} days)")
    if not reasons:
        return Step(policy.name, as_of.isoformat(), "kept", False, False, before, before)
    from retrain.registry import Registry
    from retrain.training import train

    try:
        outcome = train(settings, as_of, trigger_reason=f"backtest {policy.name}: {reasons[0]}", source=source)
    except (TrainingError, DataError) as exc:
        return Step(policy.name, as_of.isoformat(), "failed", True, False, before, before, [*reasons, str(exc)])
    _note_fit(settings, outcome.version, fitted)
    if outcome.version == before:
        return Step(
            policy.name,
            as_of.isoformat(),
            "kept",
            True,
            False,
            before,
            before,
            [*reasons, f"v{outcome.version} already serves"],
        )
    Registry(settings).promote(
        outcome.version, force=True, reason=f"backtest policy {policy.name}: {reasons[0]}", as_of=as_of, notify=False
    )
    return Step(policy.name, as_of.isoformat(), "promoted", True, True, before, outcome.version, reasons)


def _loop_step(
    policy: Policy, settings: Settings, as_of: date, before: str | None, fitted: dict[str, float], source
) -> Step:
    from retrain.errors import RetrainError
    from retrain.pipeline import run_cycle

    try:
        result = run_cycle(settings, as_of, in_process=True, source=source)
    except (TrainingError, DataError, CheckError) as exc:
        return Step(
            policy.name,
            as_of.isoformat(),
            "failed",
            isinstance(exc, TrainingError),
            False,
            before,
            _production(settings),
            [str(exc)],
        )
    except RetrainError:
        raise
    trained = result.candidate_version is not None
    if result.candidate_version is not None:
        _note_fit(settings, result.candidate_version, fitted)
    promoted = result.outcome == "promoted"
    return Step(
        policy.name,
        as_of.isoformat(),
        result.outcome,
        trained,
        promoted,
        before,
        result.production_after,
        list(result.reasons),
    )


def _served(settings: Settings, version: str, period, source):
    """Metrics of `version`, as served, on the labelled rows of `period` (None when it has no both-class rows)."""
    import numpy as np

    from retrain import metrics, replay
    from retrain.evaluation import served_threshold
    from retrain.model import conform
    from retrain.training import imputed

    spec = settings.data
    try:
        rows = source.select(period, need_both_classes=False, min_rows=0, allow_missing=imputed(settings))
    except DataError:
        return None, 0
    y = rows[spec.label].to_numpy(np.int64) if len(rows) else np.empty(0, dtype=np.int64)
    if len(rows) == 0 or y.min() == y.max():
        return None, len(rows)
    model = replay.load_model(settings.registry.model_name, version)
    p = np.asarray(model.predict(conform(rows[list(spec.features)], model))["probability"], dtype=np.float64)
    found = metrics.classification_metrics(
        y, p, served_threshold(model), cost_fp=settings.cost.false_positive, cost_fn=settings.cost.false_negative
    )
    return {k: float(v) for k, v in found.items()}, len(rows)


def _metric_key(policy: str) -> str:
    """A policy name as MLflow metric-name text (`every:28d` -> `every_28d`)."""
    return re.sub(r"[^\w.-]", "_", policy)


def _log(result: BacktestResult, out: Path | None) -> tuple[str, str | None]:
    """The report run in `retrain-backtests`: per-policy metrics, served metric per step, JSON, PNG."""
    import json
    import tempfile

    import mlflow

    from retrain import tracking
    from retrain.plots import backtest_figure

    tags = {
        "retrain.backtest_from": result.start,
        "retrain.backtest_to": result.end,
        "retrain.backtest_every_days": str(result.every_days),
        "retrain.backtest_policies": ",".join(result.policies),
    }
    if result.notes:
        tags["retrain.backtest_notes"] = "; ".join(result.notes)
    name = f"backtest-{result.start}-{result.end}-every-{result.every_days}d"
    with tracking.step_run(EXPERIMENT, name, tags) as run:
        values: dict[str, float] = {}
        for s in result.summaries:
            slug = _metric_key(s["policy"])
            for key in ("mean_roc_auc", "worst_roc_auc", "mean_primary", "mean_expected_cost"):
                if s[key] is not None:
                    values[f"{slug}_{key}"] = s[key]
            values |= {
                f"{slug}_trainings": s["trainings"],
                f"{slug}_promotions": s["promotions"],
                f"{slug}_rollbacks": s["rollbacks"],
            }
        values |= {f"time_{k}": float(v) for k, v in result.timings.items()}
        mlflow.log_metrics(values)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        order = sorted({s["as_of"] for s in result.steps})
        history = [
            Metric(f"served_roc_auc_{_metric_key(s['policy'])}", s["served"]["roc_auc"], now, order.index(s["as_of"]))
            for s in result.steps
            if s["served"]
        ]
        for start in range(0, len(history), 1000):
            tracking.client().log_batch(run.info.run_id, metrics=history[start : start + 1000])
        result.run_id = run.info.run_id
        table = result.lines()[: 2 + len(result.summaries)]  # the title line and the per-policy table
        tracking.describe("\n".join(["```", *table, "```", *[f"Note: {n}." for n in result.notes]]))
        figure = None
        with tempfile.TemporaryDirectory() as tmp:
            png = backtest_figure(result.steps, result.policies, Path(tmp) / "backtest.png")
            mlflow.log_artifact(str(png))
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                import shutil

                figure = str(shutil.copyfile(png, out / "backtest.png"))
                (out / "backtest.json").write_text(
                    json.dumps({**result.to_dict(), "figure": figure}, indent=1, default=str)
                )
        tracking.log_json({**result.to_dict(), "figure": figure}, "backtest.json")
    return run.info.run_id, figure
