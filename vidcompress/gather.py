"""`table[symbols]` for a small table and many 8-bit symbols, two symbols per lookup.

numpy's `take` widens every index to a 64-bit integer first, so for uint8 symbols most of its time goes
into writing and reading that 8-byte-per-symbol copy. Viewing two adjacent symbols as one uint16 and
looking the pair up in a 65,536-entry table of value pairs halves the lookups and quarters the index
traffic (on the project's CPU about 3.5x faster than `table[symbols]` and 1.6x faster than `np.take`
for millions of symbols). The table (256 x 256 pairs, 512 KB for 4-byte values) is built per call, so
short inputs take the plain path. Used where containers are decoded and where layouts are expanded.
"""

from __future__ import annotations

import sys

import numpy as np

# The item size of the table -> an unsigned type as wide as two items.
_PAIR = {1: np.uint16, 2: np.uint32, 4: np.uint64}
PAIRED_FROM = 1 << 16  # below this many symbols, building the pair table costs more than it saves


def gather(table: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """`table[symbols]` for a 1-D table; out-of-range symbols raise IndexError as numpy does."""
    pair = _PAIR.get(table.itemsize)
    if (
        symbols.dtype != np.uint8
        or table.ndim != 1
        or pair is None
        or symbols.size < PAIRED_FROM
        or sys.byteorder != "little"  # the pair table's layout assumes the first symbol in the low byte
    ):
        return table[symbols]
    if table.size < 256 and int(symbols.max()) >= table.size:
        raise IndexError(f"symbol {int(symbols.max())} is out of bounds for a table of {table.size}")
    full = np.zeros(256, dtype=table.dtype)
    full[: min(table.size, 256)] = table[:256]
    # pairs[high, low] = (table[low], table[high]): the uint16 of bytes (low, high) indexes it.
    pairs = np.empty((256, 256, 2), dtype=table.dtype)
    pairs[..., 0] = full[None, :]
    pairs[..., 1] = full[:, None]
    symbols = np.ascontiguousarray(symbols).reshape(-1)
    out = np.empty(symbols.size, dtype=table.dtype)
    even = symbols.size - symbols.size % 2
    # mode="clip": every uint16 is in range, and with the default "raise" numpy buffers `out`.
    np.take(pairs.reshape(-1).view(pair), symbols[:even].view(np.uint16), out=out[:even].view(pair), mode="clip")
    if even < symbols.size:
        out[even] = full[symbols[even]]
    return out
