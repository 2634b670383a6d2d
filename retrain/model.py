"""The churn classifier: a torch MLP with its preprocessing inside, and its MLflow pyfunc wrapper.

The network standardises numerics and one-hot encodes categoricals (one extra unknown bucket per
feature) itself, so the logged model takes raw feature columns. It is saved as a JSON spec plus a
`state_dict` of tensors, and loaded with `torch.load(weights_only=True)`: loading never unpickles
project objects. Imports of torch, pandas and mlflow stay inside functions to keep the CLI fast.

Inputs as sources deliver them, cast here (`encode`), the same code in training and serving:
- numerics may come as int or float (or numeric text); they become float. Null with `missing: impute`
  becomes the training median plus a missing-indicator input (the indicator only when the training rows
  had missing values, so its weight was learned); with `missing: error` it is refused naming the column.
- categoricals may come as text, integer codes or integral floats (1, 1.0 and "1" are the same category);
  null (None, NaN, "__missing__") is the `__missing__` category with `missing: impute`, refused with
  `missing: error`; a category never seen in training falls in the extra unknown bucket.
Anything else (text in a numeric column, infinities) raises `InputError` naming the column, which the
served model turns into a 400 response; the model never returns NaN.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from retrain.network import ChurnNet

MISSING = "__missing__"


class InputError(ValueError):
    """Input the model cannot score; the message names the column and what to send instead."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network besides its weights (JSON-serialisable).

    Specs written before missing-value handling and decision thresholds lack the last four fields: they load
    with threshold 0.5, no imputation and `missing` None (categorical nulls are the `__missing__` category).
    """

    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]
    hidden_dim: int = 64
    threshold: float = 0.5
    impute: dict[str, float] = field(default_factory=dict)  # numeric feature -> training median
    indicators: list[str] = field(default_factory=list)  # numerics with a missing-indicator input
    missing: dict[str, str] | None = None  # feature -> error | impute

    @property
    def numeric_dim(self) -> int:
        """Numeric inputs of the network: the numeric features, then one indicator per feature in `indicators`."""
        return len(self.numeric) + len(self.indicators)

    @property
    def input_dim(self) -> int:
        return self.numeric_dim + sum(len(self.categories[c]) + 1 for c in self.categorical)

    def policy(self, feature: str) -> str:
        """error | impute; legacy specs impute categoricals (as they did) and refuse missing numerics."""
        if self.missing is None:
            return "impute" if feature in self.categorical else "error"
        return self.missing.get(feature, "error")

    def describe_inputs(self) -> dict[str, str]:
        """One line per input column: what the model accepts and how it casts it (logged as model metadata)."""
        out = {}
        for col in self.numeric:
            refused = "null refused (400 naming the column)"
            if self.policy(col) == "impute":
                indicator = " + missing indicator" if col in self.indicators else ""
                null = f"null -> training median {self.impute[col]:g}{indicator}"
            else:
                null = refused
            out[col] = f"numeric: int or float (cast to float64 in the model); {null}"
        for col in self.categorical:
            null = f"null -> category {MISSING}" if self.policy(col) == "impute" else refused
            out[col] = (
                f"categorical: text or integer codes (1, 1.0 and '1' are one category); {null}; "
                f"{len(self.categories[col])} known categories, others -> unknown bucket"
            )
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls(**json.loads(text))


def build_spec(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    hidden_dim: int,
    missing: Mapping[str, str] | None = None,
) -> ModelSpec:
    """Learn category vocabularies, imputation medians and which numerics get a missing indicator from fit rows."""
    import numpy as np

    missing = {c: (missing or {}).get(c, "error") for c in [*numeric, *categorical]}
    categories = {}
    for c in categorical:
        codes, texts = _category_codes(frame[c])
        categories[c] = sorted({t for t in texts if t != MISSING} | ({MISSING} if (codes < 0).any() else set()))
    impute, indicators = {}, []
    for c in numeric:
        if missing[c] != "impute":
            continue
        values = _numeric_values(frame[c], c)
        present = values[~np.isnan(values)]
        if present.size == 0:
            raise InputError(f"feature {c!r} has no values in the training rows, so there is no median to impute")
        impute[c] = float(np.median(present))
        if present.size < values.size:
            indicators.append(c)
    return ModelSpec(list(numeric), list(categorical), categories, hidden_dim, 0.5, impute, indicators, missing)


_INTEGRAL_TEXT = re.compile(r"-?\d+\.0+")


def _canonical(value: object) -> str:
    """One category's text: integral floats and their text lose the `.0`, so 1, 1.0 and "1" agree."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value)
    return text.split(".")[0] if _INTEGRAL_TEXT.fullmatch(text) else text


def _category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(row -> index into the canonical texts, or -1 for null/`__missing__`; the canonical texts of non-null values).

    Canonicalises each distinct value once (pd.factorize), not each row.
    """
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = [_canonical(u) for u in uniques]
    missing = np.array([t == MISSING for t in texts] + [True])
    codes = np.where(missing[codes], -1, codes)
    return codes, texts


def _numeric_values(values: pd.Series, name: str) -> np.ndarray:
    """A numeric column as float64 (NaN = missing) from int, float, nullable or text values; InputError otherwise."""
    import numpy as np
    import pandas as pd

    if values.dtype.kind in "biuf":  # numpy and nullable (Int64, Float64, boolean) numbers
        out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        parsed = pd.to_numeric(values, errors="coerce")
        bad = parsed.isna() & values.notna()
        if bad.any():
            example = values[bad].iloc[0]
            raise InputError(f"feature {name!r} must be numeric: {int(bad.sum())} value(s) are not (e.g. {example!r})")
        out = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        raise InputError(
            f"feature {name!r} has {int(np.isinf(out).sum())} infinite value(s); send finite numbers or null"
        )
    return out


def encode(frame: pd.DataFrame, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Raw columns -> (float32 numerics then missing indicators, int64 category codes; unknown -> len(vocabulary))."""
    import numpy as np
    import pandas as pd

    absent = [c for c in spec.numeric + spec.categorical if c not in frame.columns]
    if absent:
        raise InputError(f"input is missing feature columns: {', '.join(absent)}")
    n = len(frame)
    numeric = np.empty((n, spec.numeric_dim), dtype=np.float32)
    for j, col in enumerate(spec.numeric):
        values = _numeric_values(frame[col], col)
        nan = np.isnan(values)
        if nan.any():
            if spec.policy(col) != "impute":
                raise InputError(_missing_text(col, int(nan.sum())))
            values = np.where(nan, spec.impute[col], values)
        numeric[:, j] = values
        if col in spec.indicators:
            numeric[:, len(spec.numeric) + spec.indicators.index(col)] = nan
    codes = np.empty((n, len(spec.categorical)), dtype=np.int64)
    for j, col in enumerate(spec.categorical):
        row_codes, texts = _category_codes(frame[col])
        if (row_codes < 0).any() and spec.policy(col) != "impute":
            raise InputError(_missing_text(col, int((row_codes < 0).sum())))
        vocab = spec.categories[col]
        # get_indexer gives -1 for unseen values; the last entry is for missing rows (code -1)
        lookup = pd.Index(vocab).get_indexer([*texts, MISSING]).astype(np.int64)
        lookup[lookup < 0] = len(vocab)
        codes[:, j] = lookup[row_codes]
    return numeric, codes


def _missing_text(col: str, count: int) -> str:
    return (
        f"feature {col!r} is missing (null) in {count} row(s) and this model was trained with "
        f"missing: error for it; send a value, or retrain with model.missing.{col}=impute"
    )


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
