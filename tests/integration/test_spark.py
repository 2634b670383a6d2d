"""The Spark engines in local mode against the pandas ones on the same data: `retrain score --engine spark` writes
the same rows and probabilities, `retrain check --engine spark` the same PSI, metrics and evidence (within 1e-9).

One SparkSession (local[2]) serves the module: a JVM starts in about 10 s.
"""

from __future__ import annotations

import json
import math
from datetime import date

import pandas as pd
import pytest
from click.testing import CliRunner

from retrain.cli import cli
from tests.conftest import FAST, fast_settings
from tests.integration.score_support import GAPS

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.slow, pytest.mark.spark]

MASTER = "spark.master=local[2]"


@pytest.fixture(scope="module")
def spark():
    from retrain.batch.spark_session import session
    from retrain.config import SparkSpec

    s = session(SparkSpec(master="local[2]", conf={"spark.sql.shuffle.partitions": "4"}))
    yield s
    s.stop()


def _score(data, engine: str, output: str) -> dict:
    sets = [x for item in (*FAST, *GAPS, MASTER) for x in ("--set", item)]
    args = ["score", "--data", str(data), *sets, "--day", "2026-02-14", "--days", "2", "--engine", engine]
    result = CliRunner().invoke(cli, [*args, "--output", output, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_score_engines_write_the_same_rows_and_probabilities(spark, score_store, tmp_path):
    on_pandas = _score(score_store["data"], "pandas", str(tmp_path / "pandas"))
    on_spark = _score(score_store["data"], "spark", str(tmp_path / "spark"))
    assert set(on_spark["files"]) == set(on_pandas["files"]) == {"2026-02-13", "2026-02-14"}
    assert on_spark["rows"] == on_pandas["rows"] == 400 and on_spark["version"] == on_pandas["version"]
    assert on_spark["predicted_positive_rate"] == on_pandas["predicted_positive_rate"]
    assert abs(on_spark["score_psi"] - on_pandas["score_psi"]) < 1e-12
    for day in on_pandas["files"]:
        a, b = (
            pd.read_parquet(out["files"][day]).sort_values(["entity_id", "probability"], ignore_index=True)
            for out in (on_pandas, on_spark)
        )
        assert list(a.columns) == list(b.columns)
        assert a["entity_id"].tolist() == b["entity_id"].tolist()
        assert (a["probability"] - b["probability"]).abs().max() < 1e-9
        assert a["prediction"].tolist() == b["prediction"].tolist()
        assert a["version"].tolist() == b["version"].tolist() and a["as_of"].tolist() == b["as_of"].tolist()


def _close(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_check_engines_agree_on_drift_and_metrics(spark, score_store):
    from retrain.monitoring import check

    settings = fast_settings(score_store["data"], *GAPS, MASTER)
    on_pandas = check(settings, date(2026, 2, 14)).to_dict()
    on_spark = check(settings, date(2026, 2, 14), engine="spark").to_dict()
    assert on_pandas["performance"] and on_pandas["evidence"]["prediction_psi"] is not None
    assert on_pandas["n_rows"] == 7 * 200  # with income missing in 5% and channel in 3% of them
    for key in ("psi", "performance", "evidence", "n_rows", "n_labels", "window", "decision", "production_version"):
        _close(on_pandas[key], on_spark[key], key)
