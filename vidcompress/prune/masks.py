"""Pruning masks as `torch.nn.utils.parametrize` parametrizations: weight = original * mask.

The gradient reaching a pruned entry of `original` is exactly zero and the effective weight is zero
whatever the optimizer does to `original`, so momentum and weight decay cannot revive it. The mask is
a buffer, so it travels in `state_dict`, survives `deepcopy` and is broadcast by DDP.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class PruningMask(nn.Module):
    """Keeps the weight where a boolean mask is true and puts an exact +0.0 elsewhere."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # where(), not a product: a product would give -0.0 for negative originals.
        return torch.where(self.mask, weight, torch.zeros((), dtype=weight.dtype))


def get_mask(module: nn.Module, attribute: str) -> PruningMask | None:
    """The pruning mask on `module.<attribute>`, or None.

    A mask is the only parametrization vidcompress stacks on a pruned weight; weight sharing
    bakes the mask in first, as its zero symbol keeps pruned entries at zero by itself.
    """
    if not parametrize.is_parametrized(module, attribute):
        return None
    for item in module.parametrizations[attribute]:  # type: ignore[index,union-attr]
        if isinstance(item, PruningMask):
            return item
    return None


def set_mask(module: nn.Module, attribute: str, keep: torch.Tensor) -> None:
    """Attach or update the mask of `module.<attribute>` and zero the pruned entries of the original.

    Zeroing the stored original (not just masking it) means a weight released later restarts from
    zero, as DSD prescribes.
    """
    existing = get_mask(module, attribute)
    if existing is None:
        existing = PruningMask(torch.ones_like(getattr(module, attribute), dtype=torch.bool))
        parametrize.register_parametrization(module, attribute, existing, unsafe=True)
    existing.mask.copy_(keep)
    with torch.no_grad():
        chain = module.parametrizations[attribute]  # type: ignore[index,union-attr]
        chain.original.masked_fill_(~keep, 0.0)  # type: ignore[union-attr]


def remove_mask(module: nn.Module, attribute: str) -> None:
    """Drop the mask, keeping the masked values: the parameter keeps its identity for optimizers."""
    if get_mask(module, attribute) is not None:
        parametrize.remove_parametrizations(module, attribute, leave_parametrized=True)
