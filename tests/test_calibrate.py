"""Calibrated compression: H from the hooks, the SparseGPT / GPTQ solvers against brute force, and
`calibrate_` / `recalibrate_bn_` on whole models, including the ways they must refuse."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from vidcompress.calibrate import CalibrateConfig, calibrate_, recalibrate_bn_
from vidcompress.calibrate.solvers import Levels, block_counts, inverse_factor, output_error, solve
from vidcompress.calibrate.stats import Collector, Source, default_forward, input_sources, matrix_view, run_batches
from vidcompress.codec import encode, load_compressed
from vidcompress.errors import ConfigError, InputError


def _hooked_hessian(
    module: nn.Module, x: torch.Tensor, *, model: nn.Module | None = None, attribute: str = "weight"
) -> torch.Tensor:
    """H of `module.<attribute>` as the hooks collect it while `model` (default: the module) runs on x."""
    model = module if model is None else model
    source = input_sources(model, module, attribute)
    assert isinstance(source, Source)
    shape = matrix_view(module, attribute, getattr(module, attribute).detach()).shape
    collector = Collector({"layer": [source]}, {"layer": (shape[0], shape[2])})
    collector.open()
    try:
        collector.start_batch()
        run_batches(model, [x], default_forward)
    finally:
        collector.close()
    assert not any(m._forward_pre_hooks for m in model.modules())  # removed
    return collector.stats["layer"].hessian


def _explicit_columns(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> list[torch.Tensor]:
    """im2col through torch's own convolution: an identity kernel per (channel, tap) of one group."""
    per_group, taps = conv.in_channels // conv.groups, math.prod(conv.kernel_size)
    width = per_group * taps
    eye = torch.eye(width, dtype=torch.float64).reshape(width, per_group, *conv.kernel_size)
    probe = type(conv)(
        conv.in_channels, width * conv.groups, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=False, padding_mode=conv.padding_mode,
    ).double()  # fmt: skip
    with torch.no_grad():
        probe.weight.copy_(eye.repeat(conv.groups, *[1] * (eye.ndim - 1)))
        out = probe(x.double())  # (N, groups * width, positions...)
    out = out.reshape(out.shape[0], conv.groups, width, -1)
    return [out[:, g].permute(0, 2, 1).reshape(-1, width) for g in range(conv.groups)]


CONVS = {
    "conv1d stride dilation": lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2),
    "conv1d groups same": lambda: nn.Conv1d(4, 6, 3, padding="same", groups=2),
    "conv2d reflect groups": lambda: nn.Conv2d(
        6, 4, (3, 2), stride=(1, 2), padding=1, groups=2, padding_mode="reflect"
    ),
    "conv2d depthwise dilated": lambda: nn.Conv2d(3, 3, 3, padding=2, dilation=2, groups=3),
    "conv3d": lambda: nn.Conv3d(2, 4, (3, 3, 1), stride=(2, 1, 1), padding=(1, 0, 0)),
    "conv3d groups circular": lambda: nn.Conv3d(
        4, 4, 2, dilation=(1, 2, 1), groups=2, padding=1, padding_mode="circular"
    ),
}
SHAPES = {1: (2, 4, 11), 2: (2, 6, 7, 8), 3: (2, 4, 5, 6, 5)}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv_hessian_equals_explicit_im2col(name: str) -> None:
    torch.manual_seed(0)
    conv = CONVS[name]()
    batch, _, *sizes = SHAPES[len(conv.kernel_size)]
    x = torch.randn(batch, conv.in_channels, *sizes)
    hooked = _hooked_hessian(conv, x)
    explicit = torch.stack([cols.T @ cols for cols in _explicit_columns(conv, x)])
    assert hooked.shape == explicit.shape == (conv.groups, conv.weight[0].numel(), conv.weight[0].numel())
    assert torch.allclose(hooked, explicit, rtol=1e-5, atol=1e-4)
    # the weight's matrix view is the one H belongs to: ||conv(x) - bias||^2 = sum_g tr(W_g H_g W_g^T)
    with torch.no_grad():
        out = conv(x) - (conv.bias.view(1, -1, *[1] * len(conv.kernel_size)) if conv.bias is not None else 0)
    w = matrix_view(conv, "weight", conv.weight.detach().double())
    energy = sum(float(torch.trace(w[g] @ hooked[g] @ w[g].T)) for g in range(conv.groups))
    assert energy == pytest.approx(float(out.double().pow(2).sum()), rel=1e-5)


