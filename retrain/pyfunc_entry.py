"""MLflow models-from-code entry: the logged model is this file plus `retrain/model.py`.

MLflow runs this file when loading the model; nothing is unpickled.
"""

import mlflow

from retrain.model import pyfunc_model

mlflow.models.set_model(pyfunc_model())
