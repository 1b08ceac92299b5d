"""Sparsity schedules: how far towards its target a layer is pruned after `step` schedule steps.

A schedule is a small frozen config. `sparsity_at(target, step)` is pure, so a pruner can be
resumed at any step, and the same schedule object serves per-epoch and per-iteration loops.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from vidcompress.errors import ConfigError

_SCHEDULES: dict[str, type[Schedule]] = {}


def _register(cls: type[Schedule]) -> type[Schedule]:
    _SCHEDULES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Schedule:
    """Base class: maps (target sparsity, step count) to the sparsity to prune to."""

    name: ClassVar[str] = ""

    def sparsity_at(self, target: float, step: int) -> float:
        raise NotImplementedError

    def steps_to_reach(self, target: float) -> int:
        """The first step at which `sparsity_at` returns the target."""
        step = 0
        while self.sparsity_at(target, step) < target:
            step += 1
            if step > 1_000_000:
                raise ConfigError(f"{self.name} schedule never reaches sparsity {target}")
        return step

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, **asdict(self)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Schedule:
        data = dict(data)
        name = data.pop("type", None)
        if name not in _SCHEDULES:
            raise ConfigError(f"schedule type {name!r}: expected one of {sorted(_SCHEDULES)}")
        cls = _SCHEDULES[name]
        known = {field.name for field in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{name} schedule: unknown field(s) {sorted(unknown)}")
        return cls(**data)


@_register
@dataclass(frozen=True)
class ConstantSchedule(Schedule):
    """One-shot pruning: the target from the first step on."""

    name: ClassVar[str] = "constant"

    def sparsity_at(self, target: float, step: int) -> float:
        return target if step >= 1 else 0.0


@_register
@dataclass(frozen=True)
class StepSchedule(Schedule):
    """The T-C3D / DSD schedule: start at `initial`, add `increment` each step, stop at the target.

    With the defaults a target of 0.8 is reached in 8 steps (0.1, 0.2, ..., 0.8).
    """

    name: ClassVar[str] = "step"
    increment: float = 0.1
    initial: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.increment <= 1.0:
            raise ConfigError(f"step schedule increment {self.increment}: must be in (0, 1]")
        if not 0.0 <= self.initial < 1.0:
            raise ConfigError(f"step schedule initial {self.initial}: must be in [0, 1)")

    def sparsity_at(self, target: float, step: int) -> float:
        # Rounded so that 3 * 0.1 is 0.3 and targets are hit exactly.
        return min(target, round(self.initial + self.increment * step, 10))


@_register
@dataclass(frozen=True)
class AGPSchedule(Schedule):
    """Zhu & Gupta's automated gradual pruning: s_t = s_f + (s_i - s_f)(1 - (t - t0) / n)^3.

    Sparsity rises from `initial` at step `begin` to the target at step `begin + steps`, fast at
    first and slowly near the end.
    """

    name: ClassVar[str] = "agp"
    steps: int = 10
    begin: int = 0
    initial: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"agp schedule steps {self.steps}: must be at least 1")

    def sparsity_at(self, target: float, step: int) -> float:
        if step <= self.begin:
            return min(self.initial, target) if step == self.begin else 0.0
        progress = min(1.0, (step - self.begin) / self.steps)
        value = target + (self.initial - target) * (1.0 - progress) ** 3
        return target if math.isclose(value, target, abs_tol=1e-12) else value


def parse_schedule(text: str | dict[str, Any] | Schedule) -> Schedule:
    """Read a schedule from `constant`, `step`, `step:0.05`, `agp:20` or its JSON form."""
    if isinstance(text, Schedule):
        return text
    if isinstance(text, dict):
        return Schedule.from_dict(text)
    name, _, argument = text.partition(":")
    try:
        if name == "constant" and not argument:
            return ConstantSchedule()
        if name == "step":
            return StepSchedule(increment=float(argument)) if argument else StepSchedule()
        if name == "agp":
            return AGPSchedule(steps=int(argument)) if argument else AGPSchedule()
    except ValueError:
        pass
    raise ConfigError(f"schedule {text!r}: expected 'constant', 'step[:INCREMENT]' or 'agp[:STEPS]'")
