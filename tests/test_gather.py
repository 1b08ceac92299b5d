import numpy as np
import pytest

from vidcompress.gather import PAIRED_FROM, gather

DTYPES = [np.float32, np.float16, np.int32, np.int16, np.uint8, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [0, 7, PAIRED_FROM, PAIRED_FROM + 1])
@pytest.mark.parametrize("table_size", [2, 31, 256])
def test_gather_equals_indexing(dtype, size: int, table_size: int) -> None:
    rng = np.random.default_rng(size + table_size)
    table = (rng.standard_normal(table_size) * 100).astype(dtype)
    symbols = rng.integers(0, table_size, size).astype(np.uint8)
    result = gather(table, symbols)
    assert result.dtype == table.dtype
    assert np.array_equal(result, table[symbols], equal_nan=dtype not in (np.int32, np.int16, np.uint8))


def test_gather_on_unaligned_and_strided_symbols() -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_normal(256).astype(np.float32)
    buffer = rng.integers(0, 256, 3 * PAIRED_FROM + 1).astype(np.uint8)
    for symbols in (buffer[1:], buffer[::3]):  # an odd start address; a non-contiguous view
        assert np.array_equal(gather(table, symbols), table[symbols])


def test_gather_out_of_range_raises_like_numpy() -> None:
    table = np.arange(4, dtype=np.float32)
    symbols = np.zeros(PAIRED_FROM, dtype=np.uint8)
    symbols[-1] = 4
    with pytest.raises(IndexError):
        gather(table, symbols)
    with pytest.raises(IndexError):
        gather(table, symbols[-8:])  # the plain path agrees
