"""Every test gets its own SQLite tracking store in its own working folder, and may leave no run open."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite database, made once (migrations take seconds)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("template")
    db = folder / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{db}", str(folder / "mlruns"))
    store.engine.dispose()
    return db


def point_mlflow(mp: pytest.MonkeyPatch, uri: str) -> None:
    """Point MLflow at `uri`: the environment (for child processes) and the fluent API."""
    import mlflow

    mp.setenv("MLFLOW_TRACKING_URI", uri)
    # set_registry_uri also exports MLFLOW_REGISTRY_URI; through mp it is undone after the test, so child
    # processes of later tests do not inherit this test's registry
    mp.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # set_experiment() caches the experiment id process-wide; a new store must not inherit it
    mp.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)


def use_store(mp: pytest.MonkeyPatch, db_source: Path, folder: Path) -> str:
    """Copy a store's database into `folder`, work there (artifacts land there) and point MLflow at it."""
    db = folder / "mlflow.db"
    shutil.copy(db_source, db)
    mp.chdir(folder)
    uri = f"sqlite:///{db}"
    point_mlflow(mp, uri)
    return uri


@pytest.fixture(autouse=True)
def tracking(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh tracking URI (copied template DB) with the test's tmp folder as working folder."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "RETRAIN_PARENT_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    if "unit" in request.node.nodeid.split("/"):
        yield ""
        return
    import mlflow

    uri = use_store(monkeypatch, request.getfixturevalue("_template_db"), tmp_path)
    yield uri
    leaked = mlflow.active_run()
    while mlflow.active_run() is not None:
        mlflow.end_run()
    assert leaked is None, f"test left run {leaked.info.run_id} open"


FAST = (
    "model.epochs=6",
    "model.patience=2",
    "windows.train_days=30",
    "windows.validation_days=10",
    "windows.monitor_days=7",
    "gate.min_rows=100",
    "trigger.min_labels=100",
)


def fast_settings(data_path: str | Path, *overrides: str):
    """Settings for small, quick integration tests on `data_path`."""
    from retrain.config import load_settings

    return load_settings(None, [*FAST, f"data.path={data_path}", *overrides])


@pytest.fixture(scope="session")
def stable_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 days x 250 rows of stable synthetic data (2026-01-01..2026-03-01), written once."""
    from retrain import synth

    out = tmp_path_factory.mktemp("stable")
    synth.write(synth.SynthSpec(days=60, rows_per_day=250, scenario="stable", seed=1), out)
    return out