class Conv1D(nn.Module):
    """Hugging Face's Conv1D (GPT-2): y = x @ W + b with W stored (in, out)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


@pytest.mark.parametrize("layer", [nn.Linear(5, 3), Conv1D(3, 5)], ids=["linear", "hf_conv1d"])
def test_linear_hessian_spans_every_leading_dimension(layer: nn.Module) -> None:
    x = torch.randn(2, 7, 5)
    flat = x.reshape(-1, 5).double()
    assert torch.allclose(_hooked_hessian(layer, x)[0], flat.T @ flat, rtol=1e-5, atol=1e-5)


def _brute_force(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, block: int, levels=None):
    """Optimal brain surgeon one weight column at a time with explicit inverses: column j's change moves
    the columns not yet walked (j included) by the optimal update for H restricted to them."""
    w = weight.clone()
    rows, cols = w.shape
    h = hessian + 0.01 * torch.diagonal(hessian).mean() * torch.eye(cols, dtype=torch.float64)
    mask = torch.zeros_like(w, dtype=torch.bool)
    counts = block_counts(rows, cols, sparsity, block) if sparsity else None
    for b, start in enumerate(range(0, cols, block)):
        end = min(start + block, cols)
        if counts:
            saliency = torch.stack(
                [w[:, j] ** 2 * torch.linalg.inv(h[j:, j:])[0, 0] ** -1 for j in range(start, end)], dim=1
            )
            order = torch.argsort(saliency.reshape(-1), stable=True)[: counts[b]]
            block_mask = torch.zeros(rows * (end - start), dtype=torch.bool)
            block_mask[order] = True
            mask[:, start:end] = block_mask.view(rows, end - start)
        for j in range(start, end):
            inverse = torch.linalg.inv(h[j:, j:])
            q = w[:, j].clone() if levels is None else levels.round(w[:, j])
            q[mask[:, j]] = 0
            w[:, j:] -= ((w[:, j] - q) / inverse[0, 0]).unsqueeze(1) * inverse[0].unsqueeze(0)
            w[:, j] = q
    return w, mask


@pytest.mark.parametrize("block", [4, 16])
def test_pruning_solver_equals_brute_force_obs(block: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 12, dtype=torch.float64)
    x = torch.randn(40, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)  # correlated inputs
    h = x.T @ x
    ours, mask = solve(w, inverse_factor(h), sparsity=0.5, block=block)
    expected, expected_mask = _brute_force(w, h, 0.5, block)
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(ours, expected, atol=1e-9)
    assert int((ours == 0).sum()) == 36  # exactly half
    # and it beats magnitude pruning's output error by a wide margin on correlated inputs
    magnitude = w * (w.abs() > w.abs().flatten().kthvalue(36).values)
    assert output_error(w[None], ours[None], h[None])[0] < 0.7 * output_error(w[None], magnitude[None], h[None])[0]


def test_quantization_solver_equals_brute_force_and_keeps_zeros() -> None:
    torch.manual_seed(1)
    w = torch.randn(5, 10, dtype=torch.float64)
    w[w.abs() < 0.3] = 0.0
    x = torch.randn(30, 10, dtype=torch.float64) @ torch.randn(10, 10, dtype=torch.float64)
    h = x.T @ x
    levels = Levels(torch.tensor([-1.5, -0.5, 0.5, 1.5], dtype=torch.float64))
    ours, _ = solve(w, inverse_factor(h), levels=levels, keep_zero=w == 0, block=3)
    mask = w == 0
    expected = w.clone()
    hd = h + 0.01 * torch.diagonal(h).mean() * torch.eye(10, dtype=torch.float64)
    for j in range(10):
        inverse = torch.linalg.inv(hd[j:, j:])
        q = levels.round(expected[:, j])
        q[mask[:, j]] = 0
        expected[:, j:] -= ((expected[:, j] - q) / inverse[0, 0]).unsqueeze(1) * inverse[0].unsqueeze(0)
        expected[:, j] = q
    assert torch.allclose(ours, expected, atol=1e-9)
    assert torch.equal(ours == 0, mask)  # zero stays zero, nothing else becomes zero
    assert set(ours[ours != 0].tolist()) <= {-1.5, -0.5, 0.5, 1.5}


def test_singular_hessian_is_dampened_and_reported() -> None:
    h = torch.zeros(4, 4, dtype=torch.float64)
    h[0, 0] = 1.0
    factor = inverse_factor(h, dampening=1e-3)
    assert factor.dampening == 1e-3  # positive definite once damped
    x = torch.randn(3, 50, dtype=torch.float64)  # 3 columns of calibration for a width of 50
    factor = inverse_factor(x.T @ x, dampening=1e-30)
    assert factor.dampening > 1e-30 and factor.retries >= 1
    with pytest.raises(InputError, match="all zero"):
        inverse_factor(torch.zeros(3, 3, dtype=torch.float64), name="conv9")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(8, 12, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(48, 5),
    ).eval()  # fmt: skip


def _inputs(n: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return [torch.randn(4, 3, 10, 10, generator=generator) for _ in range(n)]


def test_calibrate_compresses_selected_layers_and_leaves_the_rest_bit_identical(tmp_path) -> None:
    model = _cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = calibrate_(model, _inputs(), sparsity="conv=0.5,fc=0.5,3.weight=off", bits="conv=4,fc=5")
    by_name = {layer.name: layer for layer in report.layers}
    assert set(by_name) == {"0.weight", "3.weight", "5.weight", "9.weight"}
    assert by_name["3.weight"].sparsity == 0.0 and by_name["0.weight"].sparsity == pytest.approx(0.5, abs=1e-3)
    assert not model.training  # its mode restored
    after = model.state_dict()
    for key, value in after.items():
        if key in by_name:
            assert torch.unique(value[value != 0]).numel() <= (1 << by_name[key].bits) - 1
        else:
            assert torch.equal(value, before[key]), key
    assert 0 < by_name["5.weight"].error < 1 and by_name["0.weight"].dampening == 0.01
    assert "output error" in report.to_markdown()
    # encode stores exactly these weights
    encode(model, tmp_path / "m.vcz")
    loaded = load_compressed(tmp_path / "m.vcz", _cnn())
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, after[key]), key


def test_calibrated_beats_magnitude_on_the_model_output() -> None:
    x = _inputs(4)
    reference = _cnn()
    with torch.no_grad():
        target = torch.cat([reference(b) for b in x])
    errors = {}
    for method in ("magnitude", "sparsegpt"):
        model = _cnn()
        calibrate_(model, x, sparsity="conv=0.6,fc=0.6", bits="conv=4,fc=4", method=method)
        with torch.no_grad():
            errors[method] = float((torch.cat([model(b) for b in x]) - target).pow(2).sum() / target.pow(2).sum())
    assert errors["sparsegpt"] < 0.5 * errors["magnitude"], errors


def test_calibrate_is_deterministic_and_sequential_differs_from_one_pass() -> None:
    results = []
    for sequential in (True, True, False):
        model = _cnn()
        config = CalibrateConfig(sparsity="conv=0.5,fc=0.5", bits="conv=4,fc=4", sequential=sequential)
        report = calibrate_(model, _inputs(), config)
        results.append((model.state_dict(), report.passes))
    assert all(torch.equal(results[0][0][k], results[1][0][k]) for k in results[0][0])
    assert results[0][1] == 5 and results[2][1] == 2  # a survey pass, then a pass per layer or one for all
    assert not torch.equal(results[0][0]["9.weight"], results[2][0]["9.weight"])


class _Branches(nn.Module):
    """Two layers on the very same input tensor, then one on their sum."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.a(x) + self.b(x))


