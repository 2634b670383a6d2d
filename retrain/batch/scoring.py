"""The `score` step: score a population with the version `@production` names when the run starts, log one run.

The alias is resolved once, to a version, and everything after uses `models:/<name>/<version>`: a rollback or a
promotion during the run reaches the next batch, never half of this one. Input, output and the model are checked
before the run starts, so bad input fails with one line and writes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from retrain.config import Settings
from retrain.errors import RegistryError

ENGINES = ("pandas", "spark")


@dataclass(frozen=True)
class ScoreResult:
    """What `retrain score --json` prints and the run's `score.json` stores."""

    model_name: str
    version: str
    model_uri: str
    engine: str
    population: str
    output: str
    files: dict[str, str]  # day -> the day's scores file
    rows: int
    rows_per_day: dict[str, int]
    predicted_positive_rate: float | None
    score_psi: float | None  # against the version's validation scores
    scored_at: str
    seconds: float  # the whole run: alias, model load, scoring, commit
    engine_seconds: float  # the engine's part: read, score, write, commit
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        psi = f"{self.score_psi:.4f}" if self.score_psi is not None else "n/a (no validation scores stored)"
        rate = f"{self.predicted_positive_rate:.4f}" if self.predicted_positive_rate is not None else "n/a"
        return [
            f"scored {self.rows:,} rows with {self.model_name} version {self.version} ({self.engine} engine, "
            f"{self.seconds:.1f} s): {self.population}",
            f"predicted positive rate {rate}; score PSI against validation {psi}",
            *(f"  {day}: {self.rows_per_day.get(day, 0):,} rows -> {uri}" for day, uri in self.files.items()),
            f"run {self.run_id}",
        ]


def run_name(population: Any, version: str) -> str:
    """`score 2026-07-29 with v4` (or `score 2026-07-23..2026-07-29 with v4`)."""
    days = (
        population.last.isoformat() if population.first == population.last else f"{population.first}..{population.last}"
    )
    return f"score {days} with v{version}"


def score(
    settings: Settings,
    day: date | None = None,
    *,
    days: int = 1,
    input_path: str | None = None,
    output: str | None = None,
    engine: str | None = None,
) -> ScoreResult:
    """Score the rows of `day` (and the `days - 1` before it) of data.path, or of `input_path`, into the output."""
    import time

    import mlflow

    from retrain import tracking
    from retrain.batch.output import Output
    from retrain.batch.population import resolve
    from retrain.batch.tally import Tally
    from retrain.errors import ConfigError
    from retrain.monitoring import production_version, reference_profile

    engine = engine or settings.score.engine
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    spec = settings.data if input_path is None else replace(settings.data, path=input_path)
    population = resolve(spec, day, days)
    out = Output(output or settings.score.output)
    reg = settings.registry
    version = production_version(settings)
    if version is None:
        raise RegistryError(
            f"{reg.model_name} has no @{reg.production_alias} version to score with; train and promote one first "
            "(`retrain run`)"
        )
    v = str(version.version)
    model_uri = f"models:/{reg.model_name}/{v}"
    try:
        reference = (reference_profile(settings, version).get("validation") or {}).get("scores")
    except RegistryError:
        reference = None  # a version without a profile still scores; its runs have no score PSI
    tally = Tally(reference)
    spark = None
    if engine == "spark":  # before the run: without pyspark or Java, one line and nothing recorded
        from retrain.batch.spark_session import session

        spark = session(settings.spark)
    scored_at = datetime.now(UTC).replace(microsecond=0)
    tags = {
        "retrain.model_name": reg.model_name,
        "retrain.production_version": v,
        "retrain.model_uri": model_uri,
        "retrain.engine": engine,
        "retrain.output": out.uri,
        "retrain.as_of": population.last.isoformat(),
    }
    started = time.perf_counter()
    with tracking.step_run(
        settings.experiments.scoring,
        run_name(population, v),
        tags,
        params={"version": v, "engine": engine, "output": out.uri, "input": spec.path, "days": str(days)},
        settings=settings,
    ) as run:
        mlflow.set_tag(
            "mlflow.note.content",
            f"Batch scores of {population.describe()} with {reg.model_name} version {v} (@{reg.production_alias} "
            f"when the run started), written to {out.uri}/date=YYYY-MM-DD/part-0.parquet.",
        )
        engine_started = time.perf_counter()
        if engine == "pandas":
            from retrain import replay
            from retrain.batch.engine_pandas import score_pandas

            model = replay.load_model(reg.model_name, v)
            files = score_pandas(
                model, v, population, out, batch_rows=settings.score.batch_rows, scored_at=scored_at, tally=tally
            )
        else:
            from retrain.batch.engine_spark import score_spark

            assert spark is not None  # the spark engine started its session above
            files = score_spark(spark, model_uri, v, population, out, scored_at=scored_at, tally=tally)
        engine_seconds = time.perf_counter() - engine_started
        seconds = time.perf_counter() - started
        metrics = {"rows": tally.rows, "seconds": seconds}
        if tally.positive_rate is not None:
            metrics["predicted_positive_rate"] = tally.positive_rate
        if tally.score_psi is not None:
            metrics["score_psi"] = tally.score_psi
        mlflow.log_metrics(metrics)
        result: dict[str, Any] = dict(
            model_name=reg.model_name,
            version=v,
            model_uri=model_uri,
            engine=engine,
            population=population.describe(),
            output=out.uri,
            files=files,
            rows=tally.rows,
            rows_per_day=dict(sorted(tally.days.items())),
            predicted_positive_rate=tally.positive_rate,
            score_psi=tally.score_psi,
            scored_at=scored_at.isoformat(),
            seconds=seconds,
            engine_seconds=engine_seconds,
        )
        tracking.log_json({**result, "run_id": run.info.run_id}, "score.json")
    return ScoreResult(**result, run_id=run.info.run_id)
