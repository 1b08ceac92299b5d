"""Pruning masks as `torch.nn.utils.parametrize` parametrizations: weight = where(mask, original, 0).

The gradient reaching a pruned entry of `original` is exactly zero and the effective weight is zero
whatever the optimizer does to `original`, so momentum and weight decay cannot revive it. The mask is
a buffer, so it travels in `state_dict`, survives `deepcopy` and is broadcast by DDP. A tied weight
has one mask, attached at every place it is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vidcompress.attach import attach, bake, own_items
from vidcompress.layers import WeightSite


class PruningMask(nn.Module):
    """Keeps the weight where a boolean mask is true and puts an exact +0.0 elsewhere."""

    vidcompress_parametrization = True
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
    for item in own_items(module, attribute):
        if isinstance(item, PruningMask):
            return item
    return None


def set_mask(sites: Sequence[WeightSite], keep: torch.Tensor) -> None:
    """Attach or update the mask of a weight (at all its sites) and zero the pruned stored entries.

    Zeroing the stored original (not just masking it) means a weight released later restarts from
    zero, as DSD prescribes.
    """
    first = sites[0]
    existing = get_mask(first.module, first.attribute)
    if existing is None:
        existing = PruningMask(torch.ones_like(getattr(first.module, first.attribute), dtype=torch.bool))
        attach(sites, existing)
    existing.mask.copy_(keep)
    with torch.no_grad():
        chain = first.module.parametrizations[first.attribute]  # type: ignore[index,union-attr]
        chain.original.masked_fill_(~keep, 0.0)  # type: ignore[union-attr]


def remove_mask(sites: Sequence[WeightSite]) -> None:
    """Drop the mask, keeping the masked values: the parameter keeps its identity for optimizers."""
    for site in sites:
        if get_mask(site.module, site.attribute) is not None:
            bake(site.module, site.attribute)
