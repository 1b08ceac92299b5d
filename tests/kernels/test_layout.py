import numpy as np
import pytest
import torch
from kernel_helpers import close, quantized_matrix

from vidcompress.errors import InputError
from vidcompress.kernels import (
    RelativeLayout,
    SparseLayout,
    spmm_cpu,
)
from vidcompress.kernels.cpu_numba import numba_available, spmm_numba


def test_layout_bytes_per_nonzero_and_round_trip() -> None:
    weight = quantized_matrix((64, 300))
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
    many = quantized_matrix((40, 500), sparsity=0.0, levels=1000)
    layout = SparseLayout.from_dense(many)
    assert layout.symbols.dtype == torch.int16 and layout.bytes_per_nonzero == 4
    assert torch.equal(layout.to_dense(), many)
    high = torch.zeros(1, 40_000)
    high[0, 40_000 - 1] = 3.0  # a column index above 32767 survives the uint16-in-int16 storage
    assert torch.equal(SparseLayout.from_dense(high).to_dense(), high)


@pytest.mark.parametrize("batch", [1, 8])
def test_cpu_path_matches_dense(batch: int) -> None:
    weight = quantized_matrix((128, 257))
    x = torch.randn(257, batch)
    result = spmm_cpu(SparseLayout.from_dense(weight), x if batch > 1 else x[:, 0])
    expected = weight @ x if batch > 1 else weight @ x[:, 0]
    assert result.shape == expected.shape and close(result, expected)


def _assert_same_layout(actual: SparseLayout, expected: SparseLayout) -> None:
    assert actual.shape == expected.shape
    for field in ("row_pointers", "columns", "symbols", "codebook"):
        assert torch.equal(getattr(actual, field), getattr(expected, field)), field


@pytest.mark.parametrize(
    ("shape", "sparsity"),
    [((64, 300), 0.9), ((7, 5), 0.0), ((3, 2000), 0.999), ((33, 1), 0.5), ((5, 70_000), 0.9995), ((1, 1), 1.0)],
)
def test_relative_layout_decodes_to_the_csr_layout_bit_for_bit(shape, sparsity) -> None:
    csr = SparseLayout.from_dense(quantized_matrix(shape, sparsity=sparsity))
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
    weight = quantized_matrix((96, 700), sparsity=0.95)
    csr = SparseLayout.from_dense(weight)
    x = torch.randn(700, batch)
    operand = x[:, 0] if batch == 1 else x
    assert torch.equal(spmm_cpu(RelativeLayout.from_csr(csr), operand), spmm_cpu(csr, operand))
    assert close(spmm_cpu(RelativeLayout.from_csr(csr), operand), weight @ operand)


def test_relative_layout_refuses_wide_codebooks() -> None:
    with pytest.raises(InputError, match="257 codebook entries"):
        RelativeLayout.from_dense(quantized_matrix((8, 600), sparsity=0.0, levels=256))


@pytest.mark.skipif(not numba_available(), reason="numba not installed (vidcompress[cpu])")
@pytest.mark.parametrize(
    ("shape", "levels", "sparsity"),
    [((33, 70_000), 255, 0.99), ((7, 13), 300, 0.5), ((40, 17), 255, 1.0), ((1, 1), 3, 0.0), ((257, 1031), 70, 0.9)],
)
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_numba_kernels_read_the_layout_as_stored(shape, levels: int, sparsity: float, batch: int) -> None:
    # Odd shapes, empty rows (sparsity 1.0), wide columns (int32 above 65,536) and wide symbols (uint16).
    weight = quantized_matrix(shape, sparsity=sparsity, levels=levels)
    layout = SparseLayout.from_dense(weight)
    x = torch.randn(shape[1], batch)
    operand = x[:, 0].contiguous().numpy() if batch == 1 else x.numpy()
    ours = torch.from_numpy(spmm_numba(layout, operand))
    expected = weight @ (x[:, 0] if batch == 1 else x)
    assert close(ours, expected)
    assert torch.equal(spmm_cpu(layout, x[:, 0] if batch == 1 else x), ours)  # the dispatcher's CPU path


def test_host_arrays_are_views_made_once() -> None:
    # The CPU kernels read the layout's own memory (no copy), and the views are made once per layout.
    layout = SparseLayout.from_dense(quantized_matrix((40, 500), sparsity=0.0, levels=1000))
    arrays = layout.host_arrays()
    assert layout.host_arrays() is arrays
    assert [a.dtype.name for a in arrays] == ["int32", "uint16", "uint16", "float32"]
    tensors = (layout.row_pointers, layout.columns, layout.symbols, layout.codebook)
    assert all(np.shares_memory(a, t.numpy()) for a, t in zip(arrays, tensors, strict=True))


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("batch", [1, 4])
def test_numba_kernels_write_into_a_given_output(batch: int) -> None:
    weight = quantized_matrix((31, 90), sparsity=0.7)
    layout = SparseLayout.from_dense(weight)
    x = torch.randn(90, batch)
    out = np.full((31, batch), np.nan, dtype=np.float32)  # stale values must not leak into the result
    result = spmm_numba(layout, x.numpy(), out=out)
    assert result is out
    assert close(torch.from_numpy(out), weight @ x)
