"""The Spark engine: the population as a Spark DataFrame, scored by `mlflow.pyfunc.spark_udf` on the same model
URI, written in the same layout as the pandas engine (one Parquet file a day, committed atomically).

Spark writes the day files under a hidden staging folder of the output (`_spark-<token>/date=.../`, one task per
day, so one file per day); each is then moved onto its day's file as `retrain.batch.output` commits any day.
The counts of the run (rows, positives, score bins) are Spark aggregations over what was written.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from retrain.batch.output import Output
from retrain.batch.population import Population
from retrain.batch.spark_read import DAY, instant_literal, read_days
from retrain.batch.spark_session import cause, spark_path
from retrain.batch.tally import Tally
from retrain.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# MLflow signature types -> Spark SQL types, to hand the UDF the columns as the model's signature declares them
_SPARK_TYPES = {
    "long": "bigint",
    "integer": "int",
    "double": "double",
    "float": "float",
    "string": "string",
    "boolean": "boolean",
}


def scored_frame(spark: SparkSession, model_uri: str, frame: DataFrame, features: list[str]) -> DataFrame:
    """`frame` with `probability` and `prediction` from the model (through `mlflow.pyfunc.spark_udf`)."""
    import mlflow.pyfunc
    from mlflow.models import get_model_info
    from pyspark.sql import functions as F

    signature = get_model_info(model_uri).signature
    inputs = signature.inputs.inputs if signature is not None else []
    casts = {c.name: _SPARK_TYPES.get(str(c.type), None) for c in inputs if getattr(c, "name", None)}
    for name, spark_type in casts.items():
        if spark_type and name in frame.columns:
            frame = frame.withColumn(name, F.col(name).cast(spark_type))
    udf = mlflow.pyfunc.spark_udf(
        spark, model_uri, env_manager="local", result_type="probability double, prediction bigint"
    )
    scored = frame.withColumn("__out", udf(F.struct(*[F.col(c) for c in features])))
    return scored.withColumn("probability", F.col("__out.probability")).withColumn(
        "prediction", F.col("__out.prediction")
    )


def score_spark(
    spark: SparkSession,
    model_uri: str,
    version: str,
    population: Population,
    output: Output,
    *,
    scored_at: datetime,
    tally: Tally,
) -> dict[str, str]:
    """Score every row of `population` into `output` with Spark; {day: the day's file URI}."""
    from pyspark.sql import functions as F

    spec = population.spec
    assert spec.id is not None  # resolve() refused a population without an id column
    features = list(spec.features)
    columns = [spec.id, *features, *([spec.timestamp] if population.has_timestamp else [])]
    frame = read_days(
        spark, spec, population.files, columns, population.first if population.bounded else None, population.last
    )
    scored = scored_frame(spark, model_uri, frame, features)
    out = scored.select(
        F.col(spec.id).alias("entity_id"),
        F.col("probability"),
        F.col("prediction"),
        F.lit(version).alias("version"),
        F.col(DAY).alias("as_of"),
        instant_literal(scored_at.replace(tzinfo=None)).alias("scored_at"),
        F.date_format(F.col(DAY), "yyyy-MM-dd").alias("date"),
    )
    staging_root = f"{output.location.root}/_spark-{output.token}"
    staging_uri = f"{output.uri}/_spark-{output.token}"
    try:
        try:
            out.repartition("date").write.partitionBy("date").parquet(spark_path(staging_uri))
        except Exception as exc:
            raise DataError(f"Spark could not score {population.describe()}: {cause(exc)[:400]}") from None
        written = spark.read.parquet(spark_path(staging_uri))
        _tally(written, tally)
        if not tally.rows:
            raise DataError(f"no rows to score: {population.describe()} holds none; check --day, --days and the data")
        return _commit(output, staging_root)
    finally:
        try:
            output.location.fs.delete_dir(staging_root)
        except OSError:
            pass


def _commit(output: Output, staging_root: str) -> dict[str, str]:
    """Move each day's one file from Spark's staging folder onto the day's file."""
    from datetime import date

    import pyarrow.fs as pafs

    fs = output.location.fs
    days: dict[date, str] = {}
    for info in fs.get_file_info(pafs.FileSelector(staging_root, recursive=True)):
        name = info.path.rsplit("/", 1)[-1]
        if info.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith((".", "_")):
            continue
        folder = info.path.rsplit("/", 2)[-2]
        day = date.fromisoformat(folder.partition("=")[2])
        if day in days:
            raise DataError(f"Spark wrote more than one file for {day} under {staging_root}; nothing was committed")
        days[day] = info.path
    staged = {}
    for day, path in sorted(days.items()):
        staging = output.prepare(day)
        fs.move(path, staging)
        staged[day] = staging
    return {d.isoformat(): output.commit(d, s) for d, s in staged.items()}


def _tally(written: DataFrame, tally: Tally) -> None:
    """Rows, positives, rows per day and the score bins of what Spark wrote, as Spark aggregations."""
    from pyspark.sql import functions as F

    from retrain.batch.spark_bins import bins_of, numeric_bin_exprs

    exprs = [F.count(F.lit(1)).alias("rows"), F.sum("prediction").alias("positives")]
    if tally.reference is not None:
        exprs += numeric_bin_exprs("probability", tally.reference["edges"])
    row = written.agg(*exprs).collect()[0]  # one row: an aggregate without groupBy
    tally.rows, tally.positives = int(row["rows"]), int(row["positives"] or 0)
    if tally.reference is not None and tally.rows:
        tally.add_bins(*bins_of(row, "bin", tally.reference["edges"]))
    for r in written.groupBy("as_of").count().collect():  # one row a day
        tally.days[r["as_of"].isoformat()] = int(r["count"])
