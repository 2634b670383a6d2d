"""What runs log and read back: the effective settings file, small JSON artifacts, the models-from-code pyfunc
model (its code, requirements and signature)."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PACKAGE_DIR = Path(__file__).resolve().parent
# What the logged model imports (its code, copied beside it): nothing else of retrain.
MODEL_CODE = ("model.py", "features.py", "network.py")


def settings_yaml(settings: Any) -> str:
    """The effective settings as YAML (a local data path made absolute): what a step really ran with, with
    credentials in URIs masked (`retrain.redaction`): this text is stored as an artifact."""
    import yaml

    values = settings.to_dict()
    values["data"]["path"] = data_path(settings)
    return yaml.safe_dump(_without_secrets(values), sort_keys=False)


def data_path(settings: Any) -> str:
    """The data path a step is handed: a local path made absolute, a URI as it is (credentials included)."""
    path = settings.data.path
    if "://" not in path and not path.startswith(("sqlite:", "postgresql", "mysql")):
        return str(Path(path).resolve())
    return path


def _without_secrets(value: Any) -> Any:
    """Settings values with every URI in them redacted (a prediction log's or a data source's password)."""
    from retrain.store import safe_text

    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return safe_text(value) if isinstance(value, str) else value


def log_settings(settings: Any) -> None:
    """The effective settings file as the active run's artifact `settings.yaml`."""
    import mlflow

    mlflow.log_text(settings_yaml(settings), "settings.yaml")


def log_json(obj: Any, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), artifact_file)


def load_json_artifact(run_id: str, artifact_path: str) -> Any:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=tmp)
        return json.loads(Path(local).read_text())


def pip_requirements() -> list[str]:
    """Explicit requirements for the served model (inferring them costs a ~10 s subprocess)."""
    import mlflow
    import numpy
    import pandas
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
    ]


def log_pyfunc_model(
    model_files: dict[str, str],
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
    name: str = "model",
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Log the network as a models-from-code pyfunc; returns MLflow's ModelInfo.

    The code is `pyfunc_entry.py` plus a copy of just `MODEL_CODE` under a bare `retrain/__init__.py`, so the
    model loads without the rest of this package (not installed, or installed at another version) and without
    unpickling anything.
    `metadata` lands in the MLmodel file (what each input accepts, the decision threshold).

    This is `mlflow.pyfunc.log_model` minus its serving-input validation: that check loads the logged model
    back (checking every requirement against the installed packages) and scores the example, ~40% of the
    call, and a failure there is only a warning. The candidate is loaded as the registry serves it and scored
    on the golden samples by the pre-promotion checks (`checks.run_checks`), which block promotion instead.
    """
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "retrain"
        code.mkdir()
        # The package's own __init__ is the composition root (it imports the serving layer): the copy gets a
        # bare one, so the model loads where only MLflow and torch are installed (a Spark worker, a server).
        (code / "__init__.py").write_text(
            '"""retrain\'s model code, as logged with a model (retrain/run_artifacts.py)."""\n'
        )
        for file in MODEL_CODE:
            shutil.copy(PACKAGE_DIR / file, code / file)
        with _without_log_line("mlflow.pyfunc", "Validating input example against model signature"):
            return Model.log(
                artifact_path=None,
                name=name,
                flavor=_PyfuncFlavor,
                flavor_name="pyfunc.ModelFromCode",  # what mlflow.pyfunc.log_model records for a code file
                validate_serving_input=False,
                python_model=str(PACKAGE_DIR / "pyfunc_entry.py"),
                artifacts=model_files,
                code_paths=[str(code)],
                signature=_signature(input_example, output_example),
                input_example=input_example,
                pip_requirements=pip_requirements(),
                metadata=metadata,
            )


@contextlib.contextmanager
def _without_log_line(logger: str, text: str) -> Iterator[None]:
    """Drop one known INFO line of MLflow's during our own call (MLflow logs it on every model we log with a
    signature and an input example); everything else, the user's own logging included, passes."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.levelno <= logging.INFO and record.getMessage() == text)

    drop = _Drop()
    target = logging.getLogger(logger)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


class _PyfuncFlavor:
    """`mlflow.pyfunc` as `Model.log`'s flavor. `Model.log` reads `validate_serving_input` from the keywords
    it hands on to the flavor's `save_model`, which `mlflow.pyfunc.save_model` refuses: drop it there."""

    @staticmethod
    def save_model(*, validate_serving_input: bool = True, **kwargs: Any) -> Any:
        import mlflow.pyfunc

        return mlflow.pyfunc.save_model(**kwargs)


def _signature(input_example: pd.DataFrame, output_example: pd.DataFrame) -> Any:
    """Every input column is declared `any` (required): the model casts inside (see retrain/model.py).

    MLflow 3.17 enforces declared column types before the model sees a row and refuses int64 -> double,
    float64 -> long and int64 -> string, so no declared type accepts a numeric sent as int or float, or an
    integer-coded categorical. What each column accepts is in the model's metadata (`inputs`).
    """
    import warnings

    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema
    from mlflow.types.utils import _infer_schema

    inputs = Schema([ColSpec(AnyType(), str(col)) for col in input_example.columns])
    with warnings.catch_warnings():  # `prediction` is an integer column on purpose: it is never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
        outputs = _infer_schema(output_example)
    return ModelSignature(inputs=inputs, outputs=outputs)
