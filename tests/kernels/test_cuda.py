import dataclasses
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from kernel_helpers import CONV_CASES, close, pruned_conv, quantized_matrix
from torch import nn

from vidcompress import prune_
from vidcompress.errors import ConfigError
from vidcompress.kernels import (
    RelativeLayout,
    SparseConv,
    SparseLayout,
    cuda_available,
)
from vidcompress.kernels.cuda import SOURCE, SPMV_VARIANTS, _spmm_cuda, spmm_cuda, spmv_unusable, spmv_variant


def test_cuda_path_without_a_gpu_is_a_clear_error() -> None:
    layout = SparseLayout.from_dense(quantized_matrix((4, 4)))
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
    names = ["spmv_u16_u8", "spmm_u16_u8", "spmv_i32_u16", "spmm_i32_u16", "spmv_rel", "spmm_rel"]
    names += ["spmv_sx_u16_u8", "spmv_sxv_u16_u8", "spmv_sxv_u16_u16", "spmv_sxv_i32_u8"]
    names += ["conv_u16_u8", "conv_u16_u16", "conv_i32_u8", "conv_i32_u16"]
    for name in names:
        assert f".entry {name}" in ptx


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("batch", [1, 3, 8, 16])
@pytest.mark.parametrize("shape", [(4096, 9216), (512, 13824), (101, 512)])
@pytest.mark.parametrize("relative", [False, True])
def test_cuda_path_matches_dense(batch: int, shape, relative: bool) -> None:
    weight = quantized_matrix(shape)
    layout = SparseLayout.from_dense(weight)
    device_layout = (RelativeLayout.from_csr(layout) if relative else layout).to("cuda")
    x = torch.randn(shape[1], batch, device="cuda")
    expected = weight.cuda() @ x
    result = spmm_cuda(device_layout, x[:, 0] if batch == 1 else x)
    assert close(result.reshape(expected.shape), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize(
    ("shape", "sparsity"), [((5, 70_000), 0.9995), ((3, 2000), 0.999), ((33, 1), 0.5), ((40, 17), 1.0), ((8, 9), 0.0)]
)
def test_cuda_odd_shapes_empty_rows_and_wide_columns(shape, sparsity, relative: bool) -> None:
    weight = quantized_matrix(shape, sparsity=sparsity)
    layout = SparseLayout.from_dense(weight)
    device_layout = (RelativeLayout.from_csr(layout) if relative else layout).to("cuda")
    for batch in (1, 5, 11):
        x = torch.randn(shape[1], batch, device="cuda")
        result = spmm_cuda(device_layout, x[:, 0] if batch == 1 else x).reshape(shape[0], batch)
        assert close(result, weight.cuda() @ x)


def test_short_matrices_share_rows_between_warps() -> None:
    from vidcompress.kernels.cuda import warps_per_row

    assert warps_per_row(4096, 4096 * 920) == 2  # AlexNet fc6 at 0.9: two warps fill the GPU
    assert warps_per_row(512, 512 * 1382) == 8
    assert warps_per_row(128, 128 * 100) == 1  # too few nonzeros a row to split
    assert warps_per_row(20_000, 20_000 * 5000) == 1
    assert warps_per_row(0, 0) == 1


def _unaligned(layout: SparseLayout) -> SparseLayout:
    """The same layout with its column and symbol arrays starting one element past an aligned address."""

    def shifted(tensor: torch.Tensor) -> torch.Tensor:
        storage = torch.empty(tensor.numel() + 1, dtype=tensor.dtype, device=tensor.device)
        storage[1:] = tensor
        return storage[1:]

    return dataclasses.replace(layout, columns=shifted(layout.columns), symbols=shifted(layout.symbols))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("variant", SPMV_VARIANTS)
@pytest.mark.parametrize("levels", [255, 1000])  # one- and two-byte symbols
@pytest.mark.parametrize(
    ("shape", "sparsity"),
    [((4096, 9216), 0.9), ((512, 13824), 0.9), ((101, 515), 0.7), ((300, 4001), 0.999), ((33, 1), 0.5),
     ((40, 17), 1.0), ((8, 9), 0.0), ((7, 50_000), 0.99)],
)  # fmt: skip
def test_every_batch1_kernel_matches_dense(variant: str, levels: int, shape, sparsity: float) -> None:
    weight = quantized_matrix(shape, sparsity=sparsity, levels=levels)
    layout = SparseLayout.from_dense(weight).to("cuda")
    x = torch.randn(shape[1], device="cuda")
    expected = weight.cuda() @ x
    runs = 0
    for candidate in (layout, _unaligned(layout)):
        reason = spmv_unusable(candidate, variant, 0)
        if reason is not None:  # refused with the reason, never run on a layout it would misread
            with pytest.raises(ConfigError, match="cannot run this layout"):
                _spmm_cuda(candidate, x, variant=variant)
            continue
        assert close(_spmm_cuda(candidate, x, variant=variant), expected), variant
        runs += 1
    if variant == "cached":
        assert runs == 2  # the fallback runs every layout


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
def test_the_default_batch1_kernel_follows_alignment_and_shared_memory() -> None:
    layout = SparseLayout.from_dense(quantized_matrix((64, 4096))).to("cuda")
    assert spmv_variant(layout, 0) == "staged_vector"
    assert spmv_variant(_unaligned(layout), 0) == "staged"
    wide = SparseLayout.from_dense(quantized_matrix((4, 70_000), sparsity=0.999)).to("cuda")
    assert spmv_variant(wide, 0) == "cached"  # x of 280 kB does not fit in any GPU's shared memory
    with pytest.raises(ConfigError, match="does not fit in shared memory"):
        _spmm_cuda(wide, torch.randn(70_000, device="cuda"), variant="staged")
    with pytest.raises(ConfigError, match="16-byte aligned"):
        _spmm_cuda(_unaligned(layout), torch.randn(4096, device="cuda"), variant="staged_vector")
    with pytest.raises(ConfigError, match="unknown SpMV variant"):
        _spmm_cuda(layout, torch.randn(4096, device="cuda"), variant="fast")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
def test_launches_raise_no_deprecation_warning() -> None:
    layout = SparseLayout.from_dense(quantized_matrix((16, 32))).to("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for x in (torch.randn(32, device="cuda"), torch.randn(32, 4, device="cuda")):
            spmm_cuda(layout, x)
            spmm_cuda(RelativeLayout.from_csr(layout.to("cpu")).to("cuda"), x)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize(("dims", "kernel", "stride", "dilation", "padding", "mode", "size"), CONV_CASES)
def test_cuda_direct_convolution_matches_dense(dims, kernel, stride, dilation, padding, mode, size) -> None:
    conv = pruned_conv(dims, kernel, stride, dilation, padding, mode)
    sparse = SparseConv.from_conv(conv).cuda()
    sparse.direct_on_gpu = True
    sparse._slab = lambda piece: pytest.fail("the direct kernel should have run")  # type: ignore[method-assign]
    x = torch.randn(2, 5, *size, device="cuda")
    assert close(sparse(x), conv.cuda()(x))


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs CuPy and a CUDA GPU")
def test_cuda_direct_convolution_with_wide_columns_and_many_samples() -> None:
    conv = nn.Conv1d(23_000, 3, 3, padding=1)  # 69,000 columns: 4-byte column indices
    prune_(conv, "conv=0.99")
    sparse = SparseConv.from_conv(conv).cuda()
    sparse.direct_on_gpu = True
    assert sparse.layout.columns.dtype == torch.int32
    x = torch.randn(70, 23_000, 6, device="cuda")  # the samples are the grid's third axis
    assert close(sparse(x), conv.cuda()(x))
