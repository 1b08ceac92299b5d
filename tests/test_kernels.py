import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from models import R3D18Like, any_model_rules, mlp
from torch import nn

from vidcompress import QuantizeConfig, finalize_, prune_, quantize_
from vidcompress.codec import encode
from vidcompress.errors import ConfigError, InputError
from vidcompress.kernels import (
    RelativeLayout,
    SparseConv,
    SparseLayout,
    SparseLinear,
    cuda_available,
    load_sparse,
    spmm_cpu,
)
from vidcompress.kernels.cuda import SOURCE, spmm_cuda


def _quantized(shape, sparsity=0.9, levels=255, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(levels, generator=generator)
    weight = codebook[torch.randint(0, levels, shape, generator=generator)]
    return torch.where(torch.rand(shape, generator=generator) < sparsity, torch.zeros(()), weight)


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> bool:
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max()) <= rel * max(float(expected.abs().max()), 1e-12)


def test_layout_bytes_per_nonzero_and_round_trip() -> None:
    weight = _quantized((64, 300))
    layout = SparseLayout.from_dense(weight)
    assert layout.bytes_per_nonzero == 3
    assert layout.nonzeros == int((weight != 0).sum())
    assert layout.size_bytes == 3 * layout.nonzeros + 4 * 65 + 4 * layout.codebook.numel()
    assert torch.equal(layout.to_dense(), weight)


def test_wide_matrices_and_many_levels_use_wider_fields() -> None:
    wide = torch.zeros(2, 70_000)
    wide[0, 69_999], wide[1, 3] = 1.5, -2.0
    layout = SparseLayout.from_dense(wide)
    assert layout.columns.dtype == torch.int32 and torch.equal(layout.to_dense(), wide)
    many = _quantized((40, 500), sparsity=0.0, levels=1000)
    layout = SparseLayout.from_dense(many)
    assert layout.symbols.dtype == torch.int16 and layout.bytes_per_nonzero == 4
    assert torch.equal(layout.to_dense(), many)
    high = torch.zeros(1, 40_000)
    high[0, 40_000 - 1] = 3.0  # a column index above 32767 survives the uint16-in-int16 storage
    assert torch.equal(SparseLayout.from_dense(high).to_dense(), high)


@pytest.mark.parametrize("batch", [1, 8])
def test_cpu_path_matches_dense(batch: int) -> None:
    weight = _quantized((128, 257))
    x = torch.randn(257, batch)
    result = spmm_cpu(SparseLayout.from_dense(weight), x if batch > 1 else x[:, 0])
    expected = weight @ x if batch > 1 else weight @ x[:, 0]
    assert result.shape == expected.shape and _close(result, expected)


def _assert_same_layout(actual: SparseLayout, expected: SparseLayout) -> None:
    assert actual.shape == expected.shape
    for field in ("row_pointers", "columns", "symbols", "codebook"):
        assert torch.equal(getattr(actual, field), getattr(expected, field)), field


@pytest.mark.parametrize(
    ("shape", "sparsity"),
    [((64, 300), 0.9), ((7, 5), 0.0), ((3, 2000), 0.999), ((33, 1), 0.5), ((5, 70_000), 0.9995), ((1, 1), 1.0)],
)
def test_relative_layout_decodes_to_the_csr_layout_bit_for_bit(shape, sparsity) -> None:
    csr = SparseLayout.from_dense(_quantized(shape, sparsity=sparsity))
    relative = RelativeLayout.from_csr(csr)
    _assert_same_layout(relative.to_csr(), csr)
    assert relative.group_pointers.numel() == shape[0] + 1
    assert relative.entries.numel() % 8 == 0 and relative.entries.numel() == 8 * int(relative.group_pointers[-1])


