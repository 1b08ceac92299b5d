"""A size budget planned and written from calibration inputs.

`compress_to_budget(model, path, "5MB", calibration=inputs)` lands here. One pass over the inputs gives
every budgeted layer's H (from the dense model); each candidate of the budget's grid (magnitude
pruning x quantizer levels, `vidcompress.budget`) is scored by its measured output error
tr((W - Q) H (W - Q)^T) / tr(W H W^T) instead of the data-free squared error; the knapsack chooses
each layer's sparsity and level count; then the calibrated solver (`calibrate_plan_`, sequential)
produces the weights the file stores, at those sparsities and level counts. The solver's weights code
to other sizes than the candidates' (error feedback moves the symbol histogram), so a file over budget
is planned again with the overshoot taken off, as for the data-free budget.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from vidcompress.budget import (
    Allocation,
    BudgetConfig,
    Candidate,
    Damage,
    Target,
    _plan_layers,
    levels_for,
    plan_budget,
    write_within_budget,
)
from vidcompress.calibrate.api import CalibrateConfig, CalibrateReport, calibrate_plan_, collect_hessians
from vidcompress.calibrate.stats import Forward, matrix_view
from vidcompress.codec.container import Container, unwrap_model
from vidcompress.layers import weight_sites

MEASURE = "output error on the calibration inputs"


def output_damages(model: nn.Module, hessians: Mapping[str, torch.Tensor], dampening: float = 0.0) -> dict[str, Damage]:
    """Per layer, the candidate weights (flat) -> tr(dW H dW^T) / tr(W H W^T), in float32 products, with
    H damped as the solver damps it (`dampening` of its mean diagonal): a layer seen on fewer inputs
    than its width would otherwise count errors in the directions its inputs never took as free."""
    sites = weight_sites(model)
    damages: dict[str, Damage] = {}
    for name, hessian in hessians.items():
        site = sites[name][0]
        weight = getattr(site.module, site.attribute).detach()
        original = matrix_view(site.module, site.attribute, weight.to(torch.float32)).contiguous()
        h = hessian.to(torch.float32).clone()
        for g in range(h.shape[0]):
            h[g].diagonal().add_(dampening * float(h[g].diagonal().mean()))
        energy = float(sum(torch.einsum("rc,cd,rd->", original[g], h[g], original[g]) for g in range(h.shape[0])))

        def damage(values: np.ndarray, module: nn.Module = site.module, attribute: str = site.attribute,
                   shape: torch.Size = weight.shape, w: torch.Tensor = original, hh: torch.Tensor = h,
                   base: float = energy) -> float:  # fmt: skip
            candidate = torch.from_numpy(values.astype(np.float32)).view(shape)
            delta = w - matrix_view(module, attribute, candidate)
            err = sum(float(torch.einsum("rc,cd,rd->", delta[g], hh[g], delta[g])) for g in range(hh.shape[0]))
            return max(err, 0.0) / base if base > 0 else 0.0

        damages[name] = damage
    return damages


def calibrated_budget(
    model: nn.Module,
    path: str | os.PathLike[str],
    target: Target,
    config: BudgetConfig,
    calibration: Any,
    *,
    forward: Forward | None = None,
    solver: CalibrateConfig | None = None,
    metadata: Mapping[str, str] | None = None,
    progress: bool = False,
) -> tuple[Allocation, Container, CalibrateReport]:
    """Plan with measured output errors, write the calibrated solver's weights within `target`."""
    model = unwrap_model(model)
    tensors = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    layers, _ = _plan_layers(tensors, config)
    hessians = collect_hessians(model, calibration, [layer.name for layer in layers], forward=forward)
    solver = solver or CalibrateConfig(quantizer=config.method, seed=config.seed)
    damages = output_damages(model, hessians, solver.dampening)
    allocation, candidates = plan_budget(tensors, target, config, progress=progress, damages=damages, measure=MEASURE)
    reports: list[CalibrateReport] = []

    def weights(chosen: Mapping[str, Candidate]) -> dict[str, torch.Tensor]:
        student = copy.deepcopy(model)
        plan = {name: (c.sparsity, levels_for(c.bits)) for name, c in chosen.items()}
        reports.append(calibrate_plan_(student, calibration, plan, solver, forward=forward, progress=progress))
        state = student.state_dict()
        return {name: state[name] for name in chosen}

    def replan(fixed: int) -> Allocation:
        return plan_budget(
            tensors, target, config, fixed_bytes=fixed, candidates=candidates, damages=damages, measure=MEASURE
        )[0]

    allocation, container = write_within_budget(tensors, path, target, config, metadata, allocation, weights, replan)
    solved = {layer.name: layer.error for layer in reports[-1].layers}
    for layer in allocation.layers:  # the written weights' damage: the solver's, measured
        layer.chosen = replace(layer.chosen, damage=solved[layer.name])
    return allocation, container, reports[-1]