def test_layers_on_one_input_share_a_pass() -> None:
    report = calibrate_(_Branches(), [torch.randn(8, 6)], sparsity="fc=0.5", bits="fc=off")
    assert report.passes == 1 + 2  # survey, {a, b}, {c}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        ([], "empty"),
        ([torch.randn(2, 3, 10, 10), torch.randn(2, 4, 10, 10)], "calibration batch 1 does not fit the model"),
        (5, "expected an iterable"),
    ],
    ids=["empty", "wrong shape", "not iterable"],
)
def test_bad_inputs_are_clear_errors_and_leave_the_model(inputs, match) -> None:
    model = _cnn()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(InputError, match=match):
        calibrate_(model, inputs, sparsity="conv=0.5,fc=0.5", bits="conv=4,fc=4")
    assert _unchanged(model, before)
    assert not any(m._forward_pre_hooks for m in model.modules())


class _Skipping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_a_layer_that_never_runs_is_named() -> None:
    model = _Skipping()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(InputError, match=r"unused\.weight: never ran during calibration"):
        calibrate_(model, [torch.randn(3, 4)], sparsity="fc=0.5", bits="fc=4")
    assert _unchanged(model, before)


def test_a_failure_after_some_layers_were_solved_restores_them() -> None:
    model = _cnn()
    before = copy.deepcopy(model.state_dict())
    batches = _inputs(2)

    def forward(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        if m[0].weight.eq(0).any():  # the first layer is solved: fail on the next pass
            raise InputError("stopped on purpose")
        return m(batch)

    with pytest.raises(InputError, match="on purpose"):
        calibrate_(model, batches, sparsity="conv=0.5,fc=0.5", bits="conv=4,fc=4", forward=forward)
    assert _unchanged(model, before)


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.head = nn.GRU(4, 6, batch_first=True), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_weights_the_hooks_cannot_see_are_refused_by_name_or_taken_data_free_when_asked() -> None:
    model = _Recurrent()
    before = copy.deepcopy(model.state_dict())
    x = [torch.randn(2, 5, 4)]
    with pytest.raises(ConfigError, match=r"rnn\.weight_ih_l0: a GRU weight"):
        calibrate_(model, x, sparsity="fc=0.5", bits="fc=4")
    assert _unchanged(model, before)
    report = calibrate_(model, x, CalibrateConfig(sparsity="fc=0.5", bits="fc=4", unseen="magnitude"))
    solvers = {layer.name: layer.solver for layer in report.layers}
    assert solvers == {"rnn.weight_ih_l0": "magnitude", "rnn.weight_hh_l0": "magnitude", "head.weight": "sparsegpt"}
    assert "| rnn.weight_ih_l0 | fc | magnitude |" in report.to_markdown()
    with pytest.raises(ConfigError, match="give either a config or"):
        calibrate_(_cnn(), _inputs(), CalibrateConfig(), bits="conv=4")


class _Attention(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_hessians_are_those_of_its_projections_inputs(batch_first: bool) -> None:
    """in_proj's three groups see the query, key and value; out_proj sees the attention's output before it."""
    torch.manual_seed(0)
    model = _Attention(batch_first).eval()
    x = torch.randn(3, 5, 8)
    for name, attribute, module in (
        ("in", "in_proj_weight", model.attention), ("out", "weight", model.attention.out_proj),
    ):  # fmt: skip
        source = input_sources(model, module, attribute)
        assert isinstance(source, Source) and source.hook is model.attention
        hessian = _hooked_hessian(module, x, model=model, attribute=attribute)
        if name == "in":
            flat = x.reshape(-1, 8).double()
            assert torch.allclose(hessian, (flat.T @ flat).expand(3, 8, 8), atol=1e-4)
        else:
            with torch.no_grad():  # out = before @ W^T + b: solve for what the projection was given
                out = (model(x) - model.attention.out_proj.bias).reshape(-1, 8).double()
            flat = torch.linalg.solve(model.attention.out_proj.weight.detach().double(), out.T).T
            assert torch.allclose(hessian[0], flat.T @ flat, rtol=1e-4, atol=1e-4)


def test_config_round_trip_and_bad_values() -> None:
    config = CalibrateConfig(sparsity="conv=0.5", bits="conv=4", method="magnitude", dampening=0.1)
    assert CalibrateConfig.from_dict(config.to_dict()) == config
    for bad in ({"method": "obc"}, {"dampening": 0}, {"block": 0}, {"quantizer": "lloyd"}, {"sequential": 1}):
        with pytest.raises(ConfigError):
            CalibrateConfig(**bad)  # type: ignore[arg-type]


def test_recalibrate_bn_matches_the_batch_statistics() -> None:
    model = _cnn()
    x = _inputs(3)
    calibrate_(model, x, sparsity="conv=0.5,fc=0.5", bits="conv=4,fc=4")
    assert recalibrate_bn_(model, x) == 1
    with torch.no_grad():
        features = torch.cat([model[0](b) for b in x])  # the BatchNorm's inputs
    mean = features.mean(dim=(0, 2, 3))
    norm = model[1]
    assert torch.allclose(norm.running_mean, mean, atol=1e-5)
    # a cumulative average of per-batch unbiased variances (each batch holds 4 * 10 * 10 values)
    per_batch = torch.stack([model[0](b).detach().var(dim=(0, 2, 3), unbiased=True) for b in x]).mean(0)
    assert torch.allclose(norm.running_var, per_batch, atol=1e-5)
    assert norm.momentum == 0.1 and not model.training
    with pytest.raises(InputError, match="no BatchNorm"):
        recalibrate_bn_(nn.Linear(2, 2), [torch.randn(1, 2)])


def _kl(student: nn.Module, teacher: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        s = torch.cat([torch.log_softmax(student(b), 1) for b in batches])
        t = torch.cat([torch.log_softmax(teacher(b), 1) for b in batches])
    return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean"))


def _compressed_pair() -> tuple[nn.Module, nn.Module, list[torch.Tensor]]:
    teacher, student = _cnn(), _cnn()
    x = _inputs(3)
    calibrate_(student, x, sparsity="conv=0.7,fc=0.7", bits="conv=3,fc=3")
    return student, teacher, x


@pytest.mark.slow
def test_distill_lowers_the_kl_and_keeps_zeros_and_levels() -> None:
    from vidcompress import distill_

    student, teacher, x = _compressed_pair()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    start = _kl(student, teacher, x)
    report = distill_(student, teacher, x, steps=30, lr=3e-3, augment=lambda b, g: b.flip(-1), seed=1)
    assert _kl(student, teacher, x) < 0.8 * start
    assert set(report.shared_layers) == {"0.weight", "3.weight", "5.weight", "9.weight"} and len(report.losses) == 30
    after = student.state_dict()
    assert set(after) == set(before)  # baked: no parametrization left
    for name in report.shared_layers:
        assert torch.equal(after[name] == 0, before[name] == 0)
        assert torch.unique(after[name][after[name] != 0]).numel() <= 7
    assert torch.equal(after["1.running_mean"], before["1.running_mean"])  # statistics stay fixed
    assert not torch.equal(after["0.weight"], before["0.weight"])  # the centroids moved


def test_distill_resumes_from_its_checkpoint_to_the_same_weights(tmp_path) -> None:
    from vidcompress import distill_

    straight, teacher, x = _compressed_pair()
    distill_(straight, teacher, x, steps=6, lr=1e-3)
    stopped, _, _ = _compressed_pair()
    path = tmp_path / "distill.pt"
    distill_(stopped, teacher, x, steps=3, lr=1e-3, checkpoint=path, checkpoint_every=3)
    resumed, _, _ = _compressed_pair()
    report = distill_(resumed, teacher, x, steps=6, lr=1e-3, checkpoint=path, checkpoint_every=3)
    assert len(report.losses) == 3 and report.steps == 6
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a distillation checkpoint"):
        distill_(_compressed_pair()[0], teacher, x, steps=2, checkpoint=tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="steps 0"):
        distill_(_compressed_pair()[0], teacher, x, steps=0)
