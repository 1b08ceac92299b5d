"""Dense-Sparse-Dense training (Han et al. 2017) followed by the final pruning of T-C3D.

Phases: sparse (progressive pruning to 0.85 conv / 0.9 fc), dense (masks released, pruned weights
restart at zero, learning rate x 1/10), final pruning (progressive to 0.9 conv / 0.95 fc). The user
supplies the training and evaluation functions, so any loop fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vidcompress.config import Config
from vidcompress.errors import ConfigError
from vidcompress.layers import module_layers
from vidcompress.prune.pruner import PAPER_SPARSITY, PruneConfig, Pruner, layer_sparsity, overall_sparsity
from vidcompress.prune.schedules import Schedule, parse_schedule
from vidcompress.rules import SPARSITY, LayerRules, RulesSource

SPARSE_PHASE_SPARSITY = "conv=0.85,fc=0.9"  # T-C3D's sparse phase; its final pruning is PAPER_SPARSITY

TrainOneEpoch = Callable[[nn.Module, torch.optim.Optimizer, int], Any]
Evaluate = Callable[[nn.Module], float]


@dataclass(frozen=True, init=False)
class DSDConfig(Config):
    """The three phases of DSD training with T-C3D's final pruning.

    Args:
        sparse_sparsity: targets of the sparse phase (rules, as `PruneConfig.sparsity`).
        final_sparsity: targets of the final pruning phase.
        schedule: how each pruning phase approaches its targets, one step per epoch.
        sparse_epochs, dense_epochs, final_epochs: epochs per phase (0 skips a phase).
        dense_lr_factor: the dense phase runs at this times the initial learning rate.
        final_lr_factor: the final pruning phase runs at this times the initial learning rate
            (1.0: pruning again needs the room to recover that the sparse phase had).
        recovery_lr_factor: in each pruning phase, once the schedule has reached every target, the
            remaining epochs (retraining at the target sparsity) run at this times the phase's
            learning rate; 1.0 keeps it.
    """

    sparse_sparsity: LayerRules
    final_sparsity: LayerRules
    schedule: Schedule
    sparse_epochs: int
    dense_epochs: int
    final_epochs: int
    dense_lr_factor: float
    final_lr_factor: float
    recovery_lr_factor: float

    def __init__(
        self,
        *,
        sparse_sparsity: RulesSource | None = None,
        final_sparsity: RulesSource | None = None,
        schedule: Schedule | str | dict[str, Any] = "step",
        sparse_epochs: int = 10,
        dense_epochs: int = 5,
        final_epochs: int = 10,
        dense_lr_factor: float = 0.1,
        final_lr_factor: float = 1.0,
        recovery_lr_factor: float = 1.0,
    ) -> None:
        epochs = {"sparse_epochs": sparse_epochs, "dense_epochs": dense_epochs, "final_epochs": final_epochs}
        for name, value in epochs.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"DSD {name} {value!r}: must be an integer >= 0")
        factors = {
            "dense_lr_factor": dense_lr_factor,
            "final_lr_factor": final_lr_factor,
            "recovery_lr_factor": recovery_lr_factor,
        }
        for name, factor in factors.items():
            if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0.0 < factor <= 1.0:
                raise ConfigError(f"DSD {name} {factor!r}: must be in (0, 1]")
        self._set(
            sparse_sparsity=_rules(sparse_sparsity, SPARSE_PHASE_SPARSITY),
            final_sparsity=_rules(final_sparsity, PAPER_SPARSITY),
            schedule=parse_schedule(schedule),
            **epochs,
            **{name: float(value) for name, value in factors.items()},
        )


def _rules(source: RulesSource | None, default: str) -> LayerRules:
    if source is None:
        return LayerRules.parse(default, SPARSITY, default=True)
    return LayerRules.parse(source, SPARSITY)


@dataclass
class EpochRecord:
    """What one epoch of DSD did: phase, learning rate, metric and sparsity per layer."""

    phase: str
    epoch: int
    lr: float
    metric: float
    sparsity: dict[str, float]
    overall_sparsity: float


@dataclass
class DSDHistory:
    """The record of a DSD run, epoch by epoch; `baseline` is the metric before it started."""

    baseline: float
    records: list[EpochRecord] = field(default_factory=list)

    def phase_end(self, phase: str) -> EpochRecord | None:
        matching = [record for record in self.records if record.phase == phase]
        return matching[-1] if matching else None

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "records": [asdict(r) for r in self.records]}

    def to_markdown(self) -> str:
        from vidcompress.report import markdown_table

        rows = [[r.phase, r.epoch, f"{r.lr:.3g}", f"{r.metric:.4f}", f"{r.overall_sparsity:.3f}"] for r in self.records]
        table = markdown_table(["phase", "epoch", "lr", "metric", "overall sparsity"], rows)
        return f"Baseline metric: {self.baseline:.4f}\n\n{table}"


def run_dsd(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_one_epoch: TrainOneEpoch,
    evaluate: Evaluate,
    config: DSDConfig | None = None,
    *,
    progress: Callable[[EpochRecord], None] | None = None,
    on_phase_end: Callable[[str, nn.Module], None] | None = None,
) -> tuple[DSDHistory, Pruner]:
    """Run sparse, dense and final-pruning phases on `model` with the user's loop.

    `train_one_epoch(model, optimizer, epoch)` trains one epoch; `evaluate(model)` returns a metric
    (higher is better). Returns the history and the pruner of the last phase, whose masks are still
    attached (call `pruner.finalize()` to bake them in, or go on to quantization).
    """
    config = config or DSDConfig()
    layers = module_layers(model)
    needed: dict[str, int] = {}
    for phase, rules, epochs in (
        ("sparse", config.sparse_sparsity, config.sparse_epochs),
        ("final", config.final_sparsity, config.final_epochs),
    ):
        targets = rules.resolve(layers).values()
        needed[phase] = max((config.schedule.steps_to_reach(t) for t in targets), default=0)
        if 0 < epochs < needed[phase]:
            raise ConfigError(
                f"DSD {phase} phase: {epochs} epochs, but the {config.schedule.name} schedule needs "
                f"{needed[phase]} to reach its targets; raise {phase}_epochs or the schedule's step"
            )
    history = DSDHistory(baseline=float(evaluate(model)))
    epoch = 0

    def record(phase: str) -> None:
        sparsity = layer_sparsity(model)
        entry = EpochRecord(
            phase=phase,
            epoch=epoch,
            lr=float(optimizer.param_groups[0]["lr"]),
            metric=float(evaluate(model)),
            sparsity=sparsity,
            overall_sparsity=overall_sparsity(model),
        )
        history.records.append(entry)
        if progress is not None:
            progress(entry)

    def pruning_phase(phase: str, rules: LayerRules, epochs: int) -> Pruner:
        nonlocal epoch
        pruner = Pruner(PruneConfig(sparsity=rules, schedule=config.schedule)).attach(model)
        for index in range(epochs):
            if index == max(needed[phase], 1) and config.recovery_lr_factor != 1.0:
                for group in optimizer.param_groups:
                    group["lr"] *= config.recovery_lr_factor
            pruner.step()
            train_one_epoch(model, optimizer, epoch)
            record(phase)
            epoch += 1
        return pruner

    def phase_end(phase: str, epochs: int) -> None:
        if epochs and on_phase_end is not None:
            on_phase_end(phase, model)

    initial_lrs = [group["lr"] for group in optimizer.param_groups]
    pruner = pruning_phase("sparse", config.sparse_sparsity, config.sparse_epochs)
    phase_end("sparse", config.sparse_epochs)
    if config.dense_epochs:
        pruner.release()
        for group, lr in zip(optimizer.param_groups, initial_lrs, strict=True):
            group["lr"] = lr * config.dense_lr_factor
        for _ in range(config.dense_epochs):
            train_one_epoch(model, optimizer, epoch)
            record("dense")
            epoch += 1
        phase_end("dense", config.dense_epochs)
    if config.final_epochs:
        pruner.release()
        for group, lr in zip(optimizer.param_groups, initial_lrs, strict=True):
            group["lr"] = lr * config.final_lr_factor
        pruner = pruning_phase("final", config.final_sparsity, config.final_epochs)
        phase_end("final", config.final_epochs)
    return history, pruner
