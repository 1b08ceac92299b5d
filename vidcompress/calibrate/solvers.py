"""Layer solvers on (W, H): pruning with the optimal-brain-surgeon update (SparseGPT) and quantization
with error feedback onto a codebook (GPTQ), both minimising the output error `tr(dW H dW^T)`.

Both walk the columns in order. Removing (or rounding) the weights of column j moves the weights of the
columns not yet walked by the optimal-brain-surgeon update for the Hessian restricted to those columns;
the rows of the upper Cholesky factor U of H^-1 hold every one of those updates at once (Frantar and
Alistarh, "SparseGPT", 2023; Frantar et al., "GPTQ", 2023): column j's error e (per row) moves the later
columns by `-e / U[j, j] * U[j, j:]`. Updates are applied lazily a block of columns at a time. A
pruning mask is chosen a block at a time by the saliency `w^2 / U[j, j]^2` on the block's current
weights, with per-block counts that add up to the exact sparsity asked for.

H is damped by a fraction of its mean diagonal before the factorisation; a Cholesky failure (H of a layer
seen on fewer input columns than its width is singular) retries with ten times the dampening, and the
dampening used is reported. Everything runs in float64 on the CPU: deterministic and free of the
float32 breakdowns large H matrices show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vidcompress.errors import InputError
from vidcompress.quantize.scalar import fit_levels

DAMPENING = 0.01  # of the mean diagonal of H
MAX_DAMPENING = 10.0
BLOCK = 128


@dataclass
class Factor:
    """The upper Cholesky factor of the damped H^-1, and the dampening it took."""

    upper: torch.Tensor
    dampening: float
    retries: int


def inverse_factor(hessian: torch.Tensor, dampening: float = DAMPENING, name: str = "layer") -> Factor:
    """U with U^T U = (H + d * mean(diag H) * I)^-1, raising d tenfold until H + dI factorises."""
    h = hessian.to(torch.float64)
    mean = float(torch.diagonal(h).mean())
    if not mean > 0:
        raise InputError(f"{name}: its calibration inputs are all zero (H has no positive diagonal)")
    damp, retries = dampening, 0
    eye = torch.eye(h.shape[0], dtype=torch.float64)
    while True:
        lower, info = torch.linalg.cholesky_ex(h + damp * mean * eye)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0:
                return Factor(upper, damp, retries)
        if damp >= MAX_DAMPENING:
            raise InputError(f"{name}: H stays singular with dampening {damp:g} of its mean diagonal")
        damp, retries = damp * 10, retries + 1


def block_counts(rows: int, columns: int, sparsity: float, block: int) -> list[int]:
    """Weights to prune in each column block, adding up to the layer's count (`pruned_count`'s rounding)."""
    counts, done = [], 0
    for start in range(0, columns, block):
        end = min(start + block, columns)
        target = int(sparsity * rows * end + 0.5)  # rounded half up, as magnitude pruning's count
        counts.append(target - done)
        done = target
    return counts


class Levels:
    """Nearest-level rounding onto sorted nonzero levels (zero is kept apart: a pruned weight)."""

    def __init__(self, levels: torch.Tensor) -> None:
        self.levels = levels.to(torch.float64)
        self.thresholds = (self.levels[1:] + self.levels[:-1]) / 2

    def symbols(self, values: torch.Tensor) -> torch.Tensor:
        """Level index of each value (0-based)."""
        return torch.searchsorted(self.thresholds, values.contiguous(), right=False)

    def round(self, values: torch.Tensor) -> torch.Tensor:
        return self.levels[self.symbols(values)]


def solve(
    weight: torch.Tensor,
    factor: Factor,
    *,
    sparsity: float = 0.0,
    levels: Levels | None = None,
    keep_zero: torch.Tensor | None = None,
    block: int = BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune to `sparsity` and/or round onto `levels` with error feedback; return (new W, pruned mask).

    `weight` is (rows, columns) float64; `keep_zero` marks weights that are zero already and must stay so
    (they count toward the sparsity). With `levels`, each kept weight goes to its nearest level at the
    time its column is walked; with `sparsity` 0 and no `levels` nothing changes.
    """
    w = weight.clone(memory_format=torch.contiguous_format)
    rows, cols = w.shape
    u = factor.upper
    forced = keep_zero if keep_zero is not None else torch.zeros_like(w, dtype=torch.bool)
    mask = torch.zeros_like(w, dtype=torch.bool)
    counts = block_counts(rows, cols, sparsity, block) if sparsity > 0 else None
    carry = 0
    for b, start in enumerate(range(0, cols, block)):
        end = min(start + block, cols)
        w1, u1 = w[:, start:end].clone(), u[start:end, start:end]
        err1 = torch.zeros_like(w1)
        m1 = forced[:, start:end].clone(memory_format=torch.contiguous_format)
        if counts is not None:
            want = counts[b] + carry
            score = w1.pow(2) / torch.diagonal(u1).pow(2).unsqueeze(0)
            score[m1] = -1.0
            take = max(want, int(m1.sum()))
            order = torch.argsort(score.reshape(-1), stable=True)[:take]
            m1.view(-1)[order] = True
            carry = want - take
        for i in range(end - start):
            col = w1[:, i]
            q = col.clone()
            if levels is not None:
                q = levels.round(col)
            q[m1[:, i]] = 0.0
            e = (col - q) / u1[i, i]
            w1[:, i:] -= e.unsqueeze(1) * u1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = e
        w[:, start:end] = w1
        w[:, end:] -= err1 @ u[start:end, end:]
        mask[:, start:end] = m1
    return w, mask


