import numpy as np
import pytest

from vidcompress.codec import (
    relative_index_decode,
    relative_index_encode,
)


@pytest.mark.parametrize("index_bits", [1, 2, 3, 5])
def test_gaps_exactly_at_and_past_the_bound(index_bits: int) -> None:
    span = 1 << index_bits
    for gap in (span - 1, span, span + 1, 2 * span, 2 * span + 1):
        flat = np.zeros(3 * gap + 2, dtype=np.int64)
        flat[gap - 1] = 1  # first distance = gap
        flat[2 * gap - 1] = 2
        entries = relative_index_encode(flat, index_bits)
        assert entries.fillers == 2 * ((gap - 1) // span) + (flat.size - (2 * gap - 1) - 1) // span
        assert entries.codes.max() < span
        assert np.array_equal(relative_index_decode(entries.symbols, entries.codes, flat.size, index_bits), flat)


def test_row_major_index_folds_either_walk_back() -> None:
    from vidcompress.codec.relative_index import row_major_index, walk

    shape = (5, 3, 2, 2)
    values = np.arange(60).reshape(shape)
    for by_rows in (False, True):
        walked = walk(values, shape, by_rows=by_rows)
        assert np.array_equal(values.reshape(-1)[row_major_index(np.arange(60), shape, by_rows=by_rows)], walked)
    assert not np.array_equal(walk(values, shape, by_rows=False), walk(values, shape, by_rows=True))
