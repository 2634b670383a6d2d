"""The backtest's policies and days (pure): `--policies` text as policies, `--from`/`--to` days, `--every`, and the
as-of days they give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, timedelta

from retrain.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    """One way of choosing what serves: loop | never | always | every:Nd, optionally with its own settings
    (`loop@trigger.drift_action=warn@gate.mode=auto`: the loop with those overrides)."""

    name: str
    kind: str
    days: int = 0
    overrides: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        """The policy as alias and metric-name text (`every:28d` -> `every-28d`)."""
        return re.sub(r"[^\w-]", "-", self.name)


def parse_policies(text: str) -> list[Policy]:
    """`loop,never,always,every:28d` -> policies; ConfigError naming the bad one."""
    out: list[Policy] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        base, *overrides = part.split("@")
        found = re.fullmatch(r"every:(\d+)d", base)
        if base in ("loop", "never", "always"):
            policy = Policy(base, base)
        elif found and 1 <= int(found.group(1)) <= 36_500:
            policy = Policy(f"every:{int(found.group(1))}d", "every", int(found.group(1)))
        else:
            raise ConfigError(
                f"--policies: {part!r} is not a policy; use loop, never, always or every:<N>d "
                "(e.g. every:28d), optionally with @section.key=value overrides"
            )
        if overrides:
            policy = replace(policy, name="@".join([policy.name, *overrides]), overrides=tuple(overrides))
        if policy.name in {p.name for p in out}:
            raise ConfigError(f"--policies: {policy.name!r} is listed twice")
        out.append(policy)
    if not out:
        raise ConfigError("--policies: no policy given; e.g. loop,never,always,every:28d")
    return out


def parse_day(option: str, text: str) -> date:
    """`YYYY-MM-DD` -> date; ConfigError naming the option otherwise."""
    if not (text or "").strip():
        raise ConfigError(f"{option} is required: the day, YYYY-MM-DD")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", (text or "").strip()):
            raise ValueError
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date; use YYYY-MM-DD") from None


def parse_every(text: str) -> int:
    """`7d` or `7` -> 7 days; ConfigError otherwise."""
    found = re.fullmatch(r"\s*(\d+)\s*d?\s*", text or "")
    if not found or not 1 <= int(found.group(1)) <= 36_500:
        raise ConfigError(f"--every: {text!r} is not a number of days between 1 and 36500; e.g. 7d")
    return int(found.group(1))


def step_days(start: date, end: date, every: int) -> list[date]:
    """The as-of days: start, start + every, ... up to end (included)."""
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=k * every) for k in range((end - start).days // every + 1)]
