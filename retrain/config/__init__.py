"""Settings: frozen dataclasses loaded from one YAML file, with `section.key=value` overrides.

Every value has a default here, so `mlproject/config.yaml` only documents and overrides them. Unknown
keys and values of the wrong type or outside their allowed set raise `ConfigError` naming the key.

`rules` (metric names, limits, name checks), `sections` (data and training), `policies` (decisions and services),
`loading` (`Settings`, YAML, overrides); every name is importable from `retrain.config`.
"""

from retrain.config.loading import (
    DEFAULT_CONFIG,
    Settings,
    _apply_override,
    _build,
    load_settings,
    parse_overrides,
    yaml_number,
)
from retrain.config.policies import (
    CheckPolicy,
    GatePolicy,
    NotifySpec,
    RolloutPolicy,
    ServingSpec,
    TriggerPolicy,
    WatchPolicy,
)
from retrain.config.rules import BASELINE_FLOORS, MAX_DAYS, MAX_SEED, METRICS, check_alias, check_model_name
from retrain.config.scoring import ScoreSpec, SparkSpec
from retrain.config.sections import (
    CostSpec,
    DataSpec,
    Experiments,
    ModelSpec,
    RegistrySpec,
    ThresholdPolicy,
    Windows,
)

__all__ = [
    "BASELINE_FLOORS",
    "DEFAULT_CONFIG",
    "MAX_DAYS",
    "MAX_SEED",
    "METRICS",
    "CheckPolicy",
    "CostSpec",
    "DataSpec",
    "Experiments",
    "GatePolicy",
    "ModelSpec",
    "NotifySpec",
    "RegistrySpec",
    "RolloutPolicy",
    "ScoreSpec",
    "ServingSpec",
    "Settings",
    "SparkSpec",
    "ThresholdPolicy",
    "TriggerPolicy",
    "WatchPolicy",
    "Windows",
    "_apply_override",
    "_build",
    "check_alias",
    "check_model_name",
    "load_settings",
    "parse_overrides",
    "yaml_number",
]
