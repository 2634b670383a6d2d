"""The churn classifier: a torch MLP with its preprocessing inside, and its MLflow pyfunc wrapper.

The network standardises numerics and one-hot encodes categoricals (one extra unknown bucket per
feature) itself, so the logged model takes raw feature columns. It is saved as a JSON spec plus a
`state_dict` of tensors, and loaded with `torch.load(weights_only=True)`: loading never unpickles
project objects. Imports of torch, pandas and mlflow stay inside functions to keep the CLI fast.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network besides its weights (JSON-serialisable)."""

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]
    hidden_dim: int = 64

    @property
    def input_dim(self) -> int:
        return len(self.numeric) + sum(len(self.categories[c]) + 1 for c in self.categorical)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls(**json.loads(text))


def build_spec(frame: pd.DataFrame, numeric: list[str], categorical: list[str], hidden_dim: int) -> ModelSpec:
    """Learn the category vocabularies from training rows."""
    categories = {c: sorted(map(str, frame[c].unique())) for c in categorical}
    return ModelSpec(list(numeric), list(categorical), categories, hidden_dim)


def encode(frame: pd.DataFrame, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw columns -> (float32 numerics, int64 category codes; unknown -> len(vocabulary))."""
    import numpy as np
    import pandas as pd

    numeric = np.ascontiguousarray(frame[spec.numeric].to_numpy(dtype=np.float32, na_value=np.nan))
    codes = np.empty((len(frame), len(spec.categorical)), dtype=np.int64)
    for j, col in enumerate(spec.categorical):
        vocab = spec.categories[col]
        # get_indexer gives -1 for unseen values (pd.Categorical with unseen values is deprecated).
        col_codes = pd.Index(vocab).get_indexer(frame[col].astype(str)).astype(np.int64)
        col_codes[col_codes < 0] = len(vocab)
        codes[:, j] = col_codes
    return numeric, codes


def build_network(spec: ModelSpec, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> torch.nn.Module:
    """The MLP (hidden `hidden_dim`, two outputs) with standardisation and one-hot inside."""
    import torch
    from torch import nn

    class ChurnNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            k = len(spec.numeric)
            self.register_buffer("mean", torch.zeros(k) if mean is None else torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.ones(k) if std is None else torch.as_tensor(std, dtype=torch.float32))
            self.sizes = [len(spec.categories[c]) + 1 for c in spec.categorical]
            offsets = [0]
            for size in self.sizes[:-1]:
                offsets.append(offsets[-1] + size)
            self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64))
            self.onehot_dim = sum(self.sizes)
            self.net = nn.Sequential(
                nn.Linear(spec.input_dim, spec.hidden_dim),
                nn.ReLU(),
                nn.Linear(spec.hidden_dim, spec.hidden_dim),
                nn.ReLU(),
                nn.Linear(spec.hidden_dim, 2),
            )

        def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            x = (numeric - self.mean) / self.std
            if self.onehot_dim:
                onehot = torch.zeros(numeric.shape[0], self.onehot_dim, device=numeric.device, dtype=x.dtype)
                onehot.scatter_(1, codes + self.offsets, 1.0)
                x = torch.cat([x, onehot], dim=1)
            return self.net(x)

    return ChurnNet()


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

    missing = [c for c in spec.numeric + spec.categorical if c not in frame.columns]
    if missing:
        raise ValueError(f"input is missing feature columns: {', '.join(missing)}")
    numeric, codes = encode(frame, spec)
    probability = predict_proba(net, numeric, codes)
    return pd.DataFrame({"prediction": (probability >= 0.5).astype(np.int64), "probability": probability})


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


def _pyfunc_class() -> type:
    import mlflow.pyfunc

    class ChurnPyfunc(mlflow.pyfunc.PythonModel):
        """Serves the network: DataFrame of raw features in, `prediction` and `probability` out."""

        def load_context(self, context: Any) -> None:
            import torch

            torch.set_num_threads(max(1, torch.get_num_threads()))
            self.net, self.spec = load(context.artifacts["spec"], context.artifacts["weights"])

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            import pandas as pd

            if not isinstance(model_input, pd.DataFrame):
                model_input = pd.DataFrame(model_input)
            return score_frame(self.net, self.spec, model_input)

    return ChurnPyfunc


def pyfunc_model() -> Any:
    """A fresh pyfunc instance (used by `retrain/pyfunc_entry.py`, MLflow's models-from-code file)."""
    return _pyfunc_class()()
