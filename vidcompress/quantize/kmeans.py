"""Exact 1-D k-means: sort once, then Lloyd iterations on prefix sums in O(k log n) each.

In one dimension the clusters of sorted centroids are contiguous runs of the sorted data, cut at the
midpoints between neighbouring centroids. With prefix sums of x and x^2, each cluster's size, mean
and squared error come from two lookups, so an iteration costs k binary searches instead of the
n x k distances of a generic k-means.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcompress.errors import ConfigError, InputError

INITS = ("linear", "density", "random", "k-means++")


@dataclass
class _Sorted:
    """Sorted data with prefix sums (float64; index i holds the sum over the first i values) of the
    weights, weighted values and weighted squares; unweighted data has weight 1 everywhere."""

    x: np.ndarray
    w: np.ndarray | None  # per-value weights in sorted order; None: all 1
    s0: np.ndarray
    s1: np.ndarray
    s2: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, weights: np.ndarray | None = None) -> _Sorted:
        values = np.asarray(values, dtype=np.float64).ravel()
        if weights is None:
            x = np.sort(values)
            s0 = np.arange(x.size + 1, dtype=np.float64)
            return cls(x, None, s0, _prefix(x), _prefix(x * x))
        order = np.argsort(values, kind="stable")
        x, w = values[order], np.asarray(weights, dtype=np.float64).ravel()[order]
        return cls(x, w, _prefix(w), _prefix(w * x), _prefix(w * x * x))

    def cuts(self, centroids: np.ndarray) -> np.ndarray:
        """Cluster boundaries in the sorted data; ties at a midpoint go to the lower centroid."""
        return self.cuts_at(_midpoints(centroids))

    def cuts_at(self, thresholds: np.ndarray) -> np.ndarray:
        """Boundaries for increasing thresholds: a value at a threshold goes to the lower cluster."""
        inner = np.searchsorted(self.x, thresholds, side="right")
        return np.concatenate(([0], inner, [self.x.size]))

    def stats(self, cuts: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cluster: weight (count when unweighted), weighted sum, and weighted squared error around
        the given centroids."""
        count = self.s0[cuts[1:]] - self.s0[cuts[:-1]]
        total = self.s1[cuts[1:]] - self.s1[cuts[:-1]]
        squares = self.s2[cuts[1:]] - self.s2[cuts[:-1]]
        error = np.maximum(squares - 2.0 * centroids * total + centroids * centroids * count, 0.0)
        return count, total, error

    def mean(self, start: int, stop: int) -> float:
        """The (weighted) mean of sorted values start..stop, computed directly (no prefix sums)."""
        if self.w is None:
            return float(self.x[start:stop].mean())
        weights = self.w[start:stop]
        total = float(weights.sum())
        return float(np.dot(weights, self.x[start:stop]) / total) if total > 0 else float(self.x[start:stop].mean())

    def residual_energy(self, cuts: np.ndarray, centroids: np.ndarray) -> float:
        """Exact (weighted) squared error of the clustering, not from prefix sums."""
        residual = self.x - np.repeat(centroids, np.diff(cuts))
        if self.w is None:
            return float(np.dot(residual, residual))
        return float(np.dot(self.w * residual, residual))


def _prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(values)))


