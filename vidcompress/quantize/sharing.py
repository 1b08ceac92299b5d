"""Weight sharing: weight = codebook[symbols], with the codebook trained by autograd.

The codebook convention, shared with the encoder: symbol 0 is exact zero (pruned weights and the
encoder's filler entries); symbols 1 .. 2^b - 1 are the learned centroids, in increasing order.
A layer of b bits therefore has at most 2^b distinct values, zero included.

Looking the codebook up by the symbols routes, in the backward pass, the sum of the gradients of
every member of a cluster to its centroid: the paper's centroid fine-tuning. `gradient="mean"`
divides by the cluster size instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vidcompress.errors import InputError
from vidcompress.quantize.scalar import fit_levels


@dataclass
class SharedWeights:
    """A layer's weights as a codebook and one symbol per weight (symbol 0 is zero)."""

    codebook: torch.Tensor  # (2^b,) in the weight's dtype; entry 0 is 0.0; unused entries repeat the last
    symbols: torch.Tensor  # int64, the weight's shape
    bits: int
    sse: float  # squared error of the shared weights against the originals

    @property
    def clusters(self) -> int:
        """Distinct centroids in use (zero excluded)."""
        return int(torch.unique(self.symbols[self.symbols > 0]).numel())

    def weight(self) -> torch.Tensor:
        return self.codebook[self.symbols]


def share_weights(
    weight: torch.Tensor,
    bits: int,
    init: str = "linear",
    max_iter: int = 300,
    seed: int = 0,
    name: str = "",
    *,
    method: str = "kmeans",
    lagrangian: float = 0.0,
    importance: torch.Tensor | None = None,
) -> SharedWeights:
    """Quantize the nonzero weights of one layer to at most 2^bits - 1 levels; zeros keep symbol 0.

    `method`: "kmeans", "uniform" or "ecsq" (`vidcompress.quantize.scalar`); `lagrangian`: ECSQ's
    lambda; `importance`: per-weight weights of the squared error (the weight's shape), e.g. squared
    gradients from `estimate_importance`.
    """
    values = weight.detach().to("cpu", torch.float64).reshape(-1).numpy()
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name or 'layer'}: weights contain NaN or inf; refusing to quantize")
    weights = None
    if importance is not None:
        if tuple(importance.shape) != tuple(weight.shape):
            raise InputError(
                f"{name or 'layer'}: importance has shape {tuple(importance.shape)}, the weight {tuple(weight.shape)}"
            )
        weights = importance.detach().to("cpu", torch.float64).reshape(-1).numpy()
    levels = (1 << bits) - 1
    nonzero = values != 0.0
    codebook = np.zeros(levels + 1, dtype=np.float64)
    symbols = np.zeros(values.shape, dtype=np.int64)
    sse = 0.0
    if nonzero.any():
        member_weights = None if weights is None else weights[nonzero]
        if member_weights is not None and not np.any(member_weights > 0):
            member_weights = None  # no importance anywhere on the kept weights: plain squared error
        try:
            fitted = fit_levels(
                values[nonzero], levels, method, importance=member_weights, lagrangian=lagrangian, init=init,
                max_iter=max_iter, seed=seed,
            )  # fmt: skip
        except InputError as error:
            raise InputError(f"{name or 'layer'}: {error}") from None
        centers = fitted.centroids
        codebook[1 : centers.size + 1] = centers
        codebook[centers.size + 1 :] = centers[-1]  # unused symbols: never emitted
        symbols[nonzero] = fitted.assign(values[nonzero]) + 1
        residual = values[nonzero] - centers[symbols[nonzero] - 1]
        sse = float(np.dot(residual, residual))  # plain squared error, whatever the importance
    table = torch.from_numpy(codebook).to(weight.dtype)
    # A centroid that rounds to zero in the weight's dtype would alias symbol 0. An all-zero (or empty)
    # layer has no centroids: its one level is 0, and the unused entries stay 0.
    if nonzero.any() and bool((table[1:] == 0).any()):
        raise InputError(f"{name or 'layer'}: a centroid rounds to zero in {weight.dtype}")
    return SharedWeights(table, torch.from_numpy(symbols).view(weight.shape), bits, sse)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(scale)
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class _Lookup(torch.autograd.Function):
    """`codebook[symbols]` whose backward sums each weight's gradient into its symbol's entry.

    The sum is an `index_add_`: deterministic on the CPU, and there about 20x faster than the backward
    of plain indexing, which accumulates with parallel atomic adds in an order that changes from run to
    run (the same fine-tuning gave different centroids each time).
    """

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        flat = symbols.reshape(-1)
        ctx.save_for_backward(flat)
        ctx.entries = codebook.shape[0]
        return codebook.index_select(0, flat).view(symbols.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (flat,) = ctx.saved_tensors
        return grad.new_zeros(ctx.entries).index_add_(0, flat, grad.reshape(-1)), None


class WeightSharing(nn.Module):
    """Parametrization replacing a weight by `cat([0], centroids)[symbols]`.

    `centroids` is a Parameter of 2^b - 1 values; `symbols` a buffer that stays fixed while the
    centroids are fine-tuned. The incoming (original) tensor is ignored.
    """

    vidcompress_parametrization = True
    symbols: torch.Tensor
    cluster_sizes: torch.Tensor

    def __init__(self, shared: SharedWeights, gradient: str = "sum") -> None:
        super().__init__()
        if gradient not in ("sum", "mean"):
            raise ValueError(f"gradient {gradient!r}: expected 'sum' or 'mean'")
        self.gradient = gradient
        self.bits = shared.bits
        self.centroids = nn.Parameter(shared.codebook[1:].clone())
        dtype = torch.uint8 if shared.bits <= 8 else torch.int16 if shared.bits <= 15 else torch.int32
        self.register_buffer("symbols", shared.symbols.to(dtype))
        sizes = torch.bincount(shared.symbols.reshape(-1), minlength=1 << shared.bits)[1:]
        self.register_buffer("cluster_sizes", sizes.to(shared.codebook.dtype))

    def codebook(self) -> torch.Tensor:
        centroids = self.centroids
        if self.gradient == "mean":
            centroids = _ScaleGradient.apply(centroids, 1.0 / self.cluster_sizes.clamp(min=1))
        return torch.cat([centroids.new_zeros(1), centroids])

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return _Lookup.apply(self.codebook(), self.symbols.long())
