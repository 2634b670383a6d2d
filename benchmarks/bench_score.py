"""Batch scoring (`retrain score`): the pandas engine against the loaded pyfunc's `predict` over the same rows in the
same chunks, its peak RSS at N and 5N rows (flat with the population), and the Spark engine in local[2] against the
pandas engine and a bare `spark_udf` select-and-write on the same rows.

A model is trained once (small synthetic data, real training) and set as @production in a throwaway SQLite store.
The population is one day of N rows in one Parquet file (row groups of `batch_rows`), and a 5N file (the N rows
five times). Each side runs in its own process, so its peak RSS (ru_maxrss) is its own:
- ours: `retrain.batch.scoring.score` (resolve the alias, load the model, stream, score, write, commit, log a run);
  its time is the run's `seconds` (the process's imports are outside it, as they are outside the baseline's).
  It scores through `retrain serve`'s fast path (`FastModel.predict_frame`: the same model's `features.encode` and
  network, the same outputs as its pyfunc `predict`) and reads the next batch on a thread while it scores.
- baseline: load the same model, read the same row groups, `model.predict(conform(chunk))` per chunk; timed: the
  predict calls only (reading outside the timer), and reading + predict as a second reference.
- spark: a warm SparkSession (local[2]); `score(engine="spark")`, then a bare `spark.read.parquet(...)
  .select(id, spark_udf(struct(features))).write.parquet(...)`; both outputs compared with the pandas engine's.

Sizes: the issue asks for 10M rows (and 50M for flatness); on the 2 shared cores here predict alone runs at about
30 us a row, so the stored result uses N = 1M (and 5N = 5M) to fit a session; `--rows 10000000` takes the
issue's sizes where there is time.

Run from the repository root: python -m benchmarks.bench_score [--rows N] [--spark-rows N] [--no-spark]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

QUICK = {"rows": 200_000, "spark_rows": 100_000}
DAY = "2026-03-01"
FAST = (
    "model.epochs=6",
    "model.patience=2",
    "windows.train_days=30",
    "windows.validation_days=10",
    "windows.monitor_days=7",
    "spark.master=local[2]",
)


def _settings(data: str, *more: str):
    from retrain.config import load_settings

    return load_settings(None, [*FAST, f"data.path={data}", *more])


def _prepare(folder: Path, rows: int, batch_rows: int) -> dict:
    """Train a model into folder/mlflow.db, set it as production; write the N and 5N populations."""
    import mlflow
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    from retrain import synth
    from retrain.training import train

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    train_data = folder / "train"
    synth.write(synth.SynthSpec(days=60, rows_per_day=300, seed=3), train_data)
    os.chdir(folder)
    out = train(_settings(str(train_data)), date(2026, 2, 28))
    MlflowClient().set_registered_model_alias(out.model_name, "production", out.version)
    chunk = min(rows, 1_000_000)
    frames = []
    made = 0
    while made < rows:
        n = min(chunk, rows - made)
        frame = synth.generate(synth.SynthSpec(days=1, rows_per_day=n, seed=100 + made, start=date(2026, 3, 1)))
        frame["customer_id"] = [f"C{made + i:09d}" for i in range(n)]  # unique ids, for comparing outputs
        frames.append(pa.Table.from_pandas(frame, preserve_index=False))
        made += n
    paths = {}
    for scale in (1, 5):
        path = folder / f"population_x{scale}" / "rows.parquet"
        path.parent.mkdir()
        with pq.ParquetWriter(path, frames[0].schema, compression="zstd") as writer:
            for _ in range(scale):
                for table in frames:
                    writer.write_table(table, row_group_size=batch_rows)
        paths[scale] = str(path.parent)
    return {"uri": uri, "train": str(train_data), "paths": paths, "version": out.version}


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _worker(kind: str, spec: dict) -> dict:
    """One side, in this process; prints its JSON."""
    import mlflow

    mlflow.set_tracking_uri(spec["uri"])
    os.chdir(spec["folder"])
    settings = _settings(spec["train"], f"score.batch_rows={spec['batch_rows']}")
    if kind == "ours":
        from retrain.batch.scoring import score

        out = score(settings, date.fromisoformat(DAY), input_path=spec["input"], output=spec["output"])
        return {
            "seconds": out.seconds,
            "engine_s": out.engine_seconds,
            "rows": out.rows,
            "peak_rss_mib": _peak_rss_mib(),
        }
    if kind == "baseline":
        import numpy as np
        import pyarrow.parquet as pq

        from retrain.model import conform

        started = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{settings.registry.model_name}/{spec['version']}")
        predict_s, rows, checksum = 0.0, 0, 0.0
        features = list(settings.data.features)
        for batch in pq.ParquetFile(f"{spec['input']}/rows.parquet").iter_batches(
            batch_size=spec["batch_rows"], columns=features
        ):
            chunk = batch.to_pandas()
            begin = time.perf_counter()
            out = model.predict(conform(chunk, model))
            predict_s += time.perf_counter() - begin
            rows += len(out)
            checksum += float(np.sum(out["probability"].to_numpy()))
        total = time.perf_counter() - started
        return {"predict_s": predict_s, "read_and_predict_s": total, "rows": rows, "peak_rss_mib": _peak_rss_mib()}
    if kind == "spark":
        from pyspark.sql import functions as F

        from retrain.batch.scoring import score
        from retrain.batch.spark_session import session

        spark = session(settings.spark)
        spark.range(10).count()  # the JVM and its first job are outside both timings
        out = score(settings, date.fromisoformat(DAY), input_path=spec["input"], output=spec["output"], engine="spark")
        features = list(settings.data.features)
        begin = time.perf_counter()
        udf = mlflow.pyfunc.spark_udf(
            spark,
            f"models:/{settings.registry.model_name}/{spec['version']}",
            env_manager="local",
            result_type="probability double, prediction bigint",
        )
        frame = spark.read.parquet(f"{spec['input']}/rows.parquet")
        scored = frame.select(F.col("customer_id"), udf(F.struct(*[F.col(c) for c in features])).alias("out"))
        scored.select("customer_id", "out.probability", "out.prediction").write.parquet(spec["bare_output"])
        bare = time.perf_counter() - begin
        return {"seconds": out.seconds, "bare_s": bare, "rows": out.rows}
    raise SystemExit(f"unknown worker {kind}")


def _side(kind: str, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path[1:]])}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_score", "--worker", kind, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_scores(a: str, b: str, id_col: str = "entity_id") -> float:
    """Largest |probability difference| between two outputs over the same ids (AssertionError if ids differ)."""
    import numpy as np
    import pyarrow.parquet as pq

    ta, tb = (pq.read_table(p, columns=None) for p in (a, b))
    ida, idb = (t.column(0).to_numpy(zero_copy_only=False) for t in (ta, tb))
    oa, ob = np.argsort(ida), np.argsort(idb)
    assert len(ida) == len(idb) and (ida[oa] == idb[ob]).all(), "different rows"
    pa_, pb_ = ta["probability"].to_numpy()[oa], tb["probability"].to_numpy()[ob]
    return float(np.max(np.abs(pa_ - pb_)))


def run(rows: int = 1_000_000, spark_rows: int | None = None, batch_rows: int = 262_144, spark: bool = True) -> dict:
    base = Path(tempfile.mkdtemp(prefix="retrain-bench-score-"))
    prepared = _prepare(base, rows, batch_rows)
    spec = {"uri": prepared["uri"], "folder": str(base), "train": prepared["train"], "batch_rows": batch_rows}
    spec["version"] = prepared["version"]
    ours = _side("ours", {**spec, "input": prepared["paths"][1], "output": str(base / "out1")})
    baseline = _side("baseline", {**spec, "input": prepared["paths"][1]})
    ours5 = _side("ours", {**spec, "input": prepared["paths"][5], "output": str(base / "out5")})
    result = {
        "name": f"score_pandas_{rows // 1000}k",
        "rows": rows,
        "batch_rows": batch_rows,
        "ours_s": round(ours["seconds"], 2),
        "predict_s": round(baseline["predict_s"], 2),
        "read_and_predict_s": round(baseline["read_and_predict_s"], 2),
        "ratio": round(ours["seconds"] / baseline["predict_s"], 3),
        "ratio_vs_read_and_predict": round(ours["seconds"] / baseline["read_and_predict_s"], 3),
        "ours_engine_s": round(ours["engine_s"], 2),
        "ratio_engine_only": round(ours["engine_s"] / baseline["predict_s"], 3),
        "target": "<= 1.15",
        "peak_rss_mib": ours["peak_rss_mib"],
        "baseline_peak_rss_mib": baseline["peak_rss_mib"],
        "rows_5x": ours5["rows"],
        "ours_5x_s": round(ours5["seconds"], 2),
        "peak_rss_5x_mib": ours5["peak_rss_mib"],
        "rss_growth_5x": round(ours5["peak_rss_mib"] / ours["peak_rss_mib"] - 1, 3),
    }
    if spark:
        n = spark_rows or rows
        spark_input = prepared["paths"][1]
        if n != rows:  # a smaller population of the same rows for Spark (and the pandas engine beside it)
            import pyarrow.parquet as pq

            folder = base / "population_spark"
            folder.mkdir()
            pq.write_table(
                pq.read_table(f"{spark_input}/rows.parquet").slice(0, n),
                folder / "rows.parquet",
                row_group_size=batch_rows,
            )
            spark_input = str(folder)
        pandas_out = base / ("out1" if n == rows else "out_ps")
        pandas_side = ours if n == rows else _side("ours", {**spec, "input": spark_input, "output": str(pandas_out)})
        spark_side = _side(
            "spark",
            {**spec, "input": spark_input, "output": str(base / "out_spark"), "bare_output": str(base / "bare")},
        )
        day = f"date={DAY}/part-0.parquet"
        result.update(
            {
                "spark_rows": n,
                "spark_s": round(spark_side["seconds"], 2),
                "spark_pandas_engine_s": round(pandas_side["seconds"], 2),
                "spark_bare_udf_s": round(spark_side["bare_s"], 2),
                "spark_vs_pandas": round(spark_side["seconds"] / pandas_side["seconds"], 3),
                "spark_vs_bare_udf": round(spark_side["seconds"] / spark_side["bare_s"], 3),
                "spark_max_abs_diff": _same_scores(str(pandas_out / day), str(base / "out_spark" / day)),
            }
        )
    return result


def summary(r: dict) -> list[dict]:
    rows = [
        {
            "measurement": f"`retrain score --engine pandas`, {r['rows']:,} rows (batches of {r['batch_rows']:,}; "
            "scored through serve's fast path: same model, same outputs) vs the loaded pyfunc's predict over the "
            "same chunks",
            "result": f"{r['ours_s']} s (the whole run; streaming read, score, write: {r['ours_engine_s']} s) vs "
            f"{r['predict_s']} s, ratio {r['ratio']} ({r['ratio_engine_only']} for the streaming part; vs loading, "
            f"reading and predicting {r['read_and_predict_s']} s: {r['ratio_vs_read_and_predict']})",
            "target": r["target"],
            "met": "yes" if r["ratio"] <= 1.15 else "no",
        },
        {
            "measurement": f"pandas engine peak RSS at {r['rows']:,} and {r['rows_5x']:,} rows",
            "result": f"{r['peak_rss_mib']} MiB and {r['peak_rss_5x_mib']} MiB (growth {r['rss_growth_5x']:+.1%}); "
            f"5x rows in {r['ours_5x_s']} s",
            "target": "< 2048 MiB, growth within 20%",
            "met": "yes" if r["peak_rss_5x_mib"] < 2048 and abs(r["rss_growth_5x"]) <= 0.2 else "no",
        },
    ]
    if "spark_s" in r:
        rows.append(
            {
                "measurement": f"`--engine spark` local[2], {r['spark_rows']:,} rows, vs the pandas engine and a bare "
                "spark_udf select-and-write",
                "result": f"{r['spark_s']} s vs pandas {r['spark_pandas_engine_s']} s ({r['spark_vs_pandas']}x), vs "
                f"bare {r['spark_bare_udf_s']} s ({r['spark_vs_bare_udf']}x); "
                f"max |p diff| {r['spark_max_abs_diff']:.1e}",
                "target": "report; outputs identical",
                "met": "yes" if r["spark_max_abs_diff"] <= 1e-9 else "no",
            }
        )
    return rows


if __name__ == "__main__":
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        print(json.dumps(_worker(sys.argv[i + 1], json.loads(sys.argv[i + 2]))))
        raise SystemExit(0)

    def _arg(name: str, default):
        return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default

    rows = _arg("--rows", 1_000_000)
    print(
        json.dumps(run(rows=rows, spark_rows=_arg("--spark-rows", rows), spark="--no-spark" not in sys.argv), indent=2)
    )
