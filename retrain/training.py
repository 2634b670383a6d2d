"""The `train` step: load and validate the windows, fit, log everything, register, set `staging`.

All validation happens before the first MLflow write, so bad input leaves nothing registered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from retrain.config import Settings
from retrain.data import DataSource, Windows3


@dataclass(frozen=True)
class TrainOutcome:
    """What `retrain train --json` prints."""

    model_name: str
    version: str
    run_id: str
    alias: str
    as_of: str
    metrics: dict[str, float]
    reused: bool = False
    notes: tuple[str, ...] = ()  # e.g. a window that starts before the data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EpochCallback = Callable[[int, float, float], None]


def prepare(settings: Settings, as_of: date | None, source: DataSource | None = None):
    """Read (or take from `source`) and validate the training and validation windows (no MLflow).

    Also returns the numeric features stored as integers in the raw data: the model's signature
    keeps them `long`, so clients can send them as they come.
    """
    from retrain import data

    spec = settings.data
    source = source or data.DataSource(spec)
    as_of = as_of or source.latest_day()
    windows = data.windows_for(as_of, settings.windows)
    frame = source.rows(data.Window("training and validation", windows.train.start, windows.validation.end))
    train = source.select(windows.train)
    val = source.select(windows.validation)
    integer = [c for c in spec.numeric if frame[c].dtype.kind in "iu"]
    return windows, train, val, integer


def train(
    settings: Settings,
    as_of: date | None = None,
    *,
    trigger_reason: str | None = None,
    on_epoch: EpochCallback | None = None,
    source: DataSource | None = None,
) -> TrainOutcome:
    """Train a candidate on the windows before `as_of` and register it under the staging alias.

    `source` hands over windows already read (the in-process loop); without it the step reads its own.
    """
    import numpy as np

    from retrain import data, drift, metrics, model
    from retrain import train as loop

    windows, train_rows, val_rows, integer_columns = prepare(settings, as_of, source)
    spec = settings.data
    used = (data.coverage(train_rows, spec, windows.train), data.coverage(val_rows, spec, windows.validation))
    notes = tuple(n for n in (c.note() for c in used) if n)
    features = list(spec.features)
    train_fp = data.fingerprint(train_rows, [spec.timestamp, *features, spec.label])
    key = _idempotency_key(settings, windows, train_fp, data.fingerprint(val_rows, [*features, spec.label]))
    existing = _find_version(settings.registry.model_name, key)
    if existing is not None:
        return replace(_reuse(settings, existing, windows), notes=notes)

    net_spec = model.build_spec(train_rows, list(spec.numeric), list(spec.categorical), settings.model.hidden_dim)
    tr_num, tr_cat = model.encode(train_rows, net_spec)
    va_num, va_cat = model.encode(val_rows, net_spec)
    mean = tr_num.mean(axis=0)
    std = tr_num.std(axis=0)
    std[std == 0] = 1.0
    import torch

    torch.manual_seed(settings.model.seed)  # initial weights come from the global RNG: same seed, same model
    net = model.build_network(net_spec, mean, std)
    device = loop.resolve_device(settings.model.device)
    tr_y = train_rows[spec.label].to_numpy(np.int64)
    va_y = val_rows[spec.label].to_numpy(np.int64)
    import time

    fit_start = time.perf_counter()
    fitted = loop.fit(
        net,
        (tr_num, tr_cat, tr_y),
        (va_num, va_cat, va_y),
        epochs=settings.model.epochs,
        batch_size=settings.model.batch_size,
        learning_rate=settings.model.learning_rate,
        weight_decay=settings.model.weight_decay,
        patience=settings.model.patience,
        seed=settings.model.seed,
        device=device,
        on_epoch=on_epoch,
    )
    fitted.seconds = time.perf_counter() - fit_start
    probability = model.predict_proba(net, va_num, va_cat)
    val_metrics = metrics.classification_metrics(va_y, probability)
    profile = drift.build_profile(
        {c: train_rows[c].to_numpy(np.float64) for c in spec.numeric},
        {c: train_rows[c].to_numpy() for c in spec.categorical},
        bins=settings.model.profile_bins,
    )
    golden_input = val_rows[features].head(settings.model.golden_rows).reset_index(drop=True)
    golden_input = golden_input.astype({c: "int64" for c in integer_columns})
    golden_output = model.score_frame(net, net_spec, golden_input)
    tags = {
        "retrain.as_of": windows.as_of.isoformat(),
        "retrain.train_start": f"{windows.train.start:%Y-%m-%d}",
        "retrain.train_end": f"{windows.train.end:%Y-%m-%d}",
        "retrain.validation_start": f"{windows.validation.start:%Y-%m-%d}",
        "retrain.validation_end": f"{windows.validation.end:%Y-%m-%d}",
        "retrain.train_rows": str(len(train_rows)),
        "retrain.validation_rows": str(len(val_rows)),
        "retrain.train_fingerprint": train_fp,
        "retrain.idempotency_key": key,
        "retrain.features": ",".join(features),
        "retrain.device": device,
        "retrain.best_epoch": str(fitted.best_epoch),
        **used[0].tags("train"),
        **used[1].tags("validation"),
    }
    from retrain.tracking import git_commit

    commit = git_commit()
    if commit:
        tags["retrain.git_commit"] = commit
    if trigger_reason:
        tags["retrain.trigger"] = trigger_reason
    outcome = _log_and_register(
        settings, windows, net, net_spec, fitted, val_metrics, profile, golden_input, golden_output, tags
    )
    return replace(outcome, notes=notes)


def _idempotency_key(settings: Settings, windows: Windows3, train_fp: str, val_fp: str) -> str:
    """Same data, same settings, same as-of: same key, so a repeated cycle reuses the version."""
    payload = json.dumps(
        {"settings": settings.to_dict(), "as_of": windows.as_of.isoformat(), "train": train_fp, "val": val_fp},
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
    tags = {"retrain.reused": "true", "retrain.model_version": str(version.version), "retrain.as_of": windows.as_of.isoformat()}
    with tracking.step_run(settings.experiments.training, f"train-{windows.as_of.isoformat()}-reused", tags):
        mlflow_client.set_registered_model_alias(reg.model_name, reg.staging_alias, version.version)
        metrics = mlflow_client.get_run(version.run_id).data.metrics
        val_metrics = {m: metrics[f"val_{m}"] for m in METRIC_NAMES if f"val_{m}" in metrics}
        mlflow.log_metrics({f"val_{k}": v for k, v in val_metrics.items()})
    return TrainOutcome(
        reg.model_name, str(version.version), version.run_id, reg.staging_alias, windows.as_of.isoformat(), val_metrics, True
    )


def _log_and_register(settings, windows, net, net_spec, fitted, val_metrics, profile, golden_input, golden_output, tags):
    import tempfile
    import time

    import mlflow
    from mlflow.entities import Metric

    from retrain import model, tracking

    reg = settings.registry
    with tracking.step_run(settings.experiments.training, f"train-{windows.as_of.isoformat()}", tags) as run:
        run_id = run.info.run_id
        mlflow_client = tracking.client()
        now = int(time.time() * 1000)
        history = [Metric("train_loss", v, now, i) for i, v in enumerate(fitted.train_loss)]
        history += [Metric("val_loss", v, now, i) for i, v in enumerate(fitted.val_loss)]
        history += [Metric(f"val_{k}", float(v), now, 0) for k, v in val_metrics.items()]
        history.append(Metric("time_fit_s", fitted.seconds, now, 0))
        params = settings.flat()
        items = list(params.items())
        for start in range(0, len(items), 100):
            mlflow.log_params(dict(items[start : start + 100]))
        for start in range(0, len(history), 1000):
            mlflow_client.log_batch(run_id, metrics=history[start : start + 1000])
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
            info = tracking.log_pyfunc_model(files, golden_input.head(3), golden_output.head(3))
        _ensure_registered(mlflow_client, reg.model_name)
        # model_id names the logged model the `models:/m-...` source belongs to: every tracking
        # server refuses the source without it (a local SQLite store does not check).
        version = mlflow_client.create_model_version(
            reg.model_name, info.model_uri, run_id=run_id, tags=_version_tags(tags, val_metrics), model_id=info.model_id
        )
        mlflow_client.set_registered_model_alias(reg.model_name, reg.staging_alias, version.version)
        mlflow.set_tag("retrain.model_version", version.version)
    return TrainOutcome(reg.model_name, str(version.version), run_id, reg.staging_alias, windows.as_of.isoformat(), val_metrics)


def _version_tags(run_tags: dict[str, str], val_metrics: dict[str, float]) -> dict[str, str]:
    """The tutorial's metadata, on the version itself: training date, window, features, metrics."""
    from datetime import datetime, timezone

    tags = {k: v for k, v in run_tags.items()}
    tags["retrain.trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tags["retrain.metrics"] = json.dumps({k: round(float(v), 6) for k, v in val_metrics.items()}, sort_keys=True)
    return tags


def _ensure_registered(mlflow_client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(
            name, description="Churn classifier managed by retrain: @staging = candidate, @production = serving."
        )
