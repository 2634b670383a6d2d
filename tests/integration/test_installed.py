"""`retrain run` from an installed (non-editable) package, as an image would have it: no MLproject beside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from retrain import pipeline
from retrain.errors import ConfigError
from tests.conftest import FAST, REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built from its sources and installed into a folder of its own (`pip install --target`)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "retrain", src / "retrain", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (target / "MLproject").exists() and (target / "retrain" / "cli" / "__init__.py").exists()
    return target


@pytest.mark.slow
def test_run_from_an_installed_package_runs_the_steps_in_process_and_says_so(
    installed, stable_data, tmp_path, tracking
):
    work = tmp_path / "work"  # no MLproject here either
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed), "MLFLOW_TRACKING_URI": tracking}
    env.pop("RETRAIN_PROJECT_DIR", None)
    where = subprocess.run(
        [sys.executable, "-c", "import retrain; print(retrain.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(installed))  # the installed copy, not this checkout
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrain",
            "run",
            "--json",
            "--data",
            str(stable_data),
            "--as-of",
            "2026-02-20",
            "--overrides",
            " ".join(FAST),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["outcome"] == "promoted" and result["production_after"] == "1"
    assert result["steps"] == "in-process" and "RETRAIN_PROJECT_DIR" in result["steps_detail"]
    tags = MlflowClient().get_run(result["run_id"]).data.tags
    assert tags["retrain.steps"] == "in-process" and "installed package" in tags["retrain.steps_detail"]


def test_project_folder_is_the_checkout_the_working_folder_or_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("RETRAIN_PROJECT_DIR", raising=False)
    assert pipeline.project_dir() == REPO  # running from this checkout
    monkeypatch.setattr(pipeline, "PROJECT_DIR", tmp_path / "site-packages")  # as if installed
    monkeypatch.chdir(tmp_path)
    assert pipeline.project_dir() is None
    (tmp_path / "MLproject").write_text("name: other-project\nentry_points: {}\n")
    assert pipeline.project_dir() is None  # somebody else's project
    shutil.copy(REPO / "MLproject", tmp_path / "MLproject")
    assert pipeline.project_dir() == tmp_path  # `mlflow run .` from an image's copy of the project
    monkeypatch.setenv("RETRAIN_PROJECT_DIR", str(REPO))
    assert pipeline.project_dir() == REPO
    monkeypatch.setenv("RETRAIN_PROJECT_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="RETRAIN_PROJECT_DIR=.*nowhere holds no retrain MLproject"):
        pipeline.project_dir()
