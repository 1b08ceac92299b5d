"""The magnitude criterion: keep the largest weights, prune exactly round(sparsity * n) of them."""

from __future__ import annotations

import torch

from vidcompress.errors import InputError


def pruned_count(numel: int, sparsity: float) -> int:
    """How many of `numel` weights a target sparsity prunes (rounded half up, never all of them)."""
    count = int(sparsity * numel + 0.5)
    return min(max(count, 0), max(numel - 1, 0)) if sparsity < 1.0 else numel


def require_finite(weight: torch.Tensor, name: str, verb: str) -> None:
    """Refuse, by the layer's name, a weight holding NaN or inf: it has no magnitude order."""
    finite = torch.isfinite(weight)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InputError(f"{name or 'layer'}: weights contain NaN or inf ({bad:,} values); refusing to {verb}")


def magnitude_mask(weight: torch.Tensor, sparsity: float, name: str = "") -> torch.Tensor:
    """A boolean mask keeping the largest-magnitude weights, with exactly the target sparsity.

    Ties are broken deterministically: among equal magnitudes, lower flat indices are pruned first.
    Weights already at zero are therefore the first to go, so masks only ever grow sparser.
    A selection (kthvalue), not a sort: memory stays at a few bytes a weight on the largest layers.

    Raises:
        InputError: the weight holds NaN or inf (no magnitude order; `name` says which layer).
    """
    flat = weight.detach().abs().flatten().to(torch.float32)
    require_finite(flat, name, "prune")
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
