"""Scalar quantizers beyond k-means: uniform and entropy-constrained (ECSQ).

k-means minimises the squared error for a number of levels; what a file pays for is coded bits. Choi,
El-Khamy and Lee ("Towards the Limit of Network Quantization", ICLR 2017) show that at equal coded size
uniform quantization followed by entropy coding beats k-means followed by Huffman, and that
entropy-constrained scalar quantization (ECSQ) does better still: it assigns each weight to the level j
that minimises (w - c_j)^2 + lambda * log2(1 / p_j), trading squared error against the code length of
the level, so rare outer levels lose members and the symbol stream's entropy falls.

Every quantizer here returns sorted levels and the thresholds between them (a value at a threshold goes
to the lower level), so weight sharing, centroid fine-tuning and the container treat them as k-means'.
Optional per-weight importance (squared gradients, a Hessian diagonal) weights the squared error: the
levels are importance-weighted means of their members. ECSQ's assignment uses one lambda for all weights
(scaled by the mean importance), which keeps its cells contiguous intervals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from vidcompress.errors import ConfigError, InputError
from vidcompress.quantize.kmeans import KMeans1D, _midpoints, _Sorted, check_weights

METHODS = ("kmeans", "uniform", "ecsq")


@dataclass(frozen=True)
class Levels:
    """A scalar quantizer: sorted levels, and the thresholds between neighbouring levels."""

    centroids: np.ndarray  # float64, increasing
    thresholds: np.ndarray  # float64, centroids.size - 1, non-decreasing
    error: float  # (importance-weighted) squared error on the fitted values

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Each value's level index (a value at a threshold goes to the lower level)."""
        return np.searchsorted(self.thresholds, np.asarray(values, dtype=np.float64), side="left")


def fit_levels(
    values: np.ndarray,
    levels: int,
    method: str = "kmeans",
    *,
    importance: np.ndarray | None = None,
    lagrangian: float = 0.0,
    init: str = "linear",
    max_iter: int = 300,
    seed: int = 0,
) -> Levels:
    """Fit a scalar quantizer of at most `levels` levels to `values`.

    Args:
        method: "kmeans" (Lloyd, Deep Compression's), "uniform" (equal-width cells between the smallest
            and largest value, each level its cell's mean; empty cells dropped) or "ecsq".
        importance: per-value weights of the squared error (None: all equal).
        lagrangian: ECSQ's lambda, relative to the values' variance: a level's cost is squared error plus
            lagrangian x variance x its code length in bits. 0 makes ECSQ k-means.
        init, max_iter, seed: as for k-means (ECSQ starts from k-means' levels).
    """
    if method not in METHODS:
        raise ConfigError(f"quantizer {method!r}: expected one of {', '.join(METHODS)}")
    if levels < 1:
        raise ConfigError(f"levels {levels}: must be at least 1")
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise InputError("quantizer: no values to quantize")
    if not np.all(np.isfinite(values)):
        raise InputError("quantizer: values contain NaN or inf")
    if not (np.isfinite(lagrangian) and lagrangian >= 0):
        raise ConfigError(f"lagrangian {lagrangian!r}: must be finite and non-negative")
    weights = check_weights(importance, values.size)
    if method == "uniform":
        return _uniform(_Sorted.of(values, weights), levels)
    kmeans = KMeans1D(levels, init=init, max_iter=max_iter, random_state=seed).fit(values, sample_weight=weights)
    centroids = kmeans.cluster_centers_
    if method == "kmeans" or lagrangian == 0.0 or centroids.size <= 1:
        return Levels(centroids, _midpoints(centroids), kmeans.inertia_)
    return _ecsq(_Sorted.of(values, weights), centroids, lagrangian * float(np.var(values)), max_iter)


def _uniform(data: _Sorted, levels: int) -> Levels:
    low, high = float(data.x[0]), float(data.x[-1])
    edges = np.empty(0) if levels == 1 or low == high else np.linspace(low, high, levels + 1)[1:-1]
    cuts = data.cuts_at(edges)
    count, total, _ = data.stats(cuts, np.zeros(cuts.size - 1))
    used = np.diff(cuts) > 0
    # Levels are cell means (weighted); a cell whose members all have weight 0 takes its plain mean.
    means = np.array([
        total[i] / count[i] if count[i] > 0 else data.mean(cuts[i], cuts[i + 1]) for i in np.flatnonzero(used)
    ])  # fmt: skip
    thresholds = _between(data, cuts[:-1][used])
    return Levels(means, thresholds, data.residual_energy(data.cuts_at(thresholds), means))


def _between(data: _Sorted, starts: np.ndarray) -> np.ndarray:
    """Thresholds that cut the sorted data at `starts` (the first index of every cell but the first):
    the largest value of each cell before the next one starts."""
    return data.x[starts[1:] - 1] if starts.size > 1 else np.empty(0)


def _ecsq(data: _Sorted, centroids: np.ndarray, lagrangian: float, max_iter: int) -> Levels:
    """Lagrangian k-means: assign by squared error + lagrangian x code length, then update each level to
    its members' mean and its probability to their share; levels that lose all members are dropped."""
    cuts = data.cuts(centroids)
    for _ in range(max_iter):
        members = np.diff(cuts)  # code lengths follow how often a symbol occurs, whatever its importance
        keep = members > 0
        centroids = centroids[keep]
        lengths = -np.log2(members[keep] / data.x.size)
        hull, thresholds = lower_envelope(centroids, lagrangian * lengths)
        centroids = centroids[hull]
        new_cuts = data.cuts_at(thresholds)
        weight, total, _ = data.stats(new_cuts, centroids)
        for i in np.flatnonzero(np.diff(new_cuts) > 0):  # each level moves to its members' (weighted) mean
            centroids[i] = total[i] / weight[i] if weight[i] > 0 else data.mean(new_cuts[i], new_cuts[i + 1])
        settled = np.array_equal(new_cuts, cuts)
        cuts = new_cuts
        if settled:
            break
    keep = np.diff(cuts) > 0
    centroids = centroids[keep]
    thresholds = _between(data, cuts[:-1][keep])
    return Levels(centroids, thresholds, data.residual_energy(data.cuts_at(thresholds), centroids))


def lower_envelope(centroids: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which levels win somewhere under the cost (w - c_j)^2 + offsets_j, and the thresholds between them.

    Up to the common w^2 the costs are lines, -2 c_j w + c_j^2 + offsets_j, with slopes decreasing in c_j;
    their lower envelope (the convex hull trick) gives the winners left to right.
    """
    slopes = -2.0 * centroids
    intercepts = centroids * centroids + offsets

    def crossing(a: int, b: int) -> float:
        return float((intercepts[b] - intercepts[a]) / (slopes[a] - slopes[b]))

    hull: list[int] = []
    for j in range(centroids.size):
        while len(hull) >= 2 and crossing(hull[-2], j) <= crossing(hull[-2], hull[-1]):
            hull.pop()
        hull.append(j)
    thresholds = np.array([crossing(a, b) for a, b in itertools.pairwise(hull)])
    return np.asarray(hull, dtype=np.int64), thresholds
