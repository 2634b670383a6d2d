"""The Spark session of `--engine spark`, built from the `spark` settings (one a process: Spark's own getOrCreate).

Timestamps are instants in UTC inside the session (`spark.sql.session.timeZone=UTC`), as they are in the pandas
path; days in `data.timezone` are computed from them explicitly. Parquet timestamps are written as microseconds
(not Spark's legacy INT96), so pandas, pyarrow and Spark read the scores the same.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from retrain.config import SparkSpec
from retrain.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# A Python exception's last line in a traceback Spark relays: `ValueError: ...`, `pyarrow.lib.ArrowInvalid: ...`.
_PYTHON_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Invalid|Exit|Interrupt)\b.*")

FIXED = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}


def cause(exc: BaseException) -> str:
    """The line of a Spark error that names its cause: its first line, or for an exception thrown in a Python worker
    (whose first line says only that) the Python exception at the end of the traceback Spark relays."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if "Python worker" in lines[0]:
        named = [line for line in lines[1:] if _PYTHON_ERROR.match(line)]
        if named:
            head = lines[0].rstrip(":")
            return f"{head}{' ' if head.endswith('.') else ': '}{named[-1]}"
    return lines[0]


def session(spec: SparkSpec) -> SparkSession:
    """A SparkSession on `spec.master`; ConfigError saying how to install pyspark or Java when either is missing."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            "--engine spark needs pyspark: pip install 'retrain[spark]' (and Java 17+, e.g. apt-get install "
            "default-jre-headless)"
        ) from None
    import os
    import shutil

    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise ConfigError(
            "--engine spark needs Java 17+ (no `java` on PATH, no JAVA_HOME); apt-get install default-jre-headless"
        )
    builder = SparkSession.builder.master(spec.master).appName(spec.app_name)
    for key, value in {**spec.conf, **FIXED}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        raise ConfigError(f"cannot start Spark on spark.master={spec.master!r}: {cause(exc)[:300]}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_path(uri: str) -> str:
    """A data or output URI as Spark's Hadoop filesystems name it: s3:// -> s3a:// (the hadoop-aws connector)."""
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri
