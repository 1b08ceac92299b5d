"""Magnitude pruning of a module on a schedule, and one-shot pruning of a state dict."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vidcompress.config import Config
from vidcompress.errors import ConfigError, check_module, check_weights
from vidcompress.layers import module_layers, state_dict_layers, weight_sites
from vidcompress.progress import progress as progress_lines
from vidcompress.prune.magnitude import magnitude_mask, require_finite
from vidcompress.prune.masks import get_mask, remove_mask, set_mask
from vidcompress.prune.schedules import Schedule, parse_schedule
from vidcompress.rules import SPARSITY, LayerRules, RulesSource

# Safe for a model vidcompress knows nothing about, without retraining: convolutions and linear layers
# lose 30% of their weights (about what BERT and CNNs lose nothing at in one-shot magnitude pruning),
# embeddings are untouched. T-C3D's final pruning (with retraining) is PAPER_SPARSITY.
DEFAULT_SPARSITY = "conv=0.3,fc=0.3"
PAPER_SPARSITY = "conv=0.9,fc=0.95"


@dataclass(frozen=True, init=False)
class PruneConfig(Config):
    """What to prune and how fast: per-layer target sparsities and a schedule.

    Args:
        sparsity: rules such as `conv=0.9,fc=0.95,layer4.*=0.8` (a string, mapping, rule-file path or
            LayerRules). Default: `DEFAULT_SPARSITY`, whose kind rules may name kinds a model lacks.
        schedule: how the targets are approached, one `Pruner.step()` at a time (a Schedule, its
            text form such as `step:0.1`, or its dict form).
    """

    sparsity: LayerRules
    schedule: Schedule

    def __init__(
        self,
        *,
        sparsity: RulesSource | None = None,
        schedule: Schedule | str | dict[str, Any] = "constant",
    ) -> None:
        rules = LayerRules.parse(DEFAULT_SPARSITY, SPARSITY, default=True) if sparsity is None else sparsity
        self._set(sparsity=LayerRules.parse(rules, SPARSITY), schedule=parse_schedule(schedule))


class Pruner:
    """Prunes the compressible layers of a module by magnitude, following a schedule.

    Usage in a plain loop (or from a trainer's epoch/iteration callback)::

        pruner = Pruner(PruneConfig(sparsity="conv=0.85,fc=0.9", schedule=StepSchedule(0.1))).attach(model)
        for epoch in range(epochs):
            pruner.step()          # raise sparsity, recompute masks
            train_one_epoch(model, optimizer, epoch)
        pruner.finalize()          # bake the zeros in, plain parameters again

    Learned state: `targets_` (layer name -> target sparsity), `step_` (steps taken).
    """

    def __init__(self, config: PruneConfig | None = None) -> None:
        self.config = config or PruneConfig()

    def attach(self, model: nn.Module) -> Pruner:
        """Bind to `model`, resolve the per-layer targets and register all-ones masks.

        Attach before wrapping the model in DistributedDataParallel (or pass the wrapper: its
        inner module is used), so that the parameters DDP sees do not change afterwards.
        No weight changes until `step()`.
        """
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.model_ = model
        self.targets_: dict[str, float] = self.config.sparsity.resolve(module_layers(model))
        self.step_ = 0
        self.sites_ = {name: sites for name, sites in weight_sites(model).items() if name in self.targets_}
        for sites in self.sites_.values():
            first = sites[0]
            if get_mask(first.module, first.attribute) is None:
                set_mask(sites, torch.ones_like(getattr(first.module, first.attribute), dtype=torch.bool))
        return self

    def step(self) -> dict[str, float]:
        """Advance the schedule by one step and prune each layer to its new sparsity."""
        self._check_attached()
        self.step_ += 1
        return self.prune_to_step(self.step_)

    def prune_to_step(self, step: int) -> dict[str, float]:
        """Prune every layer to the schedule's sparsity at `step` (used to resume)."""
        self._check_attached()
        self.step_ = step
        levels = {name: self.config.schedule.sparsity_at(target, step) for name, target in self.targets_.items()}
        self.apply_levels(levels)
        return levels

    def apply_levels(self, levels: Mapping[str, float]) -> None:
        """Prune each named layer to the given sparsity by the magnitude of its current weight."""
        for name, level in levels.items():
            sites = self.sites_[name]
            with torch.no_grad():
                weight = getattr(sites[0].module, sites[0].attribute)
                set_mask(sites, magnitude_mask(weight, level, name))

    def sparsity(self) -> dict[str, float]:
        """The measured sparsity of every compressible layer (exact zeros over elements)."""
        self._check_attached()
        return layer_sparsity(self.model_)

    def release(self) -> None:
        """Remove the masks and keep the weights: pruned entries restart from zero (DSD's dense phase)."""
        self._check_attached()
        for sites in self.sites_.values():
            remove_mask(sites)

    def finalize(self) -> nn.Module:
        """Bake the zeros in and leave plain parameters under their plain names."""
        self.release()
        return self.model_

    def _check_attached(self) -> None:
        if not hasattr(self, "model_"):
            raise ConfigError("Pruner is not attached to a model: call attach(model) first")


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exact zeros in each compressible parameter of `model`."""
    result = {}
    for name, sites in weight_sites(model).items():
        weight = getattr(sites[0].module, sites[0].attribute).detach()
        result[name] = float((weight == 0).sum()) / max(weight.numel(), 1)
    return result


def overall_sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros over all compressible weights of `model` (tied weights counted once)."""
    sizes = {layer.name: layer.numel for layer in module_layers(model)}
    total = sum(sizes.values())
    sparsity = layer_sparsity(model)
    return sum(sparsity[name] * size for name, size in sizes.items()) / total if total else 0.0


def prune_(model: nn.Module, config: PruneConfig | str | None = None) -> dict[str, float]:
    """One-shot magnitude pruning of `model` in place to the config's targets; returns them.

    The zeros are baked in (no masks stay attached); use `Pruner` to keep masks while training.
    """
    if isinstance(config, str):
        config = PruneConfig(sparsity=config)
    if config is None:
        warnings.warn(
            f"prune_: no sparsity rules given; using {DEFAULT_SPARSITY} (embeddings untouched). "
            f"T-C3D's final pruning is {PAPER_SPARSITY!r}",
            UserWarning,
            stacklevel=2,
        )
    check_module(model, "model")
    config = config or PruneConfig()
    sites = weight_sites(model)
    for name in config.sparsity.resolve(module_layers(model)):  # refuse before any mask is attached
        require_finite(getattr(sites[name][0].module, sites[name][0].attribute), name, "prune")
    pruner = Pruner(config).attach(model)
    pruner.apply_levels(pruner.targets_)
    pruner.finalize()
    return dict(pruner.targets_)


def prune_state_dict(
    tensors: Mapping[str, torch.Tensor],
    sparsity: LayerRules | str | Mapping[str, Any],
    *,
    progress: bool = False,
    inplace: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """One-shot magnitude pruning of a state dict; returns the new dict and the per-layer targets.

    `inplace=True` replaces the pruned tensors in `tensors` itself (a dict), so that a caller holding no
    other reference keeps one copy of the model in memory, not two.
    """
    check_weights(tensors, "tensors")
    rules = LayerRules.parse(sparsity, SPARSITY)  # type: ignore[arg-type]
    targets = rules.resolve(state_dict_layers(tensors))
    pruned = tensors if inplace and isinstance(tensors, dict) else dict(tensors)
    for name in targets:  # before any change: a refused layer leaves `tensors` untouched, also in place
        require_finite(tensors[name], name, "prune")
    for name, target in progress_lines(targets.items(), "prune", "layer", progress):
        weight = tensors[name]
        pruned[name] = weight.masked_fill(~magnitude_mask(weight, target, name), 0.0)
    return pruned, targets
