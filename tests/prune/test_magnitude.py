import pytest
import torch

from vidcompress.prune import (
    magnitude_mask,
    pruned_count,
)


@pytest.mark.parametrize("numel", [1, 7, 100, 1001])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.85, 0.9, 0.95])
def test_magnitude_mask_has_exact_sparsity(numel: int, sparsity: float) -> None:
    weight = torch.randn(numel)
    keep = magnitude_mask(weight, sparsity)
    assert int((~keep).sum()) == pruned_count(numel, sparsity)
    if (~keep).any() and keep.any():
        assert weight[~keep].abs().max() <= weight[keep].abs().min()


def test_ties_are_broken_deterministically_by_index() -> None:
    weight = torch.tensor([1.0, -1.0, 1.0, 2.0, 1.0])
    assert magnitude_mask(weight, 0.4).tolist() == [False, False, True, True, True]
