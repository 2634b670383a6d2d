"""The whole `Settings` and how it is read: one YAML file (or a run's `settings.yaml`), `section.key=value`
overrides, and the coercion that names the key of any unknown or ill-typed value."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrain.config.policies import (
    CheckPolicy,
    GatePolicy,
    NotifySpec,
    RolloutPolicy,
    ServingSpec,
    TriggerPolicy,
    WatchPolicy,
)
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
from retrain.errors import ConfigError

DEFAULT_CONFIG = Path("mlproject/config.yaml")


@dataclass(frozen=True)
class Settings:
    """Everything one run of the loop needs."""

    data: DataSpec = field(default_factory=DataSpec)
    windows: Windows = field(default_factory=Windows)
    model: ModelSpec = field(default_factory=ModelSpec)
    threshold: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    cost: CostSpec = field(default_factory=CostSpec)
    registry: RegistrySpec = field(default_factory=RegistrySpec)
    experiments: Experiments = field(default_factory=Experiments)
    gate: GatePolicy = field(default_factory=GatePolicy)
    checks: CheckPolicy = field(default_factory=CheckPolicy)
    trigger: TriggerPolicy = field(default_factory=TriggerPolicy)
    notify: NotifySpec = field(default_factory=NotifySpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    watch: WatchPolicy = field(default_factory=WatchPolicy)
    score: ScoreSpec = field(default_factory=ScoreSpec)
    spark: SparkSpec = field(default_factory=SparkSpec)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.model.missing) - set(self.data.features))
        if unknown:
            raise ConfigError(
                f"model.missing.{unknown[0]}: {unknown[0]!r} is not a feature; features: "
                f"{', '.join(self.data.features)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, str]:
        """`section.key` -> value as text: what training logs as params."""
        out: dict[str, str] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                out[f"{section}.{key}"] = str(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_settings(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read the YAML settings file (if any), apply `section.key=value` overrides, validate."""
    import yaml

    raw: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is not None and str(path).startswith("runs:/"):
        return _load_run_settings(str(path), overrides)
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"settings file {path} does not exist; pass --config PATH or omit it for defaults")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"settings file {path} is not valid YAML: {first}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"settings file {path} must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    return _build(Settings, raw, "")


def _load_run_settings(uri: str, overrides: list[str] | tuple[str, ...]) -> Settings:
    """Settings from a run's artifact (`runs:/RUN_ID/settings.yaml`: the file a cycle logs for its steps)."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        except Exception as exc:
            raise ConfigError(
                f"settings {uri} cannot be read: {str(exc).splitlines()[0][:300]}; pass --config "
                "a YAML file or a runs:/RUN_ID/settings.yaml of an existing run"
            ) from None
        return load_settings(local, overrides)


def parse_overrides(text: str) -> list[str]:
    """Split an MLproject `set` parameter ("a.b=1 c.d=x", or comma-separated) into overrides."""
    return [part for part in text.replace(",", " ").split() if part]


def _apply_override(raw: dict[str, Any], item: str) -> None:
    import yaml

    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. model.epochs=5")
    section, name = parts
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise ConfigError(f"settings section {section!r} must be a mapping")
    target[name] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"settings {where or 'file'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown setting {prefix}{unknown[0]}; allowed {('in ' + where) if where else 'sections'}: "
            f"{', '.join(fields)}"
        )
    values = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        values[name] = _coerce(hints[name], value, key)
    return cls(**values)


def yaml_number(value: Any) -> Any:
    """'25' (from a comma-separated override) -> 25; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, key)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"setting {key}: {value!r} is not allowed; allowed: {', '.join(map(str, args))}")
        return value
    if origin is tuple and args[0] is float:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        try:
            return tuple(_coerce(float, yaml_number(v), key) for v in value)
        except TypeError:
            raise ConfigError(f"setting {key}: expected a list of numbers, got {value!r}") from None
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {key}: expected a list of names, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"setting {key}: expected a mapping like {{name: number}}, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting {key}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"setting {key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"setting {key}: expected text, got {value!r}")
        if isinstance(value, bool):  # YAML reads unquoted yes/no/on/off/true/false as booleans
            raise ConfigError(
                f"setting {key}: got {value!r}, which YAML read from an unquoted yes/no/true/false; "
                f'quote the text, e.g. {key.rpartition(".")[2]}: "yes"'
            )
        return str(value)
    raise ConfigError(f"setting {key}: unsupported type {hint!r}")  # pragma: no cover - programming error
