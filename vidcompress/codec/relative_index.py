"""Relative-index CSC with filler zeros (Deep Compression, section 3).

A layer is viewed as the matrix `W.reshape(out, -1)` and walked column by column (CSC order, the
paper's), or row by row (`by_rows`, the transposed walk: each output unit's weights in turn), which
the encoder takes where it codes smaller; the index runs on across column (row) boundaries, as in
Han's released decoder, so no column pointers are stored. Each stored entry has a weight symbol and
`code = d - 1`, where d >= 1 is its distance from the previous stored entry (the first entry's
distance counts from position -1). A distance larger than 2^b gets filler entries of symbol 0 every
2^b positions. The end of the matrix is treated as a virtual entry at position n, so trailing zeros
are bridged by fillers too; hence n <= (entries + 1) * 2^b, which bounds what a decoder allocates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidcompress.errors import FormatError


@dataclass(frozen=True)
class RelativeIndex:
    """Stored entries of one layer: weight symbols and index codes, fillers included."""

    symbols: np.ndarray  # the input symbols' dtype, 0 for fillers
    codes: np.ndarray  # in [0, 2^index_bits): uint8 up to 8 index bits, else int64
    fillers: int

    @property
    def entries(self) -> int:
        return int(self.symbols.size)


def column_major(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The flat CSC walk of `values.reshape(out, -1)`: column after column."""
    if values.size == 0:
        return values.reshape(-1)
    rows = shape[0] if shape else 1
    return np.ascontiguousarray(values.reshape(rows, -1).T).reshape(-1)


def walk(values: np.ndarray, shape: tuple[int, ...], *, by_rows: bool) -> np.ndarray:
    """The flat walk a sparse layout codes of row-major `values`: column after column (CSC), or row
    after row (`by_rows`: the row-major order itself)."""
    return values.reshape(-1) if by_rows else column_major(values, shape)


def relative_index_encode(symbols_flat: np.ndarray, index_bits: int) -> RelativeIndex:
    """Encode a flat (walk-order) array of weight symbols, 0 meaning an absent entry."""
    span = 1 << index_bits
    positions = np.flatnonzero(symbols_flat)
    if symbols_flat.size < 1 << 31:
        positions = positions.astype(np.int32)  # half the memory of the int64 index arrays below
    # Distances to each stored entry and to the virtual end entry at position n.
    bounds = np.concatenate((positions, [symbols_flat.size]))
    distances = np.diff(bounds, prepend=-1)
    fillers = (distances - 1) // span
    real_distances = distances - fillers * span
    # Entry t of the output: fillers[t] filler entries (distance `span`), then the real one.
    count = fillers + 1
    total = int(count.sum()) - 1  # the virtual end entry is not stored
    codes = np.full(total + 1, span - 1, dtype=np.uint8 if span <= 1 << 8 else np.int64)
    symbols = np.zeros(total + 1, dtype=symbols_flat.dtype)
    real_at = np.cumsum(count) - 1
    codes[real_at] = real_distances - 1
    symbols[real_at[:-1]] = symbols_flat[positions]
    return RelativeIndex(symbols[:total], codes[:total], int(fillers.sum()))


def relative_index_positions(codes: np.ndarray, numel: int, index_bits: int, name: str = "layer") -> np.ndarray:
    """Walk positions of the stored entries; checks that they stay inside the layer."""
    span = 1 << index_bits
    if codes.size and (codes.min() < 0 or codes.max() >= span):
        raise FormatError(f"{name}: index code outside [0, {span})")
    positions = np.cumsum(codes, dtype=np.int64)  # codes may be uint8: no `codes + 1` overflow
    positions += np.arange(codes.size, dtype=np.int64)
    last = int(positions[-1]) if positions.size else -1
    if last >= numel:
        raise FormatError(f"{name}: entries run past the end of the layer ({last} >= {numel})")
    if numel - last > span:
        raise FormatError(f"{name}: trailing gap of {numel - last} exceeds 2^{index_bits} without fillers")
    return positions


def row_major_index(positions: np.ndarray, shape: tuple[int, ...], *, by_rows: bool = False) -> np.ndarray:
    """Where walk positions of `W.reshape(out, -1)` land in the row-major (C-order) layout: the
    positions themselves for the row walk (`by_rows`)."""
    if by_rows:
        return positions
    rows = shape[0] if shape else 1
    columns = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    column, row = np.divmod(positions, rows)
    row *= columns
    row += column
    return row


def relative_index_decode(
    symbols: np.ndarray, codes: np.ndarray, numel: int, index_bits: int, name: str = "layer"
) -> np.ndarray:
    """Rebuild the flat walk-order symbol array (0 where nothing is stored); checks every bound."""
    if symbols.size != codes.size:
        raise FormatError(f"{name}: {symbols.size} weight symbols but {codes.size} indices")
    flat = np.zeros(numel, dtype=np.int64)
    flat[relative_index_positions(codes, numel, index_bits, name)] = symbols
    return flat
