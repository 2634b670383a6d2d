"""A production model trained once per test module into a private store, for the batch scoring tests (test_score.py,
test_spark.py ask for `score_store`; tests/integration/conftest.py makes it visible)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import fast_settings, use_store, write_with_gaps

TRAINED_AS_OF = date(2026, 2, 10)  # write_with_gaps: 45 days from 2026-01-01
GAPS = ("model.missing={income: impute, channel: impute}",)  # its missing values, imputed


@pytest.fixture(scope="module")
def _score_production(tmp_path_factory: pytest.TempPathFactory, _template_db: Path) -> dict:
    """Data with missing values (income NaN, channel null), and a production version trained on it: once a module."""
    from retrain.training import train

    folder = tmp_path_factory.mktemp("score")
    data = write_with_gaps(folder / "data", seed=5)
    with pytest.MonkeyPatch.context() as mp:
        use_store(mp, _template_db, folder)
        out = train(fast_settings(data, *GAPS), TRAINED_AS_OF)
        MlflowClient().set_registered_model_alias(out.model_name, "production", out.version)
    return {"data": data, "db": folder / "mlflow.db", "version": out.version, "name": out.model_name}


@pytest.fixture
def score_store(_score_production: dict, tracking: str) -> dict:
    """The trained store copied into this test's tracking database."""
    shutil.copy(_score_production["db"], tracking.removeprefix("sqlite:///"))
    return _score_production
