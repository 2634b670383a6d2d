"""`retrain serve`'s fast path for our own models: request columns -> the network's arrays -> answers, no pandas.

The pyfunc model (what `mlflow models serve` and batch scoring load) goes DataFrame -> `features.encode` ->
network; this goes the request's validated columns -> `features.encode_columns` -> the same loaded network:
the same casts (one module, `retrain.features`), the same forward pass (`model.predict_proba`, under
`torch.inference_mode`), the same threshold. `retrain score` scores its batches' DataFrames the same way
(`predict_frame`: `features.encode`, then the network). Models that are not ours (no `net` and `spec` inside
their pyfunc wrapper) have no fast path and are scored through their `predict`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrain.features import InputError, ModelSpec, encode, encode_columns
from retrain.model import ours
from retrain.serving.payload import Parsed, PayloadError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class FastModel:
    """One loaded version's network and spec, scoring validated request columns."""

    def __init__(self, net: Any, spec: ModelSpec) -> None:
        self.net, self.spec = net, spec
        self.mean = net.mean.detach().cpu().numpy()  # the network standardises inside; checked here first
        self.std = net.std.detach().cpu().numpy()

    @classmethod
    def of(cls, pyfunc_model: Any) -> FastModel | None:
        """The fast path of a loaded pyfunc model, or None when it is not one of ours."""
        inner = ours(pyfunc_model)
        return None if inner is None else cls(inner.net, inner.spec)

    def encode(self, parsed: Parsed) -> tuple[np.ndarray, np.ndarray]:
        """The request's records as the network's arrays, once per request and version; PayloadError (422) naming
        the record and field of a value the network cannot take, before it runs."""
        import numpy as np

        key = id(self)
        if key in parsed.encoded:
            return parsed.encoded[key]
        try:
            numeric, codes = encode_columns(parsed.columns, parsed.n, self.spec)
        except InputError as exc:
            where = f"record {exc.row}: " if exc.row is not None else ""
            raise PayloadError(422, f"{where}{exc}") from None
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite((numeric - self.mean) / self.std)
        if not finite.all():
            row, j = (int(k[0]) for k in np.nonzero(~finite))
            names = [*self.spec.numeric, *(f"{c} (missing indicator)" for c in self.spec.indicators)]
            raise PayloadError(
                422,
                f"record {row}: feature {names[j]!r} is {float(numeric[row, j]):g}, too far from the training "
                "data for the model to score; send a value in the feature's usual range",
            )
        parsed.encoded[key] = (numeric, codes)
        return numeric, codes

    def predict(self, parsed: Parsed, idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(prediction 0/1 as int64, probability of class 1 as float64) for the records `idx` (all when None)."""
        numeric, codes = self.encode(parsed)
        if idx is not None:
            numeric, codes = numeric[idx], codes[idx]
        return self._answer(numeric, codes)

    def predict_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """`predict` for a DataFrame of raw features (`retrain score`'s batches): `features.encode`, then the
        network, what the pyfunc model's `predict` computes, without its schema check and DataFrame round trip.
        InputError naming the column of a value the model cannot take."""
        return self._answer(*encode(frame, self.spec))

    def _answer(self, numeric: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        from retrain.model import predict_proba

        probability = predict_proba(self.net, numeric, codes)
        if not np.isfinite(probability).all():  # cannot happen for the inputs encode lets through; never hand out NaN
            raise InputError(f"{int((~np.isfinite(probability)).sum())} row(s) scored no finite probability")
        return (probability >= self.spec.threshold).astype(np.int64), probability
