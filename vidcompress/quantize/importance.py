"""Per-weight importance from calibration data: the diagonal of the empirical Fisher information.

A weight's squared gradient of the loss, summed over a few batches, estimates how much the loss grows
when that weight moves (the Fisher diagonal approximates the Hessian's at a trained optimum; Choi et al.
2017 weight their quantizers by it). Quantizers take it as `importance`: the squared error of a weight
the loss is sensitive to counts for more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from vidcompress.errors import ConfigError, InputError
from vidcompress.layers import module_layers, weight_sites


def estimate_importance(
    model: nn.Module,
    batches: Iterable[Any],
    loss: Callable[[nn.Module, Any], torch.Tensor],
    *,
    max_batches: int | None = None,
) -> dict[str, torch.Tensor]:
    """Sum over `batches` of each compressible weight's squared gradient of `loss(model, batch)`.

    Returns a dict keyed by the layers' state-dict names (as `quantize_` and `quantize_state_dict`
    name them), each tensor shaped like its weight, on the CPU. The model's gradients are cleared
    before and after; its weights are not changed.
    """
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"max_batches {max_batches}: must be at least 1")
    layers = module_layers(model, include_refused=False)
    sites = weight_sites(model)
    weights = {layer.name: getattr(sites[layer.name][0].module, sites[layer.name][0].attribute) for layer in layers}
    trainable = {name: w for name, w in weights.items() if isinstance(w, torch.Tensor) and w.requires_grad}
    if not trainable:
        raise InputError("estimate_importance: the model has no trainable compressible weight")
    totals = {name: torch.zeros(w.shape, dtype=torch.float64) for name, w in trainable.items()}
    model.zero_grad(set_to_none=True)
    used = 0
    for batch in batches:
        if max_batches is not None and used >= max_batches:
            break
        value = loss(model, batch)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise InputError("estimate_importance: loss(model, batch) must return a scalar tensor")
        if not torch.isfinite(value):
            raise InputError(f"estimate_importance: the loss of batch {used} is {float(value)}")
        grads = torch.autograd.grad(value, list(trainable.values()), allow_unused=True)
        for (name, _), grad in zip(trainable.items(), grads, strict=True):
            if grad is not None:
                totals[name] += grad.detach().to("cpu", torch.float64) ** 2
        used += 1
    if used == 0:
        raise InputError("estimate_importance: no batches")
    return {name: total.to(torch.float32) for name, total in totals.items()}
