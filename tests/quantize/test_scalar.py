"""Uniform and entropy-constrained quantizers, importance weighting, and their use in weight sharing."""

import numpy as np
import pytest
import torch
from torch import nn

from vidcompress.errors import ConfigError, InputError
from vidcompress.quantize import (
    QuantizeConfig,
    estimate_importance,
    finalize_,
    fit_levels,
    quantize_,
    quantize_state_dict,
    share_weights,
)
from vidcompress.quantize.scalar import lower_envelope


def entropy(symbols: np.ndarray) -> float:
    counts = np.bincount(symbols)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum())


def heavy_tailed(size: int = 60_000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(3, size=size)


def test_ecsq_codes_fewer_bits_than_kmeans_at_equal_error() -> None:
    x = heavy_tailed()
    kmeans = fit_levels(x, 31, "kmeans")
    kmeans_error = np.mean((x - kmeans.centroids[kmeans.assign(x)]) ** 2)
    # The largest lambda (on a grid) at which ECSQ's error is still no larger than k-means'.
    matched = None
    for lam in (0.002, 0.005, 0.01, 0.015, 0.02, 0.03):
        ecsq = fit_levels(x, 63, "ecsq", lagrangian=lam)
        if np.mean((x - ecsq.centroids[ecsq.assign(x)]) ** 2) <= kmeans_error:
            matched = ecsq
    assert matched is not None
    assert entropy(matched.assign(x)) < entropy(kmeans.assign(x)) - 0.1  # bits a weight


def test_ecsq_with_zero_lambda_is_kmeans_and_larger_lambda_lowers_entropy() -> None:
    x = heavy_tailed(20_000)
    kmeans = fit_levels(x, 15, "kmeans")
    zero = fit_levels(x, 15, "ecsq", lagrangian=0.0)
    np.testing.assert_array_equal(zero.centroids, kmeans.centroids)
    entropies = [entropy(fit_levels(x, 15, "ecsq", lagrangian=lam).assign(x)) for lam in (0.01, 0.05, 0.2)]
    assert entropies == sorted(entropies, reverse=True)


def test_levels_are_consistent_with_their_thresholds() -> None:
    x = heavy_tailed(5_000, seed=3)
    for method, lam in (("kmeans", 0.0), ("uniform", 0.0), ("ecsq", 0.05)):
        fitted = fit_levels(x, 15, method, lagrangian=lam)
        assert np.all(np.diff(fitted.centroids) > 0) and fitted.thresholds.size == fitted.centroids.size - 1
        symbols = fitted.assign(x)
        assert np.bincount(symbols, minlength=fitted.centroids.size).min() > 0  # no empty level
        assert fitted.error == pytest.approx(np.sum((x - fitted.centroids[symbols]) ** 2))
        for level in range(fitted.centroids.size):  # each level is the mean of its members
            assert fitted.centroids[level] == pytest.approx(x[symbols == level].mean())


def test_uniform_cells_have_equal_width() -> None:
    x = np.linspace(-1.0, 1.0, 1001)
    fitted = fit_levels(x, 4, "uniform")
    np.testing.assert_allclose(fitted.centroids, [-0.75, -0.25, 0.25, 0.75], atol=1e-3)
    gaps = np.bincount(fitted.assign(x))
    assert gaps.max() - gaps.min() <= 1


def test_lower_envelope_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        centroids = np.sort(rng.normal(size=12))
        offsets = rng.uniform(0, 2, 12)
        hull, thresholds = lower_envelope(centroids, offsets)
        w = np.linspace(-4, 4, 2001)
        best = np.argmin((w[:, None] - centroids[None, :]) ** 2 + offsets[None, :], axis=1)
        found = hull[np.searchsorted(thresholds, w, side="left")]
        costs = (w[:, None] - centroids[None, :]) ** 2 + offsets[None, :]
        rows = np.arange(w.size)
        np.testing.assert_allclose(costs[rows, found], costs[rows, best], atol=1e-9)  # ties may pick either


def test_importance_pulls_levels_toward_important_weights() -> None:
    x = np.concatenate([np.full(100, 1.0), np.full(100, 2.0)])
    plain = fit_levels(x, 1, "kmeans")
    weighted = fit_levels(x, 1, "kmeans", importance=np.concatenate([np.full(100, 9.0), np.ones(100)]))
    assert plain.centroids[0] == pytest.approx(1.5)
    assert weighted.centroids[0] == pytest.approx(1.1)  # (9 x 1 + 1 x 2) / 10


def test_bad_quantizer_inputs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="quantizer 'lloyd'"):
        fit_levels(np.ones(3), 3, "lloyd")
    with pytest.raises(ConfigError, match="lagrangian"):
        fit_levels(np.ones(3), 3, "ecsq", lagrangian=-1.0)
    with pytest.raises(InputError, match="sample weights"):
        fit_levels(np.arange(3.0), 3, importance=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(InputError, match="importance has shape"):
        share_weights(torch.randn(4, 4), 3, name="fc.weight", importance=torch.ones(4))


@pytest.mark.parametrize("method", ["uniform", "ecsq"])
def test_every_quantizer_keeps_the_codebook_convention_and_fine_tunes(method: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    with torch.no_grad():
        model[0].weight[model[0].weight.abs() < 0.05] = 0.0  # some pruned weights
    zeros = model[0].weight == 0
    config = QuantizeConfig(bits="fc=4", method=method, lagrangian=0.02 if method == "ecsq" else 0.0)
    report = quantize_(model, config)
    assert all(layer.clusters <= 15 for layer in report.layers)
    before = model[0].weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(16, 32)).square().mean()
    loss.backward()
    optimizer.step()
    after = model[0].weight.detach()
    assert not torch.equal(before, after)  # the centroids moved
    assert torch.equal(after == 0, zeros)  # pruned weights stay zero
    assert torch.unique(after[after != 0]).numel() <= 15
    finalize_(model)
    assert isinstance(model[0].weight, nn.Parameter)


def test_state_dict_quantization_takes_importance_and_method() -> None:
    torch.manual_seed(1)
    tensors = {"fc.weight": torch.randn(64, 64)}
    importance = {"fc.weight": torch.ones(64, 64)}
    importance["fc.weight"][:8] = 100.0  # the first 8 rows matter most
    plain, _ = quantize_state_dict(tensors, QuantizeConfig(bits="fc=3"))
    weighted, _ = quantize_state_dict(tensors, QuantizeConfig(bits="fc=3"), importance=importance)
    error = lambda q: (q["fc.weight"] - tensors["fc.weight"])[:8].square().sum()  # noqa: E731
    assert error(weighted) < error(plain)
    _, report = quantize_state_dict(tensors, QuantizeConfig(bits="fc=6", method="ecsq", lagrangian=0.05))
    assert report.layers[0].clusters < 63  # ECSQ dropped the levels that did not pay for their bits


def test_estimate_importance_is_the_squared_gradient_sum() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2))
    batches = [torch.randn(5, 8) for _ in range(3)]

    def loss(network: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return network(batch).square().sum()

    importance = estimate_importance(model, batches, loss, max_batches=2)
    assert set(importance) == {"0.weight", "1.weight"}
    expected = torch.zeros(4, 8)
    for batch in batches[:2]:
        grad = torch.autograd.grad(loss(model, batch), model[0].weight)[0]
        expected += grad**2
    torch.testing.assert_close(importance["0.weight"], expected)
    with pytest.raises(InputError, match="no batches"):
        estimate_importance(model, [], loss)
    with pytest.raises(InputError, match="scalar"):
        estimate_importance(model, batches, lambda network, batch: network(batch))
