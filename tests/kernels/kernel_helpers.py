"""Helpers of the kernel tests: quantized matrices and the relative tolerance every kernel must meet."""

import torch
from torch import nn

from vidcompress import prune_


def quantized_matrix(shape, sparsity=0.9, levels=255, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(levels, generator=generator)
    weight = codebook[torch.randint(0, levels, shape, generator=generator)]
    return torch.where(torch.rand(shape, generator=generator) < sparsity, torch.zeros(()), weight)


def close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> bool:
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max()) <= rel * max(float(expected.abs().max()), 1e-12)


# Convolution geometries every direct kernel must get right:
# (dims, kernel, stride, dilation, padding, padding mode, input spatial size).
CONV_CASES = [
    (1, 3, 1, 1, 1, "zeros", (17,)),
    (1, 7, 2, 1, 3, "zeros", (16,)),
    (2, (3, 1), 1, 1, (1, 0), "reflect", (9, 6)),
    (2, 5, 1, 2, 2, "circular", (12, 11)),
    (2, 3, 3, 2, 1, "zeros", (13, 10)),  # stride 3 with dilation 2, sizes not multiples of 3
    (3, 3, 1, 1, 1, "zeros", (4, 7, 5)),
    (3, 3, (1, 2, 2), 1, 1, "zeros", (4, 9, 8)),  # T-C3D's downsampling 3x3x3
    (3, 1, 2, 1, 0, "zeros", (5, 6, 7)),  # a 1x1x1 shortcut of stride 2
    (3, 7, 2, 1, 3, "zeros", (6, 11, 10)),  # I3D's stem
    (3, (1, 3, 3), (2, 1, 1), (1, 2, 1), (0, 2, 1), "replicate", (3, 8, 6)),
    (3, 1, 1, 1, 0, "zeros", (2, 3, 4)),
    (3, 3, 1, 1, 0, "zeros", (3, 3, 3)),  # a single output position
]


def pruned_conv(dims, kernel, stride, dilation, padding, mode) -> nn.Module:
    """A 5 -> 9 channel convolution of a CONV_CASES geometry, 70% pruned, output channel 2 all zero (an
    empty row: its output is the bias alone). The 3-D ones keep more than 256 distinct values."""
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    conv = conv_type(5, 9, kernel, stride=stride, padding=padding, dilation=dilation, padding_mode=mode)
    prune_(conv, "conv=0.7")
    with torch.no_grad():
        conv.weight[2] = 0
    return conv
