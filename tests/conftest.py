"""Every test gets its own SQLite tracking store in its own working folder, and may leave no run open."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One torch thread per worker (and per process a test starts): several workers each spinning two
    # OpenMP threads on two cores slow training down by an order of magnitude.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]

# The modules whose tests run longest (races, faults of services, whole loops as project runs), started first:
# pytest-xdist hands tests to its workers in collection order, and a long test left for the end keeps one worker
# busy while the other waits. Only the order changes; a module not listed keeps its place after these.
LONG_FIRST = (
    "test_registry_races",
    "test_faults",
    "test_loop",
    "test_rollout_state",
    "test_backtest",
    "test_ui",
    "test_installed",
    "test_notebook",
    "test_on_services",
    "test_server",
    "test_replicas",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


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
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_REGISTRY_URI", uri)  # set_registry_uri writes it too: undo that after the test
    # set_tracking_uri/set_registry_uri keep the URI process-wide: restore it after the test, so a later test in
    # the same worker does not find this store (e.g. a deliberately broken one) without asking for it
    mp.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    mp.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
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
    for var in (
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "RETRAIN_PARENT_RUN_ID",
        "RETRAIN_EVENTS_PATH",
        "RETRAIN_PROJECT_DIR",
    ):
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
    # latency depends on the machine's load, and two different models differ in it by themselves: the latency
    # checks have their own tests (tests/unit/test_checks.py, test_evaluate.py's side-by-side test)
    "checks.single_row_p95_ms=10000",
    "checks.batch_1000_p95_ms=100000",
    "checks.latency_ratio=1000",
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


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible server (moto in server mode) on 127.0.0.1 at a free port; stopped after the session."""
    from tests.services import moto_server

    server = moto_server(tmp_path_factory.mktemp("moto"))
    yield server.url
    server.stop()


# ---- tracking servers -------------------------------------------------------------------------------------------
# `sqlite_server`: an `mlflow server` on SQLite that every run of the suite starts (proves the REST path).
# `ci_server` / `ci_server_direct`: the servers .ci/run starts on PostgreSQL + S3 (see tests/services.py);
# tests that use them are marked `server` and skip when RETRAIN_TEST_TRACKING_URI is not set.
# `tracking_server`: both, one after the other: point any test at "a real tracking server" with it.


# Servers, busy CI machine: the pre-promotion latency limits are about the model, not about this machine's load.
BUSY_MACHINE = ("checks.single_row_p95_ms=10000", "checks.batch_1000_p95_ms=100000")


def unique_names(prefix: str = "t") -> list[str]:
    """Overrides giving a test its own registered model and experiments on a shared server (model name
    first, then the training, comparisons, monitoring and cycles experiments), plus BUSY_MACHINE."""
    import uuid

    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return [
        f"registry.model_name=churn-{tag}",
        f"experiments.training=training-{tag}",
        f"experiments.comparisons=comparisons-{tag}",
        f"experiments.monitoring=monitoring-{tag}",
        f"experiments.cycles=cycles-{tag}",
        *BUSY_MACHINE,
    ]


def _needs_env(name: str) -> str:
    import os

    value = os.environ.get(name, "").strip()
    if not value:
        pytest.skip(
            f"{name} is not set: start PostgreSQL, the S3 server and the tracking servers as .ci/run does "
            "(`python -m tests.services up DIR`, then source its output)"
        )
    return value


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` on a SQLite file with proxied artifacts, for the whole session."""
    from tests.services import sqlite_mlflow_server

    server = sqlite_mlflow_server(tmp_path_factory.mktemp("sqlite-server"))
    yield server
    server.stop()


@pytest.fixture
def ci_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """The CI tracking server (PostgreSQL, artifacts proxied to S3), MLflow pointed at it; skips without it."""
    uri = _needs_env("RETRAIN_TEST_TRACKING_URI")
    point_mlflow(monkeypatch, uri)
    return uri


@pytest.fixture
def ci_server_direct(monkeypatch: pytest.MonkeyPatch, ci_s3: str) -> str:
    """The CI tracking server whose clients write artifacts to S3 themselves (`--no-serve-artifacts`)."""
    uri = _needs_env("RETRAIN_TEST_TRACKING_URI_DIRECT")
    point_mlflow(monkeypatch, uri)
    return uri


@pytest.fixture
def ci_s3(monkeypatch: pytest.MonkeyPatch) -> str:
    """The CI S3 server's endpoint, with this process's S3 clients (boto3, MLflow) pointed at it."""
    from tests.services import s3_env

    endpoint = _needs_env("RETRAIN_TEST_S3_ENDPOINT")
    for key, value in s3_env(endpoint).items():
        monkeypatch.setenv(key, value)
    return endpoint


@pytest.fixture(params=["sqlite-server", pytest.param("ci-server", marks=pytest.mark.server)])
def tracking_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real tracking server's URI with MLflow pointed at it: the session's SQLite one, then CI's."""
    if request.param == "ci-server":
        return request.getfixturevalue("ci_server")
    uri = request.getfixturevalue("sqlite_server").url
    point_mlflow(monkeypatch, uri)
    return uri


def write_with_gaps(folder: Path, *, seed: int, region: bool = False) -> Path:
    """45 days x 200 stable rows as sources deliver them: income missing in 5% of rows and channel (null) in 3%;
    with `region`, an integer-coded categorical (int64 codes 1..4). One parquet file in `folder`."""
    import numpy as np

    from retrain import synth

    frame = synth.generate(synth.SynthSpec(days=45, rows_per_day=200, seed=seed))
    rng = np.random.default_rng(seed + 1)
    if region:
        frame["region"] = rng.integers(1, 5, len(frame))
    frame.loc[rng.random(len(frame)) < 0.05, "income"] = np.nan
    frame["channel"] = frame["channel"].astype(object)
    frame.loc[rng.random(len(frame)) < 0.03, "channel"] = None
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "data.parquet")
    return folder
