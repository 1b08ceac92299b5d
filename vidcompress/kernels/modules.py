"""Inference modules that multiply by the compressed layout: SparseLinear and SparseConv (1-D/2-D/3-D).

Convolutions run as im2col (patches through `Tensor.unfold`) followed by Y = W X on the layout.
"""

from __future__ import annotations

import os
from typing import Any

import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from vidcompress.errors import ConfigError, InputError
from vidcompress.kernels.cpu import csr_matrix, spmm_cpu
from vidcompress.kernels.layout import SparseLayout


def sparse_matmul(layout: SparseLayout, x: torch.Tensor) -> torch.Tensor:
    """W @ X on the layout's device: the CUDA kernels on a GPU, scipy's CSR kernels on the CPU."""
    if layout.device.type == "cuda":
        from vidcompress.kernels.cuda import spmm_cuda

        return spmm_cuda(layout, x)
    return spmm_cpu(layout, x)


class _SparseBase(nn.Module):
    """The layout, the bias, and on the CPU with `cache=True` the layout expanded to a scipy CSR matrix
    (8 bytes a nonzero more, built on the first call): faster calls for more memory."""

    def __init__(self, layout: SparseLayout, bias: torch.Tensor | None, cache: bool = False) -> None:
        super().__init__()
        self.layout = layout
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.cache = cache
        self._csr: scipy.sparse.csr_matrix | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # keep the layout on the module's device
        super()._apply(fn, recurse)
        probe = fn(torch.zeros(1))
        self.layout = self.layout.to(probe.device)
        self._csr = None
        return self

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cache or self.layout.device.type != "cpu":
            return sparse_matmul(self.layout, x)
        if self._csr is None:
            self._csr = csr_matrix(self.layout)
        return spmm_cpu(self.layout, x, self._csr)


class SparseLinear(_SparseBase):
    """y = x W^T + b with W held as a SparseLayout."""

    def __init__(self, layout: SparseLayout, bias: torch.Tensor | None = None, cache: bool = False) -> None:
        super().__init__(layout, bias, cache)
        self.in_features, self.out_features = layout.shape[1], layout.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, cache: bool = False) -> SparseLinear:
        return cls(SparseLayout.from_dense(linear.weight), linear.bias, cache)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = self._matmul(flat.T.contiguous()).T.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class SparseConv(_SparseBase):
    """A Conv1d/2d/3d (groups 1, dilation 1) with W.reshape(out, -1) held as a SparseLayout."""

    def __init__(
        self,
        layout: SparseLayout,
        bias: torch.Tensor | None,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        padding_mode: str = "zeros",
        cache: bool = False,
    ) -> None:
        super().__init__(layout, bias, cache)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.padding_mode = padding_mode
        self.out_channels = layout.shape[0]

    @classmethod
    def from_conv(cls, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, cache: bool = False) -> SparseConv:
        if conv.groups != 1 or any(d != 1 for d in conv.dilation):
            raise ConfigError(f"{type(conv).__name__}: grouped or dilated convolutions are not supported sparse")
        if isinstance(conv.padding, str):
            raise ConfigError(f"{type(conv).__name__}: string padding {conv.padding!r} is not supported sparse")
        return cls(
            SparseLayout.from_dense(conv.weight),
            conv.bias,
            tuple(conv.kernel_size),
            tuple(conv.stride),
            tuple(conv.padding),
            conv.padding_mode,
            cache,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = len(self.kernel_size)
        if any(self.padding):
            pad = [p for p in reversed(self.padding) for _ in range(2)]
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pad, mode=mode)
        patches = x
        for axis, (size, step) in enumerate(zip(self.kernel_size, self.stride, strict=True)):
            patches = patches.unfold(2 + axis, size, step)
        # (N, C, *out_spatial, *kernel) -> (C * prod(kernel), N * prod(out_spatial))
        batch = x.shape[0]
        spatial = patches.shape[2 : 2 + dims]
        order = [1, *range(2 + dims, 2 + 2 * dims), 0, *range(2, 2 + dims)]
        columns = patches.permute(order).reshape(self.layout.shape[1], -1)
        out = self._matmul(columns.contiguous()).to(x.dtype)
        out = out.reshape(self.out_channels, batch, *spatial).transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, *([1] * dims))
        return out.contiguous()


def load_sparse(
    container: str | os.PathLike[str],
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    cache: bool = False,
) -> nn.Module:
    """Load a container into `model` and swap every encoded Linear/Conv for its sparse module, in place.

    `cache=True` (CPU): each module keeps its layout expanded to CSR (8 bytes a nonzero more) after the
    first call, so later calls skip the expansion.
    """
    from vidcompress.encode import load_compressed, read_container

    names = {entry.name for entry in read_container(container).layers}
    load_compressed(container, model)
    for module_name, module in list(model.named_modules()):
        prefix = f"{module_name}." if module_name else ""
        if f"{prefix}weight" not in names:
            continue
        replacement: nn.Module
        if isinstance(module, nn.Linear):
            replacement = SparseLinear.from_linear(module, cache)
        elif isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            replacement = SparseConv.from_conv(module, cache)
        else:
            continue  # e.g. an Embedding: its decoded dense weight stays
        parent_name, _, attribute = module_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not module_name:
            raise InputError("load_sparse needs a model that contains layers, not a bare layer")
        setattr(parent, attribute, replacement)
    if device is not None:
        model.to(device)
    return model
