"""The churn classifier: a torch MLP with its preprocessing inside, and its MLflow pyfunc wrapper.

The network standardises numerics and one-hot encodes categoricals (one extra unknown bucket per
feature) itself, so the logged model takes raw feature columns. It is saved as a JSON spec plus a
`state_dict` of tensors, and loaded with `torch.load(weights_only=True)`: loading never unpickles
project objects. Imports of torch, pandas and mlflow stay inside functions to keep the CLI fast.

Inputs are cast by `retrain.features` (the spec, `encode`), the same code in training, in this pyfunc model
and in `retrain serve`'s fast path; an `InputError` becomes a 400 response; the model never returns NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.features import MISSING, InputError, ModelSpec, build_spec, encode

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from retrain.network import ChurnNet

__all__ = ["MISSING", "InputError", "ModelSpec", "build_spec", "encode"]  # their home is retrain.features


def build_network(spec: ModelSpec, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> ChurnNet:
    """The MLP (hidden `hidden_dim`, two outputs) with standardisation and one-hot inside."""
    import torch

    from retrain.network import ChurnNet

    k = spec.numeric_dim
    return ChurnNet(
        torch.zeros(k) if mean is None else torch.as_tensor(mean, dtype=torch.float32),
        torch.ones(k) if std is None else torch.as_tensor(std, dtype=torch.float32),
        [len(spec.categories[c]) + 1 for c in spec.categorical],
        spec.hidden_dim,
    )


def predict_proba(net: torch.nn.Module, numeric: np.ndarray, codes: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
    """Probability of class 1, in float64, computed in batches without gradients."""
    import numpy as np
    import torch

    device = next(net.parameters()).device
    # torch.from_numpy warns on read-only arrays (pandas may hand those out); copy only then
    numeric = numeric if numeric.flags.writeable else numeric.copy()
    codes = codes if codes.flags.writeable else codes.copy()
    out = np.empty(len(numeric), dtype=np.float64)
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(numeric), batch_size):
            stop = start + batch_size
            logits = net(
                torch.from_numpy(numeric[start:stop]).to(device), torch.from_numpy(codes[start:stop]).to(device)
            )
            out[start:stop] = torch.softmax(logits, dim=1)[:, 1].double().cpu().numpy()
    return out


def save(net: torch.nn.Module, spec: ModelSpec, folder: Path) -> dict[str, str]:
    """Write `spec.json` and `weights.pt` (tensors only); returns MLflow artifact paths."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(spec.to_json())
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save(state, folder / "weights.pt")
    return {"spec": str(folder / "spec.json"), "weights": str(folder / "weights.pt")}


def load(spec_path: str | Path, weights_path: str | Path) -> tuple[torch.nn.Module, ModelSpec]:
    """Rebuild the network from its spec and weights without unpickling objects."""
    import torch

    spec = ModelSpec.from_json(Path(spec_path).read_text())
    net = build_network(spec)
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    net.eval()
    return net, spec


def score_frame(net: torch.nn.Module, spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Raw feature columns -> DataFrame with `prediction` (0/1) and `probability` (of class 1)."""
    import numpy as np
    import pandas as pd

    numeric, codes = encode(frame, spec)
    probability = predict_proba(net, numeric, codes)
    if not np.isfinite(probability).all():  # cannot happen for finite inputs; never hand out NaN
        raise InputError(f"{int((~np.isfinite(probability)).sum())} row(s) scored no finite probability")
    return pd.DataFrame({"prediction": (probability >= spec.threshold).astype(np.int64), "probability": probability})


def conform(frame: pd.DataFrame, pyfunc_model: Any) -> pd.DataFrame:
    """Cast integral float columns to int64 where the model's signature says `long`.

    The signature follows the raw data (integer columns stay `long`, so JSON clients can send
    `{"age": 41}`); MLflow refuses float -> long, and validated frames hold floats.
    """
    import numpy as np
    from mlflow.types import DataType

    schema = pyfunc_model.metadata.get_input_schema()
    if schema is None:
        return frame
    casts = {}
    for col in schema.inputs:
        if col.name in frame.columns and col.type == DataType.long and frame[col.name].dtype.kind == "f":
            values = frame[col.name].to_numpy()
            if np.isfinite(values).all() and (values == np.round(values)).all():
                casts[col.name] = "int64"
    return frame.astype(casts) if casts else frame


def _pandas():
    import pandas

    return pandas


def _pyfunc_class() -> type:
    from mlflow.pyfunc import PythonModel

    class ChurnPyfunc(PythonModel):
        """Serves the network: DataFrame of raw features in, `prediction` and `probability` out."""

        def load_context(self, context: Any) -> None:
            import torch

            torch.set_num_threads(max(1, torch.get_num_threads()))
            self.net, self.spec = load(context.artifacts["spec"], context.artifacts["weights"])

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            import pandas as pd
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            if not isinstance(model_input, pd.DataFrame):
                model_input = pd.DataFrame(model_input)
            try:
                return score_frame(self.net, self.spec, model_input)
            except InputError as exc:  # the scoring server answers 400 with this message
                raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None

        # This module postpones annotations (strings) and imports pandas lazily, so MLflow (which reads the
        # hints when the class is made) could not resolve "pd.DataFrame": it logged "Unsupported type hint" and
        # warned "Add type hints to `predict`" on every log and load. Real objects instead: a DataFrame hint
        # is one MLflow takes without schema inference (the signature declares the inputs: run_artifacts._signature).
        predict.__annotations__.update(
            context=Any, model_input=_pandas().DataFrame, params=dict | None, **{"return": _pandas().DataFrame}
        )

    return ChurnPyfunc


def pyfunc_model() -> Any:
    """A fresh pyfunc instance (used by `retrain/pyfunc_entry.py`, MLflow's models-from-code file)."""
    return _pyfunc_class()()


def ours(pyfunc_model: Any) -> Any | None:
    """The PythonModel inside a loaded pyfunc model when it is one of ours (its network `net` and `spec`), else
    None: not a PythonModel, or another kind."""
    try:
        inner = pyfunc_model.unwrap_python_model()
        net, spec = inner.net, inner.spec
    except Exception:
        return None
    return inner if isinstance(spec, ModelSpec) and hasattr(net, "mean") else None
