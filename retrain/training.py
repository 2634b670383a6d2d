"""The `train` step: load and validate the windows, fit, choose the threshold, log, register, set `staging`.

Windows (days before `as_of`, see docs/loop.md "Windows"): the training window is split in time into the rows the
network is fitted on and the last `windows.tuning_days` (the tuning rows), which early stopping and the
decision threshold use; the validation window after it is never touched by training decisions, so evaluate
compares models on rows neither of them trained, stopped or tuned on. The version's `retrain.fresh_from` tag
is the first day a model has not seen.

All validation happens before the first MLflow write, so bad input leaves nothing registered. A fit that
learned nothing (`floors.learned_nothing`) is logged as a FAILED training run and raises TrainingError.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.config import Settings
from retrain.data import DataSource, Plan, Windows3
from retrain.errors import TrainingError
from retrain.prepare import Prepared, few_rows, prepare
from retrain.prepare import imputed as imputed  # re-exported: the rows' preparation moved to retrain.prepare
from retrain.prepare import refuse_missing as refuse_missing

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class TrainOutcome:
    """What `retrain train --json` prints."""

    model_name: str
    version: str
    run_id: str
    alias: str
    as_of: str
    metrics: dict[str, float]
    threshold: float = 0.5
    reused: bool = False
    notes: tuple[str, ...] = ()  # e.g. a window that starts before the data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EpochCallback = Callable[[int, float, float], None]


def train(
    settings: Settings,
    as_of: date | None = None,
    *,
    trigger_reason: str | None = None,
    on_epoch: EpochCallback | None = None,
    source: DataSource | None = None,
    plan: Plan | None = None,
) -> TrainOutcome:
    """Train a candidate on the windows before `as_of` (or the cycle's `plan`) and register it as staging.

    `source` hands over windows already read (the in-process loop); without it the step reads its own.
    """
    from retrain import data

    rows = prepare(settings, as_of, source, plan)
    windows, spec = rows.windows, settings.data
    used = (data.coverage(rows.train, spec, windows.train), data.coverage(rows.validation, spec, windows.validation))
    notes = tuple(n for n in (c.note() for c in used) if n) + few_rows(rows, settings.gate.min_rows)
    features = list(spec.features)
    train_fp = data.fingerprint(rows.train, [spec.timestamp, *features, spec.label])
    key = _idempotency_key(settings, windows, train_fp, data.fingerprint(rows.validation, [*features, spec.label]))
    name = settings.registry.model_name
    existing = _find_version(name, key)
    if existing is not None:
        return replace(_reuse(settings, existing, windows), notes=notes)
    from retrain import tracking, train_claim

    held = train_claim.claim(tracking.client(), name, key, lambda: _find_version(name, key))
    if not isinstance(held, train_claim.Claim):  # a training with the same key registered it meanwhile
        return replace(_reuse(settings, held, windows), notes=notes)
    try:
        outcome = _train(settings, rows, used, key, train_fp, trigger_reason, on_epoch)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the store may be what failed: the claimer's death frees the key
            held.release(None, f"{type(exc).__name__}: {exc}")
        raise
    try:  # registered: a release that fails frees nothing waiters need (they look for the version first)
        held.release(outcome.version)
    except Exception as exc:
        train_claim.log.warning("retrain: could not mark the training claim of %s released: %s", key, exc)
    return replace(outcome, notes=notes)


def _train(
    settings: Settings,
    rows: Prepared,
    used: tuple[Any, Any],
    key: str,
    train_fp: str,
    trigger_reason: str | None,
    on_epoch: EpochCallback | None,
) -> TrainOutcome:
    """Fit, choose the threshold, log and register: the training this process claimed `key` for."""
    import time

    import numpy as np
    import torch

    from retrain import drift, floors, metrics, model
    from retrain import train as loop

    windows, spec, cost = rows.windows, settings.data, settings.cost
    features = list(spec.features)
    policies = {f: settings.model.missing_policy(f) for f in features}
    net_spec = model.build_spec(
        rows.fit, list(spec.numeric), list(spec.categorical), settings.model.hidden_dim, policies
    )
    arrays = {}
    for name, part in (("fit", rows.fit), ("tuning", rows.tuning), ("validation", rows.validation)):
        numeric, codes = model.encode(part, net_spec)
        arrays[name] = (numeric, codes, part[spec.label].to_numpy(np.int64))
    mean = arrays["fit"][0].mean(axis=0)
    std = arrays["fit"][0].std(axis=0)
    std[std == 0] = 1.0
    torch.manual_seed(settings.model.seed)  # initial weights come from the global RNG: same seed, same model
    net = model.build_network(net_spec, mean, std)
    device = loop.resolve_device(settings.model.device)
    fit_start = time.perf_counter()
    fitted = loop.fit(
        net,
        arrays["fit"],
        arrays["tuning"],
        epochs=settings.model.epochs,
        batch_size=settings.model.batch_size,
        learning_rate=settings.model.learning_rate,
        weight_decay=settings.model.weight_decay,
        patience=settings.model.patience,
        min_epochs=settings.model.min_epochs,
        seed=settings.model.seed,
        device=device,
        on_epoch=on_epoch,
    )
    fitted.seconds = time.perf_counter() - fit_start
    y_fit, y_tune, y_val = (arrays[n][2] for n in ("fit", "tuning", "validation"))
    p_tune = model.predict_proba(net, *arrays["tuning"][:2])
    p_val = model.predict_proba(net, *arrays["validation"][:2])
    choice = metrics.choose_threshold(
        y_tune,
        p_tune,
        settings.threshold.policy,
        target=settings.threshold.target,
        value=settings.threshold.value,
        cost_fp=cost.false_positive,
        cost_fn=cost.false_negative,
    )
    net_spec = replace(net_spec, threshold=choice.threshold)
    costs = {"cost_fp": cost.false_positive, "cost_fn": cost.false_negative}
    tuning_metrics = metrics.classification_metrics(y_tune, p_tune, choice.threshold, **costs)
    val_metrics = metrics.classification_metrics(y_val, p_val, choice.threshold, **costs)
    tags = {
        **_tags(rows, settings, train_fp, key, device, fitted, choice),
        **used[0].tags("train"),
        **used[1].tags("validation"),
    }
    if trigger_reason:
        tags["retrain.trigger"] = trigger_reason
    if few := few_rows(rows, settings.gate.min_rows):
        tags["retrain.rows_note"] = "; ".join(few)[:5000]
    if settings.windows.since is not None:  # an adapted window: the days since a change, cut in proportion
        tags["retrain.window_since"] = str(settings.windows.since)
    failure = floors.learned_nothing(
        y_tuning=y_tune,
        p_tuning=p_tune,
        fitted_rate=float(y_fit.mean()),
        best_epoch=fitted.best_epoch,
        epochs=settings.model.epochs,
        alpha=settings.gate.alpha,
    )
    if failure is not None:
        _log_failure(settings, windows, fitted, tuning_metrics, val_metrics, tags, failure)
    profile = drift.build_profile(
        {c: rows.train[c].to_numpy(np.float64) for c in spec.numeric},
        {c: rows.train[c].to_numpy() for c in spec.categorical},
        bins=settings.model.profile_bins,
    )
    if len(y_val) and 0 < y_val.sum() < len(y_val):  # the relative triggers' reference (needs both classes)
        profile["validation"] = drift.validation_block(
            y_val,
            p_val,
            val_metrics["roc_auc"],
            metrics.auc_above_chance(y_val, p_val).se,
            bins=settings.model.profile_bins,
        )
    golden_input = _golden_input(rows, net_spec, settings.model.golden_rows)
    golden_output = model.score_frame(net, net_spec, golden_input)
    return _log_and_register(
        settings,
        windows,
        net,
        net_spec,
        fitted,
        val_metrics,
        tuning_metrics,
        choice,
        profile,
        golden_input,
        golden_output,
        tags,
    )


def _tags(rows: Prepared, settings: Settings, train_fp: str, key: str, device: str, fitted, choice) -> dict[str, str]:
    from retrain.tracking import git_commit

    w = rows.windows
    train_end = f"{w.train.end:%Y-%m-%d}"
    tags = {
        "retrain.as_of": w.as_of.isoformat(),
        "retrain.train_start": f"{w.train.start:%Y-%m-%d}",
        "retrain.train_end": w.train.last_day,  # inclusive
        "retrain.tuning_start": f"{rows.tuning_window.start:%Y-%m-%d}",
        "retrain.fresh_from": train_end,  # the model fitted, stopped and tuned on rows before this day only
        "retrain.validation_start": f"{w.validation.start:%Y-%m-%d}",
        "retrain.validation_end": w.validation.last_day,  # inclusive
        "retrain.train_rows": str(len(rows.train)),
        "retrain.fit_rows": str(len(rows.fit)),
        "retrain.tuning_rows": str(len(rows.tuning)),
        "retrain.validation_rows": str(len(rows.validation)),
        "retrain.train_fingerprint": train_fp,
        "retrain.idempotency_key": key,
        "retrain.features": ",".join(settings.data.features),
        "retrain.device": device,
        "retrain.best_epoch": str(fitted.best_epoch),
        "retrain.threshold": repr(float(choice.threshold)),
        "retrain.threshold_policy": choice.policy,
        "retrain.threshold_detail": choice.detail,
    }
    commit = git_commit()
    if commit:
        tags["retrain.git_commit"] = commit
    return tags


def _golden_input(rows: Prepared, net_spec, n: int) -> pd.DataFrame:
    """The first `n` validation rows as sources send them, plus one row per imputed feature with it missing."""
    import pandas as pd

    from retrain.model import MISSING

    features = net_spec.numeric + net_spec.categorical
    golden = rows.validation[features].head(n).reset_index(drop=True)
    golden = golden.astype({c: "int64" for c in rows.integer if golden[c].notna().all()})
    extra = []
    for col in features:
        if net_spec.policy(col) == "impute":
            row = golden.head(1).astype(object)
            row[col] = None
            extra.append(row)
    if not extra:
        return golden
    # categoricals read back from the data say MISSING for null: send a real null like a client would
    out = pd.concat([golden.astype(object), *extra], ignore_index=True)
    for col in net_spec.categorical:
        out.loc[out[col] == MISSING, col] = None
    return out


def _log_failure(settings: Settings, windows: Windows3, fitted, tuning_metrics, val_metrics, tags, reason) -> None:
    """A FAILED training run with the loss curves and the reason; nothing is registered."""
    import mlflow

    from retrain import tracking

    tags = {**tags, "retrain.outcome": "failed", "retrain.failure": reason}
    with tracking.step_run(
        settings.experiments.training,
        f"train (as-of {windows.as_of.isoformat()}): learned nothing",
        tags,
        params={"as_of": windows.as_of.isoformat()},
        settings=settings,
    ) as run:
        _log_params_and_history(settings, run.info.run_id, fitted, val_metrics, tuning_metrics)
        mlflow.set_tag("retrain.model_version", "none")
        # raised inside the run: it ends FAILED
        raise TrainingError(
            f"training learned nothing: {reason}; no version registered (training run "
            f"{run.info.run_id}); check the data and labels, or change model.* settings"
        )


def _log_params_and_history(settings: Settings, run_id: str, fitted, val_metrics, tuning_metrics) -> None:
    import time

    import mlflow
    from mlflow.entities import Metric

    from retrain import tracking

    now = int(time.time() * 1000)
    history = [Metric("train_loss", v, now, i) for i, v in enumerate(fitted.train_loss)]
    history += [Metric("val_loss", v, now, i) for i, v in enumerate(fitted.val_loss)]  # on the tuning rows
    history += [Metric(f"val_{k}", float(v), now, 0) for k, v in val_metrics.items()]
    history += [Metric(f"tuning_{k}", float(v), now, 0) for k, v in tuning_metrics.items()]
    history.append(Metric("time_fit_s", fitted.seconds, now, 0))
    from retrain.store import safe_text

    items = [(k, safe_text(v) if isinstance(v, str) else v) for k, v in settings.flat().items()]
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))
    mlflow_client = tracking.client()
    for start in range(0, len(history), 1000):
        mlflow_client.log_batch(run_id, metrics=history[start : start + 1000])


# Settings that never change what training produces: two trainings that differ only in these (or in aliases and
# gate settings other than alpha) are the same model, so a backtest's policies share versions.
_NOT_TRAINING = ("experiments", "trigger", "checks", "notify", "gate")


def _idempotency_key(settings: Settings, windows: Windows3, train_fp: str, val_fp: str) -> str:
    """Same data, same settings that shape the model, same as-of: same key, so a repeated cycle reuses the version."""
    shaping = {k: v for k, v in settings.to_dict().items() if k not in _NOT_TRAINING}
    shaping["registry"] = {"model_name": settings.registry.model_name}
    shaping["gate"] = {"alpha": settings.gate.alpha}  # the learned-nothing test is the only gate setting training uses
    payload = json.dumps(
        {"settings": shaping, "as_of": windows.as_of.isoformat(), "train": train_fp, "val": val_fp},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _find_version(name: str, key: str):
    from mlflow.exceptions import MlflowException

    from retrain.tracking import client

    try:
        found = client().search_model_versions(f"name = '{name}' and tags.`retrain.idempotency_key` = '{key}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def _reuse(settings: Settings, version, windows: Windows3) -> TrainOutcome:
    """A version trained on exactly this data and settings exists: point staging at it again."""
    import mlflow

    from retrain import tracking
    from retrain.metrics import METRIC_NAMES

    reg = settings.registry
    mlflow_client = tracking.client()
    tags = {
        "retrain.reused": "true",
        "retrain.model_version": str(version.version),
        "retrain.as_of": windows.as_of.isoformat(),
    }
    name = f"train v{version.version} (as-of {windows.as_of.isoformat()}, reused)"
    with tracking.step_run(
        settings.experiments.training, name, tags, params={"as_of": windows.as_of.isoformat()}, settings=settings
    ):
        mlflow_client.set_registered_model_alias(reg.model_name, reg.staging_alias, version.version)
        metrics = mlflow_client.get_run(version.run_id).data.metrics
        val_metrics = {m: metrics[f"val_{m}"] for m in METRIC_NAMES if f"val_{m}" in metrics}
        mlflow.log_metrics({f"val_{k}": v for k, v in val_metrics.items()})
    return TrainOutcome(
        reg.model_name,
        str(version.version),
        version.run_id,
        reg.staging_alias,
        windows.as_of.isoformat(),
        val_metrics,
        threshold_of(version),
        True,
    )


def threshold_of(version) -> float:
    """A version's decision threshold (`retrain.threshold` tag); 0.5 for versions trained before thresholds."""
    try:
        return float(version.tags.get("retrain.threshold", 0.5))
    except (TypeError, ValueError):
        return 0.5


def _log_and_register(
    settings,
    windows,
    net,
    net_spec,
    fitted,
    val_metrics,
    tuning_metrics,
    choice,
    profile,
    golden_input,
    golden_output,
    tags,
):
    import tempfile

    import mlflow

    from retrain import model, tracking

    reg = settings.registry
    as_of = windows.as_of.isoformat()
    with tracking.step_run(
        settings.experiments.training, f"train (as-of {as_of})", tags, params={"as_of": as_of}, settings=settings
    ) as run:
        run_id = run.info.run_id
        mlflow_client = tracking.client()
        _log_params_and_history(settings, run_id, fitted, val_metrics, tuning_metrics)
        mlflow.log_metric("threshold", choice.threshold)
        tracking.log_json(profile, "reference_profile.json")
        golden = {
            "inputs": json.loads(golden_input.to_json(orient="split", index=False)),
            "outputs": {
                "prediction": golden_output["prediction"].astype(int).tolist(),
                "probability": golden_output["probability"].astype(float).tolist(),
            },
        }
        tracking.log_json(golden, "golden_samples.json")
        with tempfile.TemporaryDirectory() as tmp:
            files = model.save(net, net_spec, Path(tmp))
            metadata = {
                "inputs": net_spec.describe_inputs(),
                "threshold": net_spec.threshold,
                "threshold_policy": choice.policy,
            }
            info = tracking.log_pyfunc_model(files, golden_input.head(3), golden_output.head(3), metadata=metadata)
        _ensure_registered(mlflow_client, reg.model_name)
        # model_id names the logged model the `models:/m-...` source belongs to: every tracking
        # server refuses the source without it (a local SQLite store does not check).
        on_version, details = _version_tags(tags, val_metrics)
        version = mlflow_client.create_model_version(
            reg.model_name, info.model_uri, run_id=run_id, tags=on_version, model_id=info.model_id
        )
        mlflow_client.set_registered_model_alias(reg.model_name, reg.staging_alias, version.version)
        mlflow.set_tag("retrain.model_version", version.version)
        tracking.set_name(f"train v{version.version} (as-of {as_of})")  # the version is known only now
        from retrain.describe import details_markdown
        from retrain.registry.descriptions import write_version_description

        write_version_description(mlflow_client, settings, version.version, details=details_markdown(details))
    return TrainOutcome(
        reg.model_name,
        str(version.version),
        run_id,
        reg.staging_alias,
        windows.as_of.isoformat(),
        val_metrics,
        net_spec.threshold,
    )


# Training-run tags no code reads on a version: they go into the version's description (and stay on the run),
# so the registry's versions list shows only the tags a reviewer or a reader needs (issue 23).
DETAIL_TAGS = frozenset(
    "retrain." + key
    for key in (
        "tuning_start fit_rows tuning_rows train_fingerprint features device best_epoch threshold_detail git_commit "
        "rows_note train_days_used train_note validation_days_used validation_note"
    ).split()
)


def _version_tags(run_tags: dict[str, str], val_metrics: dict[str, float]) -> tuple[dict[str, str], dict[str, str]]:
    """The version's tags (`version_tags.training_tags`: a few shown, what code reads packed in one) and the
    training details for its description (`DETAIL_TAGS`)."""
    from datetime import datetime

    from retrain.version_tags import training_tags

    kept = {k: v for k, v in run_tags.items() if k not in DETAIL_TAGS}
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    return training_tags(kept, val_metrics, trained_at), {k: v for k, v in run_tags.items() if k in DETAIL_TAGS}


def _ensure_registered(mlflow_client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(
            name, description="Churn classifier managed by retrain: @staging = candidate, @production = serving."
        )
