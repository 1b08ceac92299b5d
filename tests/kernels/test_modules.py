import pytest
import torch
import torch.nn.functional as F
from kernel_helpers import CONV_CASES, close, pruned_conv
from models import R3D18Like, any_model_rules, mlp
from torch import nn

from vidcompress import QuantizeConfig, finalize_, prune_, quantize_
from vidcompress.codec import encode
from vidcompress.errors import ConfigError
from vidcompress.kernels import (
    SparseConv,
    SparseLayout,
    SparseLinear,
    cuda_available,
    load_sparse,
)
from vidcompress.kernels.conv_plan import conv_plan
from vidcompress.kernels.cpu_numba import numba_available
from vidcompress.kernels.modules import PROBE_MARGIN


def _compressed(model: nn.Module, path, sparsity: str, bits: str) -> nn.Module:
    """Prune, quantize (bits rules of kinds the model may lack) and finalize `model`, encode it to `path`."""
    prune_(model, sparsity)
    quantize_(model, QuantizeConfig(bits=any_model_rules(bits, "bits")))
    finalize_(model)
    encode(model, path)
    return model


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_sparse_conv_matches_dense(dims: int) -> None:
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    conv = conv_type(4, 6, 3, stride=2, padding=1, bias=dims != 3)
    prune_(conv, "conv=0.7")
    x = torch.randn(2, 4, *([9] * dims))
    assert close(SparseConv.from_conv(conv)(x), conv(x))


