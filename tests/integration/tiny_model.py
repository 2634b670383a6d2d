"""A tiny real pyfunc model (MLflow models-from-code) whose behaviour comes from its model_config.

model_config keys: `probability` (constant output, default 0.9), `sleep_ms` (per predict call),
`fail` (predict raises), `fail_load` (load_context raises), `flip_of` (a local model folder: answer with the
opposite of that model, a label-flipped version of it). Used to register deliberately bad, slow,
failing and unloadable versions next to real trained ones.
"""

import time

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class TinyModel(PythonModel):
    def load_context(self, context):
        self.config = dict(context.model_config or {})
        if self.config.get("fail_load"):
            raise RuntimeError("deliberately unloadable model")
        self.flipped = mlflow.pyfunc.load_model(self.config["flip_of"]) if self.config.get("flip_of") else None

    def predict(self, context, model_input, params=None):
        if self.config.get("sleep_ms"):
            time.sleep(float(self.config["sleep_ms"]) / 1000)
        if self.config.get("fail"):
            raise RuntimeError("deliberately broken model")
        if self.flipped is not None:
            out = self.flipped.predict(model_input)
            return pd.DataFrame({"prediction": 1 - out["prediction"], "probability": 1 - out["probability"]})
        p = float(self.config.get("probability", 0.9))
        n = len(model_input)
        return pd.DataFrame({"prediction": [int(p >= 0.5)] * n, "probability": [p] * n})


mlflow.models.set_model(TinyModel())