def test_relative_layout_fillers_padding_and_empty_rows() -> None:
    weight = torch.zeros(4, 1000)
    weight[0, 0], weight[0, 255], weight[0, 256] = 1.0, 2.0, 3.0  # deltas 1, 255, 1
    weight[2, 999] = -1.0  # gap of 1000 columns: three fillers of 255, then delta 235
    relative = RelativeLayout.from_dense(weight)
    entries = relative.entries.numpy().view("uint16")
    deltas, symbols = entries & 0xFF, entries >> 8
    assert relative.group_pointers.tolist() == [0, 1, 1, 2, 2]  # rows 1 and 3 hold nothing
    assert deltas[:8].tolist() == [1, 255, 1, 0, 0, 0, 0, 0] and (symbols[:3] > 0).all() and not symbols[3:8].any()
    assert deltas[8:].tolist() == [255, 255, 255, 235, 0, 0, 0, 0] and symbols[8:11].tolist() == [0, 0, 0]
    assert symbols[11] > 0 and not symbols[12:].any()
    assert torch.equal(relative.to_csr().to_dense(), weight)
    assert relative.bytes_per_nonzero == 2 * 16 / 4


@pytest.mark.parametrize("batch", [1, 8])
def test_relative_cpu_path_gives_the_csr_paths_bits(batch: int) -> None:
    weight = _quantized((96, 700), sparsity=0.95)
    csr = SparseLayout.from_dense(weight)
    x = torch.randn(700, batch)
    operand = x[:, 0] if batch == 1 else x
    assert torch.equal(spmm_cpu(RelativeLayout.from_csr(csr), operand), spmm_cpu(csr, operand))
    assert _close(spmm_cpu(RelativeLayout.from_csr(csr), operand), weight @ operand)


def test_relative_layout_refuses_wide_codebooks() -> None:
    with pytest.raises(InputError, match="257 codebook entries"):
        RelativeLayout.from_dense(_quantized((8, 600), sparsity=0.0, levels=256))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_sparse_conv_matches_dense(dims: int) -> None:
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    conv = conv_type(4, 6, 3, stride=2, padding=1, bias=dims != 3)
    prune_(conv, "conv=0.7")
    x = torch.randn(2, 4, *([9] * dims))
    assert _close(SparseConv.from_conv(conv)(x), conv(x))


def test_sparse_linear_matches_dense_on_any_leading_shape() -> None:
    linear = nn.Linear(20, 7)
    prune_(linear, "fc=0.8")
    x = torch.randn(3, 5, 20)
    assert _close(SparseLinear.from_linear(linear)(x), linear(x))


def test_grouped_convolutions_are_refused() -> None:
    with pytest.raises(ConfigError, match="grouped convolution"):
        SparseConv.from_conv(nn.Conv2d(4, 4, 3, groups=2))


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize(
    ("build", "make_input"), [(mlp, lambda: torch.randn(4, 64)), (R3D18Like, lambda: torch.randn(2, 3, 4, 16, 16))]
)
def test_load_sparse_matches_the_dense_model(tmp_path, build, make_input, cache: bool) -> None:
    model = build()
    prune_(model, "0.9")
    quantize_(model, QuantizeConfig(bits=any_model_rules("conv=8,fc=5", "bits")))
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    reference = build().eval()
    reference.load_state_dict(model.state_dict())
    sparse = load_sparse(tmp_path / "m.vcz", build(), cache=cache, mode="sparse").eval()
    swapped = [m for m in sparse.modules() if isinstance(m, SparseLinear | SparseConv)]
    assert swapped
    x = make_input()
    with torch.no_grad():
        assert _close(sparse(x), reference(x))
        assert all((m._csr is not None) == cache for m in swapped)  # built on the first call, if asked
        assert _close(sparse(x), reference(x))  # and the cached matrix gives the same answers
    for module in swapped:  # the layout is the module's buffers: in its state dict, moved by .to()
        assert {"row_pointers", "columns", "symbols", "codebook"} <= set(module.state_dict())
        assert module.layout.nonzeros == module.symbols.numel()
    with torch.no_grad():
        assert _close(sparse.double().float()(x), reference(x))  # buffers cast back and forth