def output_error(original: torch.Tensor, changed: torch.Tensor, hessian: torch.Tensor) -> tuple[float, float]:
    """(tr(dW H dW^T), tr(W H W^T)) summed over groups, for (groups, rows, cols) matrices."""
    delta = (original - changed).to(torch.float64)
    h = hessian.to(torch.float64)
    w = original.to(torch.float64)
    err = sum(float(torch.einsum("rc,cd,rd->", delta[g], h[g], delta[g])) for g in range(h.shape[0]))
    base = sum(float(torch.einsum("rc,cd,rd->", w[g], h[g], w[g])) for g in range(h.shape[0]))
    return err, base


def fit_codebook(
    values: torch.Tensor, count: int, method: str, importance: torch.Tensor | None, seed: int, name: str
) -> torch.Tensor:
    """Sorted nonzero levels (at most `count`) fitted to the nonzero `values` (float64)."""
    nonzero = values != 0
    if not bool(nonzero.any()):
        return torch.zeros(0, dtype=torch.float64)
    weights = None if importance is None else importance[nonzero].numpy()
    try:
        fitted = fit_levels(values[nonzero].numpy(), count, method, importance=weights, seed=seed)
    except InputError as error:
        raise InputError(f"{name}: {error}") from None
    return torch.from_numpy(np.asarray(fitted.centroids, dtype=np.float64))


def refit_codebook(
    original: torch.Tensor, symbols: torch.Tensor, levels: torch.Tensor, hessian: torch.Tensor, iterations: int = 25
) -> torch.Tensor:
    """Levels minimising tr((W - c[S]) H (W - c[S])^T) for fixed symbols S (0 = zero, k = levels[k-1]):
    conjugate gradients on the normal equations, one product with H per step."""
    k = levels.numel()
    groups = hessian.shape[0]
    s = symbols.reshape(groups, -1)

    def apply(c: torch.Tensor) -> torch.Tensor:  # G c: per level, the sum over its members of (c[S] H)
        table = torch.cat([c.new_zeros(1), c])
        out = c.new_zeros(k + 1)
        for g in range(groups):
            q = table[symbols[g]]
            out.index_add_(0, s[g], (q @ hessian[g]).reshape(-1))
        return out[1:]

    rhs = original.new_zeros(k + 1)
    for g in range(groups):
        rhs.index_add_(0, s[g], (original[g] @ hessian[g]).reshape(-1))
    b = rhs[1:]
    x = levels.clone()
    r = b - apply(x)
    p = r.clone()
    rs = float(r @ r)
    scale = float(b @ b)
    for _ in range(min(iterations, k)):
        if rs <= 1e-24 * max(scale, 1e-300):
            break
        ap = apply(p)
        denom = float(p @ ap)
        if denom <= 0:
            break
        alpha = rs / denom
        x = x + alpha * p
        r = r - alpha * ap
        new = float(r @ r)
        p = r + (new / rs) * p
        rs = new
    return x
