"""DeepMind's Inception-v1 I3D (Carreira and Zisserman 2017) in PyTorch, matching the released
Kinetics-400 RGB checkpoint: TF "SAME" padding (asymmetric where TF pads so), Sonnet-style batch norm
without a scale (eps 1e-3), max pooling that pads with -inf, logits averaged over time.

Input (N, 3, T, 224, 224) in [-1, 1]; output Kinetics-400 logits (N, 400). 12.7 M parameters in 58
Conv3d layers (57 with batch norm, the logits layer with a bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]


def same_padding(size: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """F.pad's (last dim first) before/after amounts of TF's SAME padding for an input of `size` (T, H, W)."""
    pads: list[int] = []
    for length, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max((math.ceil(length / s) - 1) * s + k - length, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d with SAME padding, then batch norm without a scale and ReLU (or, for the logits, a bias only)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        batch_norm: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not batch_norm)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, affine=False) if batch_norm else None
        self.beta = nn.Parameter(torch.zeros(out_channels)) if batch_norm else None  # Sonnet: offset, no scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        if self.bn is not None and self.beta is not None:
            x = self.bn(x) + self.beta.view(1, -1, 1, 1, 1)
        return F.relu(x) if self.activation else x


def max_pool_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    return F.max_pool3d(F.pad(x, same_padding(tuple(x.shape[2:]), kernel, stride), value=-math.inf), kernel, stride)


class Inception(nn.Module):
    """Four branches: 1x1; 1x1 then 3x3; 1x1 then 3x3; 3x3 max pool then 1x1; concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.branch_0 = Unit3D(in_channels, widths[0])
        self.branch_1a = Unit3D(in_channels, widths[1])
        self.branch_1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.branch_2a = Unit3D(in_channels, widths[3])
        self.branch_2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.branch_3 = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat(
            [
                self.branch_0(x),
                self.branch_1b(self.branch_1a(x)),
                self.branch_2b(self.branch_2a(x)),
                self.branch_3(pooled),
            ],
            dim=1,
        )


# Each Inception block's branch widths, as in DeepMind's i3d.py; a max pool before 4b and 5b.
BLOCKS: dict[str, tuple[int, int, int, int, int, int]] = {
    "mixed_3b": (64, 96, 128, 16, 32, 32),
    "mixed_3c": (128, 128, 192, 32, 96, 64),
    "mixed_4b": (192, 96, 208, 16, 48, 64),
    "mixed_4c": (160, 112, 224, 24, 64, 64),
    "mixed_4d": (128, 128, 256, 24, 64, 64),
    "mixed_4e": (112, 144, 288, 32, 64, 64),
    "mixed_4f": (256, 160, 320, 32, 128, 128),
    "mixed_5b": (256, 160, 320, 32, 128, 128),
    "mixed_5c": (384, 192, 384, 48, 128, 128),
}
POOLS: dict[str, tuple[Triple, Triple]] = {"mixed_4b": ((3, 3, 3), (2, 2, 2)), "mixed_5b": ((2, 2, 2), (2, 2, 2))}


class I3D(nn.Module):
    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(64, 64)
        self.conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        channels = 192
        for name, widths in BLOCKS.items():
            block = Inception(channels, widths)
            self.add_module(name, block)
            channels = block.out_channels
        self.logits = Unit3D(channels, num_classes, batch_norm=False, activation=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c's feature map (N, 1024, T/8, H/32, W/32)."""
        x = self.conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.conv3d_2c_3x3(self.conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name in BLOCKS:
            if name in POOLS:
                x = max_pool_same(x, *POOLS[name])
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Average pool 2x7x7 (stride 1, VALID), the 1x1x1 logits convolution, mean over time."""
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)
        if pre_logits:
            return x.mean(dim=(2, 3, 4))
        return self.logits(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def flax_name(torch_name: str) -> str:
    """The checkpoint path of one of our parameters or buffers (see `convert.py`)."""
    parts = torch_name.split(".")
    unit = {
        "conv3d_1a_7x7": "Conv3d_1a_7x7", "conv3d_2b_1x1": "Conv3d_2b_1x1", "conv3d_2c_3x3": "Conv3d_2c_3x3",
        "logits": "Logits/Conv3d_0c_1x1",
    }  # fmt: skip
    branches = {
        "branch_0": "Branch_0/Conv3d_0a_1x1", "branch_1a": "Branch_1/Conv3d_0a_1x1",
        "branch_1b": "Branch_1/Conv3d_0b_3x3", "branch_2a": "Branch_2/Conv3d_0a_1x1",
        "branch_2b": "Branch_2/Conv3d_0b_3x3", "branch_3": "Branch_3/Conv3d_0b_1x1",
    }  # fmt: skip
    if parts[0] in unit:
        path, rest = unit[parts[0]], parts[1:]
    else:
        path, rest = f"Mixed_{parts[0].split('_')[1]}/{branches[parts[1]]}", parts[2:]
    leaf = {
        ("conv", "weight"): "params/{}/Conv_0/kernel",
        ("conv", "bias"): "params/{}/Conv_0/bias",
        ("beta",): "params/{}/BatchNorm_0/bias",
        ("bn", "running_mean"): "batch_stats/{}/BatchNorm_0/mean",
        ("bn", "running_var"): "batch_stats/{}/BatchNorm_0/var",
    }[tuple(rest)]
    return leaf.format(path)
