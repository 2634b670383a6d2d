import mlflow

from tests.conftest import fast_settings


def test_train_registers_staging(stable_data):
    from retrain.training import train

    out = train(fast_settings(stable_data))
    mv = mlflow.MlflowClient().get_model_version_by_alias(out.model_name, "staging")
    assert str(mv.version) == out.version
