"""The adapted training window (`windows.adapt`): the first day of the current regime when the check fired on a
label-rate shift or a performance drop, found by a change-point search over the usual training + validation days.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from retrain.config import Settings
from retrain.errors import DataError


def adapted_since(settings: Settings, as_of: date, signals, source, plan=None) -> tuple[date | None, str]:
    """(first day of the current regime, why) when the check fired on a label-rate shift or a performance drop
    and the usual training + validation days hold a significant change with enough rows since it; else
    (None, why not, or "" when not attempted).

    The churn rate per day is searched first (`changepoint.rate_change`); on a performance drop without a rate
    change, production's per-row log loss on rows it never learned from (`changepoint.mean_change`). The rows
    since the change must give fitting, tuning and validation at least `gate.min_rows` rows each. `plan`: the
    cycle's windows as cut (`retrain.data.Plan`); without it they are cut from `as_of` and the settings.
    """
    import numpy as np

    from retrain import changepoint, data
    from retrain.training import imputed
    from retrain.trigger import WINDOW_SIGNALS

    w, fired = settings.windows, WINDOW_SIGNALS & set(signals)
    if not w.adapt or w.since is not None or not fired:
        return None, ""
    normal = plan or data.plan_for(as_of, w)
    span = data.Window("change-point search", normal.train.start, normal.validation.end)
    spec, alpha, min_rows = settings.data, settings.trigger.alpha, settings.gate.min_rows
    try:
        rows = source.select(span, need_both_classes=False, allow_missing=imputed(settings))
    except DataError as exc:
        return None, f"no change-point search: {exc}"
    days = [span.start + timedelta(days=k) for k in range(span.days)]
    day_of = np.searchsorted(
        np.array(days[1:], dtype="datetime64[ns]"), rows[spec.timestamp].to_numpy("datetime64[ns]"), side="right"
    )
    y = rows[spec.label].astype(int).to_numpy()
    counts = np.bincount(day_of, minlength=len(days))
    found, what = None, ""
    if fired & {"label_rate", "window"}:  # window: the change production was trained since, found again
        found = changepoint.rate_change(
            np.bincount(day_of, weights=y, minlength=len(days)).round().astype(int).tolist(),
            counts.tolist(),
            alpha=alpha,
            min_rows=min_rows,
        )
        what = "churn rate"
    if found is None and "performance" in fired:
        found, what, offset = _loss_change(settings, rows, days, day_of, y, alpha, min_rows)
        if found is not None:
            found = replace(found, index=found.index + offset)
    if found is None:
        return None, f"no significant change in the last {span.days} days: usual training window"
    since = days[found.index].date()
    since_days = (as_of - since).days + 1
    split = changepoint.split_days(since_days, w.train_days, w.tuning_days, w.validation_days)
    parts = changepoint.split_rows(counts[found.index :].tolist(), split) if split else {}
    change = f"{what} changed on {since.isoformat()} ({found.before:.4f} -> {found.after:.4f}, p = {found.p_value:.2g})"
    short = {k: v for k, v in parts.items() if v < min_rows}
    if split is None or short:
        lacking = ", ".join(f"{k} {v}" for k, v in short.items()) or f"{since_days} day(s)"
        return None, (
            f"{change}, but the rows since then are too few to train on ({lacking} < gate.min_rows "
            f"{min_rows}): usual training window"
        )
    return since, (
        f"{change}: training on the {since_days} days since then (windows.since="
        f"{since.isoformat()}: fit {parts['fit']:,}, tuning {parts['tuning']:,}, validation "
        f"{parts['validation']:,} rows)"
    )


def _loss_change(settings: Settings, rows, days, day_of, y, alpha: float, min_rows: int):
    """(Change in production's mean log loss per row over the days since its fresh_from, label, day offset)."""
    import numpy as np

    from retrain import changepoint, replay
    from retrain.evaluation import fresh_from
    from retrain.model import conform
    from retrain.monitoring import production_version

    version = production_version(settings)
    if version is None:
        return None, "", 0
    first = fresh_from(version)
    offset = 0
    if first:  # rows production learned from score better: only rows it never saw
        offset = int(
            np.searchsorted(np.array(days, dtype="datetime64[ns]"), np.datetime64(first[:10], "ns"), side="left")
        )
    keep = day_of >= offset
    model = replay.load_model(settings.registry.model_name, str(version.version))
    frame = rows.loc[keep, list(settings.data.features)]
    p = np.clip(model.predict(conform(frame, model))["probability"].to_numpy(float), 1e-7, 1 - 1e-7)
    labels = y[keep]
    loss = -np.where(labels == 1, np.log(p), np.log1p(-p))
    local = day_of[keep] - offset
    n = len(days) - offset
    found = changepoint.mean_change(
        np.bincount(local, weights=loss, minlength=n).tolist(),
        np.bincount(local, weights=loss * loss, minlength=n).tolist(),
        np.bincount(local, minlength=n).tolist(),
        alpha=alpha,
        min_rows=min_rows,
    )
    return found, "production's log loss", offset
