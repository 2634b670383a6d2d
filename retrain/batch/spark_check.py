"""`retrain check --engine spark`: the monitoring window's drift and production metrics as Spark aggregations.

No row comes back to the driver: the reference profile's bins are Spark expressions (one pass counts every
feature's bins), categories are counted by `groupBy`, production scores come from `mlflow.pyfunc.spark_udf`, and
the metrics from sums (`retrain.metrics.LabelledSums`), including the exact ROC AUC and its DeLong error from the
counts per distinct score. The same pure functions as the pandas check turn the counts into PSI and metrics
(`retrain.drift.*_from_counts`, `retrain.metrics.metrics_from_sums`), so both engines agree to rounding.

Data must be files (local or s3://); the prediction log of `retrain serve` is checked with the pandas engine.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from retrain.batch.spark_bins import bins_of, numeric_bin_exprs
from retrain.config import Settings
from retrain.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from retrain.data import Window

LABEL = "__y"


def window_facts(settings: Settings, window: Window, version: Any, profile: dict | None) -> dict[str, Any]:
    """n_rows, n_labels, coverage, psi, performance and evidence of the monitoring window, as the pandas check
    computes them (see `retrain.monitoring.check`), with Spark."""
    from retrain import drift
    from retrain.batch.spark_read import DAY, read_days
    from retrain.batch.spark_session import session
    from retrain.data.files import Listing, _utc
    from retrain.data.windows import Coverage

    spec = settings.data
    if "://" in spec.path and not spec.path.startswith("s3://"):
        raise ConfigError(
            f"check --engine spark reads data files (a folder or s3://), not {spec.path}; use --engine pandas"
        )
    spark = session(settings.spark)  # first: without pyspark or Java, one line saying how to install them
    from pyspark.sql import functions as F

    start_utc, end_utc = _utc(window.start, spec.timezone), _utc(window.end, spec.timezone)
    files = Listing(spec).pruned(start_utc, end_utc)
    last = (window.end - timedelta(days=1)).date()
    columns = [spec.timestamp, spec.label, *spec.features]
    frame = read_days(spark, spec, files, columns, window.start.date(), last) if files else None
    if frame is None:
        from retrain.errors import DataError

        raise DataError(f"no files under {spec.path} hold rows of {window}")
    if spec.positive_label is not None:
        y = F.when(F.col(spec.label).isNull(), None).otherwise(
            (F.col(spec.label).cast("string") == spec.positive_label).cast("double")
        )
    else:
        y = F.col(spec.label).cast("double")
    frame = frame.withColumn(LABEL, y).cache()
    try:
        return _facts(settings, window, version, profile, frame, DAY, drift, Coverage)
    finally:
        frame.unpersist()


def _facts(settings, window, version, profile, frame: DataFrame, day_col: str, drift, coverage_cls) -> dict[str, Any]:
    from pyspark.sql import functions as F

    spec = settings.data
    numeric_edges = (profile or {}).get("numeric", {}) if version is not None else {}
    exprs = [F.count(F.lit(1)).alias("rows"), F.countDistinct(day_col).alias("days"), F.min(day_col), F.max(day_col)]
    for i, (name, entry) in enumerate(numeric_edges.items()):
        exprs += numeric_bin_exprs(name, entry["edges"], f"f{i}")
    refused = [c for c in spec.numeric if settings.model.missing_policy(c) == "error"]
    scorable_cond = F.lit(True)
    for c in refused:
        scorable_cond = scorable_cond & F.col(c).isNotNull() & ~F.isnan(F.col(c).cast("double"))
    exprs.append(F.sum(F.when(scorable_cond & F.col(LABEL).isNotNull(), 1).otherwise(0)).alias("labels"))
    row = frame.agg(*exprs).collect()[0]  # one row: an aggregate without groupBy
    n_rows, n_labels = int(row["rows"]), int(row["labels"] or 0)
    first, last_seen = row[2], row[3]
    used = coverage_cls(
        window=window.name,
        start=f"{window.start:%Y-%m-%d}",
        end=f"{window.end - timedelta(days=1):%Y-%m-%d}",
        days=window.days,
        days_with_rows=int(row["days"]),
        first_day=first.isoformat() if first else None,
        last_day=last_seen.isoformat() if last_seen else None,
        rows=n_rows,
    )
    psi: dict[str, float] = {}
    performance = evidence = None
    if version is not None and profile is not None:
        for i, (name, entry) in enumerate(numeric_edges.items()):
            counts, n_nan = bins_of(row, f"f{i}", entry["edges"])
            psi[name] = drift.numeric_psi_from_counts(entry, counts, n_nan)
        for name, entry in profile.get("categorical", {}).items():
            # as `retrain.data.validation` reads a categorical: its text, a null as the "__missing__" category
            text = F.coalesce(F.col(name).cast("string"), F.lit("__missing__"))
            per_category = {r[0]: int(r[1]) for r in frame.groupBy(text).count().collect()}  # one row a category
            psi[name] = drift.categorical_psi_from_counts(entry, per_category)
        if n_labels >= settings.trigger.min_labels or profile.get("validation"):
            scorable = frame.where(scorable_cond)
            performance, evidence = _production(settings, version, profile, scorable, n_labels)
    return dict(n_rows=n_rows, n_labels=n_labels, used=used, psi=psi, performance=performance, evidence=evidence)


def _production(settings: Settings, version: Any, profile: dict, scorable: DataFrame, n_labels: int):
    """(metrics on labelled rows as served, or None below min_labels; Evidence): `monitoring._evaluate_production`."""
    from pyspark.sql import Window as W
    from pyspark.sql import functions as F

    from retrain import drift, metrics
    from retrain.batch.engine_spark import scored_frame
    from retrain.trigger import Evidence

    reference = profile.get("validation") or {}
    model_uri = f"models:/{settings.registry.model_name}/{version.version}"
    scored = scored_frame(scorable.sparkSession, model_uri, scorable, list(settings.data.features))
    scored = scored.select("probability", "prediction", LABEL).cache()
    try:
        exprs = [F.count(F.lit(1)).alias("scored")]
        if reference:
            exprs += numeric_bin_exprs("probability", reference["scores"]["edges"], "s")
        p = F.least(F.greatest(F.col("probability"), F.lit(metrics._EPS)), F.lit(1.0 - metrics._EPS))
        y, yhat = F.col(LABEL), F.col("prediction")
        labelled = y.isNotNull()

        def total(cond: Column, value: Column | None = None) -> Column:
            return F.sum(F.when(labelled & cond, value if value is not None else F.lit(1)).otherwise(0))

        exprs += [
            total((y == 1) & (yhat == 1)).alias("tp"),
            total((y == 0) & (yhat == 1)).alias("fp"),
            total((y == 0) & (yhat == 0)).alias("tn"),
            total((y == 1) & (yhat == 0)).alias("fn"),
            total(F.lit(True), -F.when(y == 1, F.log(p)).otherwise(F.log1p(-p))).alias("log_loss_sum"),
            total(F.lit(True), (F.col("probability") - y) * (F.col("probability") - y)).alias("brier_sum"),
        ]
        row = scored.agg(*exprs).collect()[0]  # one row: an aggregate without groupBy
        prediction_psi = None
        if reference and int(row["scored"]):
            counts, n_nan = bins_of(row, "s", reference["scores"]["edges"])
            prediction_psi = drift.numeric_psi_from_counts(reference["scores"], counts, n_nan)
        found = None
        auc = auc_se = rate = None
        if n_labels >= settings.trigger.min_labels:
            tp, fp, tn, fn = (int(row[k] or 0) for k in ("tp", "fp", "tn", "fn"))
            pos, neg = tp + fn, tn + fp
            # per distinct score: positives and negatives at it and below it (one row a distinct score)
            groups = (
                scored.where(labelled)
                .groupBy("probability")
                .agg(F.sum(y).cast("long").alias("pos"), F.sum(1 - y).cast("long").alias("neg"))
            )
            below = W.orderBy("probability").rowsBetween(W.unboundedPreceding, -1)
            groups = groups.withColumn("pos_below", F.coalesce(F.sum("pos").over(below), F.lit(0)))
            groups = groups.withColumn("neg_below", F.coalesce(F.sum("neg").over(below), F.lit(0)))
            v10 = (F.col("neg_below") + F.col("neg") / 2.0) / F.lit(float(max(neg, 1)))
            v01 = 1.0 - (F.col("pos_below") + F.col("pos") / 2.0) / F.lit(float(max(pos, 1)))
            sums = groups.agg(
                F.sum(F.col("pos") * (2 * F.col("neg_below") + F.col("neg"))).alias("pairs2"),
                F.sum(F.col("pos") * v10).alias("v10"),
                F.sum(F.col("pos") * v10 * v10).alias("v10_sq"),
                F.sum(F.col("neg") * v01).alias("v01"),
                F.sum(F.col("neg") * v01 * v01).alias("v01_sq"),
            ).collect()[0]
            raw, se = metrics.metrics_from_sums(
                metrics.LabelledSums(
                    tn=tn,
                    fp=fp,
                    fn=fn,
                    tp=tp,
                    log_loss_sum=float(row["log_loss_sum"] or 0.0),
                    brier_sum=float(row["brier_sum"] or 0.0),
                    pairs2=int(sums["pairs2"] or 0),
                    v10=float(sums["v10"] or 0.0),
                    v10_sq=float(sums["v10_sq"] or 0.0),
                    v01=float(sums["v01"] or 0.0),
                    v01_sq=float(sums["v01_sq"] or 0.0),
                ),
                cost_fp=settings.cost.false_positive,
                cost_fn=settings.cost.false_negative,
            )
            found = {k: float(v) for k, v in raw.items() if math.isfinite(v)}
            rate = pos / (pos + neg)
            if 0 < pos < pos + neg:
                auc, auc_se = found["roc_auc"], se
    finally:
        scored.unpersist()
    return found, Evidence.against(
        reference, roc_auc=auc, roc_auc_se=auc_se, label_rate=rate, prediction_psi=prediction_psi
    )
