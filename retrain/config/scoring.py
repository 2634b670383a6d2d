"""Settings sections for batch scoring (`retrain score`) and the Spark session it and `retrain check` may use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from retrain.errors import ConfigError


@dataclass(frozen=True)
class ScoreSpec:
    """Where `retrain score` writes and how it reads: Parquet under `output/date=YYYY-MM-DD/`, one file a day."""

    output: str = "scores"  # a local folder or s3://bucket/prefix
    engine: Literal["pandas", "spark"] = "pandas"
    # Rows per batch the pandas engine reads, scores and writes (one Parquet row group each): memory is about
    # this many rows, whatever the population.
    batch_rows: int = 262_144

    def __post_init__(self) -> None:
        if not self.output.strip():
            raise ConfigError("score.output: empty; set a folder or s3://bucket/prefix for the scores")
        if self.batch_rows < 1:
            raise ConfigError(f"score.batch_rows: must be >= 1, got {self.batch_rows}")


@dataclass(frozen=True)
class SparkSpec:
    """The Spark session of `--engine spark`: its master, and any further `spark.*` configuration."""

    master: str = "local[*]"  # local[N], spark://host:7077, yarn, k8s://https://...
    app_name: str = "retrain"
    conf: dict[str, str] = field(default_factory=dict)  # e.g. {spark.executor.memory: 4g}

    def __post_init__(self) -> None:
        if not self.master.strip():
            raise ConfigError("spark.master: empty; use local[*], spark://host:7077, yarn or k8s://...")
        bad = next((k for k in self.conf if not k.startswith("spark.")), None)
        if bad is not None:
            raise ConfigError(f"spark.conf.{bad}: Spark settings start with 'spark.', e.g. spark.executor.memory")
