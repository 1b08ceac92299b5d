"""Helpers of the kernel tests: quantized matrices and the relative tolerance every kernel must meet."""

import torch


def quantized_matrix(shape, sparsity=0.9, levels=255, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(levels, generator=generator)
    weight = codebook[torch.randint(0, levels, shape, generator=generator)]
    return torch.where(torch.rand(shape, generator=generator) < sparsity, torch.zeros(()), weight)


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> bool:
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max()) <= rel * max(float(expected.abs().max()), 1e-12)
