import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from vidcompress.errors import ConfigError, InputError
from vidcompress.quantize import INITS, KMeans1D, initial_centroids
from vidcompress.quantize.kmeans import NotFittedError


def _sklearn_sse(x: np.ndarray, init: np.ndarray) -> float:
    model = KMeans(init.size, init=init.reshape(-1, 1), n_init=1, max_iter=300).fit(x.reshape(-1, 1))
    return float(model.inertia_)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("k", [3, 16, 64])
def test_sse_never_worse_than_sklearn_from_the_same_init(init: str, k: int) -> None:
    x = np.random.default_rng(k).laplace(scale=0.05, size=4000)
    start = initial_centroids(x, k, init, seed=0)
    ours = KMeans1D(k, init=init, random_state=0).fit(x)
    assert ours.cluster_centers_.size == k
    assert ours.inertia_ <= _sklearn_sse(x, start) * (1 + 1e-9)


def test_fixed_point_is_a_lloyd_fixed_point() -> None:
    x = np.random.default_rng(0).normal(size=5000)
    model = KMeans1D(8).fit(x)
    labels = model.predict(x)
    means = np.array([x[labels == j].mean() for j in range(8)])
    np.testing.assert_allclose(means, model.cluster_centers_, rtol=1e-12, atol=1e-12)
    direct = ((x - model.cluster_centers_[labels]) ** 2).sum()
    assert model.inertia_ == pytest.approx(direct, rel=1e-12)


def test_predict_is_the_nearest_centroid() -> None:
    x = np.random.default_rng(1).normal(size=777)
    model = KMeans1D(5, init="k-means++").fit(x)
    nearest = np.abs(x[:, None] - model.cluster_centers_[None, :]).argmin(1)
    assert np.array_equal(model.predict(x), nearest)


def test_empty_clusters_are_repaired() -> None:
    # Linear init on a heavy-tailed sample leaves most of the range empty.
    x = np.concatenate([np.random.default_rng(2).normal(scale=0.01, size=3000), [50.0, -50.0]])
    model = KMeans1D(32, init="linear").fit(x)
    assert model.cluster_centers_.size == 32
    assert np.bincount(model.predict(x), minlength=32).min() >= 1


def test_fewer_distinct_values_than_clusters() -> None:
    model = KMeans1D(8).fit(np.array([1.0, 2.0, 2.0, 3.0]))
    assert model.cluster_centers_.tolist() == [1.0, 2.0, 3.0] and model.inertia_ == 0.0


def test_deterministic_with_a_seed() -> None:
    x = np.random.default_rng(3).normal(size=2000)
    a = KMeans1D(10, init="random", random_state=5).fit(x).cluster_centers_
    b = KMeans1D(10, init="random", random_state=5).fit(x).cluster_centers_
    assert np.array_equal(a, b)


def test_bad_input() -> None:
    with pytest.raises(InputError, match="NaN or inf"):
        KMeans1D(2).fit(np.array([1.0, np.nan]))
    with pytest.raises(InputError, match="no values"):
        KMeans1D(2).fit(np.array([]))
    with pytest.raises(ConfigError, match="init 'kmeans'"):
        initial_centroids(np.arange(5.0), 2, "kmeans")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=300),
    st.integers(1, 20),
    st.sampled_from(INITS),
)
def test_every_cluster_is_used_and_sorted(values: list[float], k: int, init: str) -> None:
    x = np.asarray(values)
    model = KMeans1D(k, init=init).fit(x)
    centers = model.cluster_centers_
    assert centers.size == min(k, np.unique(x).size)
    assert np.all(np.diff(centers) > 0)
    assert np.bincount(model.predict(x), minlength=centers.size).min() >= 1


def test_neighbouring_floats_each_keep_their_cluster() -> None:
    # (a + b) / 2 of neighbouring floats rounds to one of them (of -5e-324 and 0 to 0; of
    # 999.9999999999999 and 1000.0 to 1000.0, found by hypothesis), which once sent both to one cluster.
    for values in ([0.0, -5e-324], [0.0, 5e-324], [-5e-324, 5e-324, 0.0], [1000.0, 999.9999999999999],
                   [-1.0, np.nextafter(-1.0, 0.0)]):  # fmt: skip
        data = np.array(values)
        kmeans = KMeans1D(len(values)).fit(data)
        assert np.bincount(kmeans.predict(data), minlength=len(values)).min() == 1


def test_scikit_learn_contract() -> None:
    sklearn_base = pytest.importorskip("sklearn.base")
    model = KMeans1D(4, init="density", random_state=3)
    copy = sklearn_base.clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert model.set_params(n_clusters=6) is model and model.n_clusters == 6
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(colour=1)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict(np.zeros(3))
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)  # as sklearn's
    assert repr(KMeans1D(5, init="k-means++")) == "KMeans1D(n_clusters=5, init='k-means++')"