def initial_centroids(values: np.ndarray, k: int, init: str, seed: int = 0) -> np.ndarray:
    """The initial centroids of one of the four initialisations (sorted, float64).

    linear: evenly spaced between min and max (Deep Compression's choice); density: evenly spaced
    quantiles of the data's CDF; random: k distinct data points (Forgy); k-means++: D^2 sampling.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if init == "linear":
        centroids = np.linspace(x.min(), x.max(), k)
    elif init == "density":
        centroids = np.quantile(x, np.linspace(0.0, 1.0, k))
    elif init == "random":
        rng = np.random.default_rng(seed)
        centroids = x[rng.choice(x.size, size=min(k, x.size), replace=False)]
    elif init == "k-means++":
        centroids = _kmeans_plus_plus(x, k, np.random.default_rng(seed))
    else:
        raise ConfigError(f"k-means init {init!r}: expected one of {', '.join(INITS)}")
    return np.sort(centroids)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [x[rng.integers(x.size)]]
    nearest = (x - chosen[0]) ** 2
    for _ in range(1, k):
        total = nearest.sum()
        if total <= 0.0:
            break
        index = int(np.searchsorted(np.cumsum(nearest), rng.random() * total, side="right"))
        chosen.append(x[min(index, x.size - 1)])
        np.minimum(nearest, (x - chosen[-1]) ** 2, out=nearest)
    return np.asarray(chosen)


class NotFittedError(ValueError, AttributeError):
    """`predict` before `fit` (the same bases as scikit-learn's `NotFittedError`)."""


class KMeans1D:
    """Exact Lloyd k-means on scalars with empty-cluster repair, under scikit-learn's estimator
    contract (constructor arguments stored as given, `get_params`/`set_params`, so that
    `sklearn.base.clone` works; learned attributes end in `_`; `predict` before `fit` raises
    `NotFittedError`) without importing scikit-learn.

    Args:
        n_clusters: k.
        init: "linear", "density", "random", "k-means++", or an array of initial centroids.
        max_iter: cap on Lloyd iterations; it stops earlier at a fixed point of the assignment.
        tol: also stop when the squared centroid shift is at most tol x the data's variance
            (scikit-learn's rule); 0, the default, runs to the fixed point.
        random_state: seed of the random initialisations.

    Learned: `cluster_centers_` (sorted), `inertia_` (sum of squared errors, weighted when
    `fit` got `sample_weight`), `n_iter_`. `predict(values)` gives each value's cluster index in
    `cluster_centers_`. With `sample_weight` (scikit-learn's name), each centroid is the weighted mean
    of its members; the assignment (nearest centroid) does not depend on the weights.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | np.ndarray = "linear",
        max_iter: int = 300,
        tol: float = 0.0,
        random_state: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PARAMETERS}

    def set_params(self, **params: Any) -> KMeans1D:
        unknown = sorted(set(params) - set(_PARAMETERS))
        if unknown:
            raise ValueError(f"KMeans1D: invalid parameter(s) {unknown}; valid: {list(_PARAMETERS)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if not _is_default(k, v)]
        return f"KMeans1D({', '.join(changed)})"

    def fit(self, values: np.ndarray, sample_weight: np.ndarray | None = None) -> KMeans1D:
        values = np.asarray(values)
        if values.size == 0:
            raise InputError("k-means: no values to cluster")
        if not np.all(np.isfinite(values)):
            raise InputError("k-means: values contain NaN or inf")
        if self.n_clusters < 1:
            raise ConfigError(f"k-means n_clusters {self.n_clusters}: must be at least 1")
        data = _Sorted.of(values, check_weights(sample_weight, values.size))
        starts = np.concatenate(([True], data.x[1:] != data.x[:-1]))  # the data is sorted: no second sort
        if np.count_nonzero(starts) <= self.n_clusters:  # every value can be its own centroid
            self.cluster_centers_ = data.x[starts]
            self.inertia_, self.n_iter_ = 0.0, 0
            return self
        if isinstance(self.init, str):
            centroids = initial_centroids(values, self.n_clusters, self.init, self.random_state)
        else:
            centroids = np.sort(np.asarray(self.init, dtype=np.float64).ravel())
        centroids = _repair(data, centroids, self.n_clusters)
        cuts = data.cuts(centroids)
        tolerance = self.tol * float(np.var(data.x))
        iteration = 0
        for iteration in range(1, self.max_iter + 1):  # noqa: B007 (n_iter_ reads it)
            count, total, _ = data.stats(cuts, centroids)
            moved = np.where(count > 0, total / np.where(count > 0, count, 1.0), centroids)
            shift = float(np.sum((moved - centroids) ** 2))
            centroids = np.sort(moved)
            new_cuts = data.cuts(centroids)
            # Repair only when a cluster came out empty or two centroids met (it is a no-op otherwise,
            # and this loop's per-iteration cost is mostly numpy call overhead on small layers).
            weight = data.s0[new_cuts[1:]] - data.s0[new_cuts[:-1]]  # per cluster, as `_repair` counts it
            if not (np.all(weight > 0) and np.all(np.diff(centroids) > 0)):
                centroids = _repair(data, centroids, self.n_clusters)
                new_cuts = data.cuts(centroids)
            converged = np.array_equal(new_cuts, cuts) or shift <= tolerance
            cuts = new_cuts
            if converged:
                break
        self.cluster_centers_ = centroids
        self.inertia_ = data.residual_energy(cuts, centroids)
        self.n_iter_ = iteration
        return self

    def predict(self, values: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each value (ties to the lower centroid)."""
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError("this KMeans1D is not fitted yet: call fit(values) first")
        centroids = self.cluster_centers_
        return np.searchsorted(_midpoints(centroids), np.asarray(values, dtype=np.float64), side="left")


_PARAMETERS = ("n_clusters", "init", "max_iter", "tol", "random_state")


def _is_default(name: str, value: Any) -> bool:
    default = inspect.signature(KMeans1D.__init__).parameters[name].default
    return isinstance(value, type(default)) and value == default


def check_weights(weights: np.ndarray | None, size: int) -> np.ndarray | None:
    """Per-value weights as float64, or an InputError: one per value, finite, non-negative, not all zero."""
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if weights.size != size:
        raise InputError(f"sample weights: {weights.size} for {size} values")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise InputError("sample weights must be finite, non-negative and not all zero")
    return weights


def _midpoints(centroids: np.ndarray) -> np.ndarray:
    """Midpoints between neighbouring sorted centroids, each at least its lower centroid and below its
    upper one: (a + b) / 2 rounds to the upper one for neighbouring floats (the subnormals -5e-324 and
    0, or 999.9999999999999 and 1000.0), and a value at a midpoint goes to the lower cluster, which
    left the upper cluster empty."""
    lower, upper = centroids[:-1], centroids[1:]
    return np.minimum(lower + (upper - lower) / 2.0, np.nextafter(upper, -np.inf))


def _repair(data: _Sorted, centroids: np.ndarray, k: int) -> np.ndarray:
    """Make all k clusters non-empty: drop empty or duplicate centroids, then split the cluster
    with the largest squared error at its centroid into two halves, until there are k again."""
    centroids = np.unique(centroids)
    for _ in range(2 * k):
        cuts = data.cuts(centroids)
        count, _, error = data.stats(cuts, centroids)
        if centroids.size == k and count.all():
            break
        if not count.all():
            centroids = centroids[count > 0]
            continue
        # Only a cluster holding two or more distinct values can be split.
        splittable = data.x[cuts[:-1]] < data.x[np.maximum(cuts[1:] - 1, 0)]
        error = np.where(splittable, error, -1.0)
        worst = int(np.argmax(error))
        if error[worst] < 0.0:
            break  # fewer distinct values than k: nothing left to split
        start, stop = cuts[worst], cuts[worst + 1]
        middle = start + int(np.searchsorted(data.x[start:stop], centroids[worst], side="right"))
        middle = min(max(middle, start + 1), stop - 1)
        # Direct means, not prefix sums: tiny values beside large ones would cancel out.
        left, right = data.mean(start, middle), data.mean(middle, stop)
        centroids = np.unique(np.concatenate((np.delete(centroids, worst), [left, right])))
    return centroids