def test_layouts_built_from_the_container_equal_those_built_from_the_weights(tmp_path) -> None:
    from vidcompress.codec import read_container
    from vidcompress.codec.container import read_layers

    model = R3D18Like()
    prune_(model, "0.8")
    quantize_(model, QuantizeConfig(bits=any_model_rules("conv=6,fc=4", "bits")))
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    weights = model.state_dict()
    for entry, data, codebook in read_layers(read_container(tmp_path / "m.vcz")):
        built = SparseLayout.from_container(entry, data, codebook)
        assert torch.equal(built.to_dense(), weights[entry.name].reshape(built.shape))
        if len(entry.shape) == 2:
            flipped = SparseLayout.from_container(entry, data, codebook, transpose=True)
            assert torch.equal(flipped.to_dense(), weights[entry.name].T)


def test_cuda_path_without_a_gpu_is_a_clear_error() -> None:
    layout = SparseLayout.from_dense(_quantized((4, 4)))
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="CUDA"):
        spmm_cuda(layout, torch.randn(4))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_sources_compile_with_nvcc(tmp_path: Path) -> None:
    result = subprocess.run(
        ["nvcc", "-ptx", "-arch=sm_80", "-o", str(tmp_path / "spmv.ptx"), str(SOURCE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "spmv.ptx").read_text()
    for name in ("spmv_u16_u8", "spmm_u16_u8", "spmv_i32_u16", "spmm_i32_u16", "spmv_rel", "spmm_rel"):
        assert f".entry {name}" in ptx


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 3, 8, 16])
@pytest.mark.parametrize("shape", [(4096, 9216), (512, 13824), (101, 512)])
@pytest.mark.parametrize("relative", [False, True])
def test_cuda_path_matches_dense(batch: int, shape, relative: bool) -> None:
    weight = _quantized(shape)
    layout = SparseLayout.from_dense(weight)
    device_layout = (RelativeLayout.from_csr(layout) if relative else layout).to("cuda")
    x = torch.randn(shape[1], batch, device="cuda")
    expected = weight.cuda() @ x
    result = spmm_cuda(device_layout, x[:, 0] if batch == 1 else x)
    assert _close(result.reshape(expected.shape), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize(
    ("shape", "sparsity"), [((5, 70_000), 0.9995), ((3, 2000), 0.999), ((33, 1), 0.5), ((40, 17), 1.0), ((8, 9), 0.0)]
)
def test_cuda_odd_shapes_empty_rows_and_wide_columns(shape, sparsity, relative: bool) -> None:
    weight = _quantized(shape, sparsity=sparsity)
    layout = SparseLayout.from_dense(weight)
    device_layout = (RelativeLayout.from_csr(layout) if relative else layout).to("cuda")
    for batch in (1, 5, 11):
        x = torch.randn(shape[1], batch, device="cuda")
        result = spmm_cuda(device_layout, x[:, 0] if batch == 1 else x).reshape(shape[0], batch)
        assert _close(result, weight.cuda() @ x)


def test_short_matrices_share_rows_between_warps() -> None:
    from vidcompress.kernels.cuda import warps_per_row

    assert warps_per_row(4096, 4096 * 920) == 2  # AlexNet fc6 at 0.9: two warps fill the GPU
    assert warps_per_row(512, 512 * 1382) == 8
    assert warps_per_row(128, 128 * 100) == 1  # too few nonzeros a row to split
    assert warps_per_row(20_000, 20_000 * 5000) == 1
    assert warps_per_row(0, 0) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize(
    ("build", "make_input"), [(mlp, lambda: torch.randn(4, 64)), (R3D18Like, lambda: torch.randn(2, 3, 4, 16, 16))]
)
def test_load_sparse_on_the_gpu_matches_the_dense_model(tmp_path, build, make_input) -> None:
    model = build()
    prune_(model, "0.9")
    quantize_(model, QuantizeConfig(bits=any_model_rules("conv=8,fc=5", "bits")))
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    reference = build().eval().cuda()
    reference.load_state_dict(model.state_dict())
    sparse = load_sparse(tmp_path / "m.vcz", build(), device="cuda", mode="sparse").eval()
    assert any(choice.mode == "sparse" for choice in sparse.sparse_report_)
    x = make_input().cuda()
    with torch.no_grad():
        assert _close(sparse(x), reference(x))
    probed = load_sparse(tmp_path / "m.vcz", build(), device="cuda").eval()  # the probe, on the GPU
    with torch.no_grad():
        assert _close(probed(x), reference(x))
