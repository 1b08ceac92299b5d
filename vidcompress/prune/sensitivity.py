"""Per-layer pruning sensitivity: prune one layer at a time, measure, propose per-layer targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vidcompress.errors import ConfigError
from vidcompress.layers import module_layers, weight_sites
from vidcompress.prune.magnitude import magnitude_mask
from vidcompress.rules import SPARSITY, LayerRules

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass
class SensitivityReport:
    """The metric of the model with one layer pruned at each sparsity (higher metric is better)."""

    baseline: float
    sparsities: tuple[float, ...]
    metrics: dict[str, list[float]]

    def drops(self) -> dict[str, list[float]]:
        """Baseline minus metric, per layer and sparsity."""
        return {name: [self.baseline - m for m in values] for name, values in self.metrics.items()}

    def propose(self, tolerance: float) -> dict[str, float]:
        """Per layer, the highest tried sparsity whose drop is within `tolerance` (0 if none)."""
        proposal = {}
        for name, drops in self.drops().items():
            allowed = [s for s, d in zip(self.sparsities, drops, strict=True) if d <= tolerance]
            proposal[name] = max(allowed, default=0.0)
        return proposal

    def proposed_rules(self, tolerance: float) -> LayerRules:
        """The proposal as rules, ready for `PruneConfig(sparsity=...)` or the CLI."""
        proposal = {name: (value if value > 0 else "off") for name, value in self.propose(tolerance).items()}
        return LayerRules.parse(proposal, SPARSITY)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "sparsities": list(self.sparsities), "metrics": self.metrics}

    def to_markdown(self) -> str:
        from vidcompress.report import markdown_table

        headers = ["layer", *(f"drop @ {s:g}" for s in self.sparsities)]
        rows = [[name, *(f"{d:+.4f}" for d in drops)] for name, drops in self.drops().items()]
        return f"Baseline metric: {self.baseline:.4f}\n\n" + markdown_table(headers, rows)

    def plot(self, path: str | Path) -> None:
        """Write a PNG of the drop against sparsity, one line per layer (needs matplotlib)."""
        from vidcompress.plots import pyplot, save_figure

        plt = pyplot()
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, drops in self.drops().items():
            axes.plot(self.sparsities, drops, marker="o", label=name)
        axes.set_xlabel("sparsity of the one pruned layer")
        axes.set_ylabel("metric drop")
        axes.set_title("Pruning sensitivity per layer")
        axes.grid(alpha=0.3)
        if len(self.metrics) <= 20:
            axes.legend(fontsize=7)
        save_figure(figure, path)


def sensitivity_analysis(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    *,
    layers: str | LayerRules | None = None,
    show_progress: bool = False,
) -> SensitivityReport:
    """Prune each layer alone to each sparsity, evaluate, and restore it.

    Args:
        model: the trained model; it is left exactly as it was.
        evaluate: returns a metric, higher is better (e.g. accuracy).
        sparsities: the levels to try.
        layers: rules selecting the layers to sweep (any non-off value selects); all by default.
    """
    if not sparsities or not all(0.0 < s < 1.0 for s in sparsities):
        raise ConfigError(f"sensitivity sparsities {list(sparsities)}: each must be in (0, 1)")
    candidates = module_layers(model, include_refused=layers is not None)  # named ones are checked by resolve
    sites = weight_sites(model)
    if layers is not None:
        selected = LayerRules.parse(layers, SPARSITY).resolve(candidates)
        candidates = [layer for layer in candidates if layer.name in selected]
    baseline = float(evaluate(model))
    metrics: dict[str, list[float]] = {}
    steps = tqdm(candidates, desc="sensitivity", disable=not show_progress)
    for layer in steps:
        first = sites[layer.name][0]
        parameter = getattr(first.module, first.attribute)
        saved = parameter.detach().clone()
        values = []
        for level in sparsities:
            with torch.no_grad():
                parameter.copy_(saved.masked_fill(~magnitude_mask(saved, level), 0.0))
            values.append(float(evaluate(model)))
        with torch.no_grad():
            parameter.copy_(saved)
        metrics[layer.name] = values
    return SensitivityReport(baseline, tuple(sparsities), metrics)
