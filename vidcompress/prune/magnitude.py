"""The magnitude criterion: keep the largest weights, prune exactly round(sparsity * n) of them."""

from __future__ import annotations

import torch


def pruned_count(numel: int, sparsity: float) -> int:
    """How many of `numel` weights a target sparsity prunes (rounded half up, never all of them)."""
    count = int(sparsity * numel + 0.5)
    return min(max(count, 0), max(numel - 1, 0)) if sparsity < 1.0 else numel


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A boolean mask keeping the largest-magnitude weights, with exactly the target sparsity.

    Ties are broken deterministically: among equal magnitudes, lower flat indices are pruned first.
    Weights already at zero are therefore the first to go, so masks only ever grow sparser.
    A selection (kthvalue), not a sort: memory stays at a few bytes a weight on the largest layers.
    """
    flat = weight.detach().abs().flatten().to(torch.float32)
    count = pruned_count(flat.numel(), sparsity)
    if count == 0:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
    if count == flat.numel():
        return torch.zeros(weight.shape, dtype=torch.bool, device=weight.device)
    threshold = torch.kthvalue(flat, count).values
    keep = flat > threshold
    ties = torch.nonzero(flat == threshold).flatten()
    below = int((flat < threshold).sum())
    keep[ties[count - below :]] = True  # of the weights at the threshold, the lowest indices go first
    return keep.view(weight.shape)
