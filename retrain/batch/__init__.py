"""Batch scoring: `retrain score` scores a population with the production version and writes one Parquet file a day.

`population` (what to score: the rows of a day or window of `data.path`, or any Parquet/CSV path, streamed in
batches), `output` (the day files, each replaced atomically), `engine_pandas` and `engine_spark` (the two ways to
score), `spark_session` and `spark_check` (Spark: the session, and the monitoring window's aggregations for
`retrain check --engine spark`), `scoring` (the step: resolve the alias once, score, log the run).
"""