@pytest.mark.parametrize("rows", [1, 2, None])  # output rows (first spatial axis) a slab; None: whole
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_sparse_conv_in_slabs_matches_dense(dims: int, rows: int | None, monkeypatch) -> None:
    import vidcompress.kernels.modules as modules

    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    conv = conv_type(3, 5, 3, stride=2, padding=2, dilation=2)
    prune_(conv, "conv=0.6")
    x = torch.randn(2, 3, *[11, 8, 7][:dims])  # 6 output rows: slabs of 2 leave none short, of 4 one
    # Patch bytes of one output row: 4 bytes x (3 channels x 3^dims taps) x batch 2 x the other axes' outputs.
    row_bytes = 4 * 3 * 3**dims * 2 * [1, 4, 16][dims - 1]
    monkeypatch.setattr(modules, "PATCH_BYTES", 1 << 30 if rows is None else rows * row_bytes)
    monkeypatch.setattr(modules, "numba_available", lambda: False)  # im2col: the path without numba (or on a GPU)
    sparse = SparseConv.from_conv(conv)
    slabs = []
    original = sparse._slab
    monkeypatch.setattr(sparse, "_slab", lambda piece: slabs.append(piece.shape) or original(piece))
    assert close(sparse(x), conv(x))
    assert len(slabs) == (1 if rows is None else -(-6 // rows))


@pytest.mark.skipif(not numba_available(), reason="numba not installed (vidcompress[cpu])")
@pytest.mark.parametrize(("dims", "kernel", "stride", "dilation", "padding", "mode", "size"), CONV_CASES)
def test_direct_convolution_matches_dense_and_im2col(dims, kernel, stride, dilation, padding, mode, size) -> None:
    conv = pruned_conv(dims, kernel, stride, dilation, padding, mode)
    x = torch.randn(2, 5, *size)
    direct, im2col = SparseConv.from_conv(conv), SparseConv.from_conv(conv, cache=True)
    calls = []
    im2col._slab = lambda piece: calls.append(piece.shape) or SparseConv._slab(im2col, piece)  # type: ignore[method-assign]
    direct._slab = lambda piece: pytest.fail("the direct kernel should have run")  # type: ignore[method-assign]
    expected = conv(x)
    assert close(direct(x), expected) and close(im2col(x), expected) and calls
    assert close(direct(x.double()), expected.double()) and direct(x.double()).dtype == torch.float64


def test_a_strided_plan_splits_the_input_into_phases() -> None:
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    plan = conv_plan(3, (5, 4), (3, 3), (1, 1), (2, 3))
    assert plan.phase == (3, 2) and plan.outputs == (2, 1)  # 5 / 2 and 4 / 3 rounded up; zeros past the end
    split = plan.split(x).reshape(2, 3, 2, 3, 3, 2)
    for i in range(5):
        for j in range(4):
            assert torch.equal(split[:, :, i % 2, j % 3, i // 2, j // 3], x[:, :, i, j])
    assert split[:, :, 1, :, 2, :].sum() == 0 and split[:, :, :, 1:, :, 1].sum() == 0
    # an axis with one tap takes every s-th element instead of splitting
    one_tap = conv_plan(3, (5, 4), (1, 3), (1, 1), (2, 2))
    assert one_tap.every == (2, 1) and one_tap.stride == (1, 2) and one_tap.outputs == (3, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_plan(3, (5, 4), (3, 5), (1, 1), (1, 1))


def test_sparse_linear_matches_dense_on_any_leading_shape() -> None:
    linear = nn.Linear(20, 7)
    prune_(linear, "fc=0.8")
    x = torch.randn(3, 5, 20)
    assert close(SparseLinear.from_linear(linear)(x), linear(x))


def test_grouped_convolutions_are_refused() -> None:
    with pytest.raises(ConfigError, match="grouped convolution"):
        SparseConv.from_conv(nn.Conv2d(4, 4, 3, groups=2))


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize(
    ("build", "make_input"), [(mlp, lambda: torch.randn(4, 64)), (R3D18Like, lambda: torch.randn(2, 3, 4, 16, 16))]
)
def test_load_sparse_matches_the_dense_model(tmp_path, build, make_input, cache: bool) -> None:
    model = _compressed(build(), tmp_path / "m.vcz", "0.9", "conv=8,fc=5")
    reference = build().eval()
    reference.load_state_dict(model.state_dict())
    sparse = load_sparse(tmp_path / "m.vcz", build(), cache=cache, mode="sparse").eval()
    swapped = [m for m in sparse.modules() if isinstance(m, SparseLinear | SparseConv)]
    assert swapped
    x = make_input()
    with torch.no_grad():
        assert close(sparse(x), reference(x))
        assert all((m._csr is not None) == cache for m in swapped)  # built on the first call, if asked
        assert close(sparse(x), reference(x))  # and the cached matrix gives the same answers
    for module in swapped:  # the layout is the module's buffers: in its state dict, moved by .to()
        assert {"row_pointers", "columns", "symbols", "codebook"} <= set(module.state_dict())
        assert module.layout.nonzeros == module.symbols.numel()
    with torch.no_grad():
        assert close(sparse.double().float()(x), reference(x))  # buffers cast back and forth


def test_layouts_built_from_the_container_equal_those_built_from_the_weights(tmp_path) -> None:
    from vidcompress.codec import read_container
    from vidcompress.codec.container import read_layers

    model = _compressed(R3D18Like(), tmp_path / "m.vcz", "0.8", "conv=6,fc=4")
    weights = model.state_dict()
    for entry, data, codebook in read_layers(read_container(tmp_path / "m.vcz")):
        built = SparseLayout.from_container(entry, data, codebook)
        assert torch.equal(built.to_dense(), weights[entry.name].reshape(built.shape))
        if len(entry.shape) == 2:
            flipped = SparseLayout.from_container(entry, data, codebook, transpose=True)
            assert torch.equal(flipped.to_dense(), weights[entry.name].T)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize(
    ("build", "make_input"), [(mlp, lambda: torch.randn(4, 64)), (R3D18Like, lambda: torch.randn(2, 3, 4, 16, 16))]
)
def test_load_sparse_on_the_gpu_matches_the_dense_model(tmp_path, build, make_input) -> None:
    model = _compressed(build(), tmp_path / "m.vcz", "0.9", "conv=8,fc=5")
    reference = build().eval().cuda()
    reference.load_state_dict(model.state_dict())
    sparse = load_sparse(tmp_path / "m.vcz", build(), device="cuda", mode="sparse").eval()
    assert any(choice.mode == "sparse" for choice in sparse.sparse_report_)
    x = make_input().cuda()
    with torch.no_grad():
        assert close(sparse(x), reference(x))
    probed = load_sparse(tmp_path / "m.vcz", build(), device="cuda").eval()  # the probe, on the GPU
    with torch.no_grad():
        assert close(probed(x), reference(x))


def test_auto_probes_whole_layers_on_the_example_input_and_keeps_unprobed_convolutions_dense(tmp_path) -> None:
    model = _compressed(R3D18Like(), tmp_path / "m.vcz", "0.9", "conv=8,fc=5")
    x = torch.randn(1, 3, 4, 16, 16)
    blind = load_sparse(tmp_path / "m.vcz", R3D18Like())
    convs = [c for c in blind.sparse_report_ if c.name != "fc.weight"]
    assert convs and all(c.mode == "dense" and "no example_inputs" in c.reason for c in convs)
    probed = load_sparse(tmp_path / "m.vcz", R3D18Like(), example_inputs=x)
    assert all(c.dense_ms is not None and c.sparse_ms is not None for c in probed.sparse_report_)
    assert all((c.mode == "sparse") == (c.sparse_ms <= (1 - PROBE_MARGIN) * c.dense_ms) for c in probed.sparse_report_)
    reference = R3D18Like().eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert close(probed.eval()(x), reference(x))


def test_probe_interleaves_the_two_forms_and_takes_medians(monkeypatch) -> None:
    import vidcompress.kernels.modules as modules

    now = [0.0]
    calls: list[str] = []
    # Seconds each call takes on a fake clock: a warm-up, then 7 timed calls with slow spells (7-9).
    durations = {"dense": [5, 1, 1, 9, 1, 1, 1, 7], "sparse": [2, 2, 8, 2, 2, 9, 2, 2]}

    def timed(name: str):
        def call() -> None:
            calls.append(name)
            now[0] += durations[name].pop(0)

        return call

    monkeypatch.setattr(modules.time, "perf_counter", lambda: now[0])
    dense_ms, sparse_ms = modules._compare_ms(timed("dense"), timed("sparse"), repeat=7)
    assert calls[:6] == ["dense", "sparse", "dense", "sparse", "sparse", "dense"]  # warm-ups, then alternating
    assert (dense_ms, sparse_ms) == (1e3, 2e3)  # medians: the slow spells do not count


def test_a_sparse_module_keeps_its_layout_until_its_buffers_change() -> None:
    # One layout per module (its host arrays made once), rebuilt after `.double()`/`.to()` replace buffers.
    linear = nn.Linear(30, 7)
    prune_(linear, "fc=0.6")
    quantize_(linear, QuantizeConfig(bits="fc=4"))
    finalize_(linear)
    sparse = SparseLinear.from_linear(linear)
    x = torch.randn(3, 30)
    first = sparse.layout
    assert sparse.layout is first and close(sparse(x), linear(x))
    sparse.double()
    assert sparse.layout is not first and sparse.layout.codebook.dtype == torch.float32
    assert close(sparse(x.double()).float(), linear(x))
    # values loaded in place (load_state_dict) reach the kernels, whatever the codebook's dtype
    bias = linear.bias.detach()
    for scale, dtype in ((2, torch.float32), (4, torch.float64)):
        sparse.to(dtype)
        sparse(x.to(dtype))
        state = {k: v * 2 if k == "codebook" else v for k, v in sparse.state_dict().items()}
        sparse.load_state_dict(state)
        assert close(sparse(x.to(dtype)).float() - bias, scale * (linear(x) - bias))


@pytest.mark.skipif(not numba_available(), reason="numba not installed (vidcompress[cpu])")
def test_direct_kernel_refuses_an_input_its_geometry_does_not_fit() -> None:
    # The compiled kernel reads without bounds checks: a mismatch must stop before it runs.
    from vidcompress.kernels.cpu_numba import conv_numba

    layout = SparseConv.from_conv(nn.Conv2d(4, 3, 3)).layout
    with pytest.raises(ValueError, match="does not fit"):
        conv_numba(layout, torch.zeros(1, 5, 6, 6), (3, 3), (1, 1))


@pytest.mark.skipif(not numba_available(), reason="numba not installed (vidcompress[cpu])")
def test_direct_convolution_on_random_geometries() -> None:
    # Strides, dilations, kernels and sizes drawn at random (sizes not multiples of the strides, kernels
    # as large as the input): the phase split and the tap table against torch's convolution.
    generator = torch.Generator().manual_seed(0)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    for _ in range(40):
        dims = draw(1, 3)
        kernel = tuple(draw(1, 4) for _ in range(dims))
        stride = tuple(draw(1, 3) for _ in range(dims))
        dilation = tuple(draw(1, 2) for _ in range(dims))
        size = tuple((k - 1) * g + 1 + draw(0, 6) for k, g in zip(kernel, dilation, strict=True))
        conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        conv = conv_type(2, 3, kernel, stride=stride, dilation=dilation, padding=draw(0, 1))
        prune_(conv, "conv=0.5")
        x = torch.randn(2, 2, *size, generator=generator)
        sparse = SparseConv.from_conv(conv)
        assert sparse._direct(F.pad(x, [conv.padding[0]] * 2 * dims)), (kernel, stride, dilation, size)
        assert close(sparse(x), conv(x)), (kernel, stride, dilation, size)


class SameConv2d(nn.Conv2d):
    """TensorFlow-style "same" padding (efficientnet_pytorch's Conv2dStaticSamePadding, timm's Conv2dSame):
    pads asymmetrically in forward, then convolves with padding 0."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.static_padding = nn.ZeroPad2d((0, 1, 0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SameConv3d(nn.Conv3d):
    def _conv_forward(self, x, weight, bias):  # the override is one level down: still not the stock layer
        return F.conv3d(F.pad(x, (0, 1, 0, 1, 0, 1)), weight, bias, self.stride, 0, self.dilation, self.groups)


class ScaledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


class OverriddenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.same = SameConv2d(8, 16, 3, stride=2)
        self.conv3d = SameConv3d(16, 16, 3, stride=2)
        self.stock = nn.Conv2d(16, 16, 3, padding=1)
        self.scaled = ScaledLinear(16, 12)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.same(x)  # (N, 16, 8, 8)
        y = self.conv3d(x.unsqueeze(2).repeat(1, 1, 4, 1, 1)).mean(2)  # (N, 16, 4, 4)
        y = self.stock(y).mean((2, 3))
        return self.fc(torch.relu(self.scaled(y)))


@pytest.mark.parametrize("mode", ["sparse", "auto"])
@pytest.mark.parametrize("with_input", [True, False])
def test_layers_whose_class_overrides_forward_stay_dense_and_say_why(tmp_path, mode: str, with_input: bool) -> None:
    # The swap of a subclass would run the stock convolution (the parent's padding) and change the output.
    model = _compressed(OverriddenNet(), tmp_path / "m.vcz", "0.95", "conv=8,fc=8")
    reference = OverriddenNet().eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 8, 16, 16)
    loaded = load_sparse(tmp_path / "m.vcz", OverriddenNet(), mode=mode, example_inputs=x if with_input else None)
    report = {choice.name: choice for choice in loaded.sparse_report_}
    for weight, why in (
        ("same.weight", "SameConv2d overrides Conv2d.forward"),
        ("conv3d.weight", "SameConv3d overrides Conv3d._conv_forward"),
        ("scaled.weight", "ScaledLinear overrides Linear.forward"),
    ):
        assert report[weight].mode == "dense" and why in report[weight].reason
    for name in ("same", "conv3d", "scaled"):
        assert type(loaded.get_submodule(name)) is type(reference.get_submodule(name))
    if mode == "sparse":
        assert report["stock.weight"].mode == "sparse" and report["fc.weight"].mode == "sparse"
        assert isinstance(loaded.stock, SparseConv) and isinstance(loaded.fc, SparseLinear)
    assert "SameConv2d overrides" in loaded.sparse_report_.to_markdown()
    with torch.no_grad():
        assert close(loaded.eval()(x), reference(x), rel=1e-5)


def test_every_swap_is_verified_and_a_stand_in_that_differs_stays_dense(tmp_path, monkeypatch) -> None:
    model = _compressed(OverriddenNet(), tmp_path / "m.vcz", "0.9", "conv=8,fc=8")
    reference = OverriddenNet().eval()
    reference.load_state_dict(model.state_dict())
    original = SparseLinear.forward
    # A stand-in that is off by 1% of its output: the check must catch it, with or without an example input.
    monkeypatch.setattr(SparseLinear, "forward", lambda self, x: original(self, x) * 1.01)
    x = torch.randn(2, 8, 16, 16)
    for example in (x, None):
        loaded = load_sparse(tmp_path / "m.vcz", OverriddenNet(), mode="sparse", example_inputs=example)
        fc = {choice.name: choice for choice in loaded.sparse_report_}["fc.weight"]
        assert fc.mode == "dense" and "differs from dense by 1.0e-02 of its scale" in fc.reason
        assert type(loaded.fc) is nn.Linear
        with torch.no_grad():
            assert close(loaded.eval()(x), reference(x))


def test_a_layer_with_forward_hooks_stays_dense(tmp_path) -> None:
    _compressed(mlp(), tmp_path / "m.vcz", "0.9", "fc=5")
    model = mlp()
    first = next(name for name, module in model.named_modules() if isinstance(module, nn.Linear))
    seen = []
    model.get_submodule(first).register_forward_hook(lambda module, args, out: seen.append(out.shape))
    loaded = load_sparse(tmp_path / "m.vcz", model, mode="sparse")
    choice = {c.name: c for c in loaded.sparse_report_}[f"{first}.weight"]
    assert choice.mode == "dense" and "forward hooks" in choice.reason
    with torch.no_grad():
        loaded(torch.randn(3, 64))
    assert seen == [torch.Size([3, next(iter(loaded.get_submodule(first).parameters())).shape[0]])]


def test_the_report_names_each_sparse_layers_kernel(tmp_path) -> None:
    _compressed(R3D18Like(), tmp_path / "m.vcz", "0.9", "conv=8,fc=5")
    loaded = load_sparse(tmp_path / "m.vcz", R3D18Like(), mode="sparse")
    kernels = [c.reason for c in loaded.sparse_report_ if c.mode == "sparse"]
    expected = "numba" if numba_available() else "numba missing"
    assert kernels and all("kernel: " in reason and expected in reason for reason in kernels)
