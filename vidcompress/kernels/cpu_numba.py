"""CPU kernels that multiply by the layout itself (no expanded copy): numba, threads over rows.

Each nonzero is read as it is stored: a 1-2-byte codebook symbol and a 2-4-byte column index, the
value looked up in the codebook in the inner loop; rows are shared among threads (`prange`), each
row's sum accumulated in fp32 as scipy's fp32 CSR kernel does. Y = W X for X of shape (columns,
batch): each nonzero scales one row of X into the output row. numba is optional (`vidcompress[cpu]`);
without it `spmm_cpu` uses scipy.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import numpy as np

from vidcompress.kernels.layout import SparseLayout


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


@cache
def _kernels() -> tuple[Any, Any]:
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def spmv(pointers, columns, symbols, codebook, x, y):  # pragma: no cover (compiled)
        for row in numba.prange(pointers.size - 1):
            total = np.float32(0.0)
            for k in range(pointers[row], pointers[row + 1]):
                total += codebook[symbols[k]] * x[columns[k]]
            y[row] = total

    @numba.njit(parallel=True, cache=True, nogil=True)
    def spmm(pointers, columns, symbols, codebook, x, y):  # pragma: no cover (compiled)
        batch = x.shape[1]
        for row in numba.prange(pointers.size - 1):
            out = y[row]
            for k in range(pointers[row], pointers[row + 1]):
                value = codebook[symbols[k]]
                source = x[columns[k]]
                for j in range(batch):
                    out[j] += value * source[j]

    return spmv, spmm


def layout_arrays(layout: SparseLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The layout's arrays as the kernels read them (zero-copy views: uint16 fields were stored in int16)."""
    columns = layout.columns.numpy()
    symbols = layout.symbols.numpy()
    columns = columns.view(np.uint16) if columns.dtype == np.int16 else columns
    symbols = symbols.view(np.uint16) if symbols.dtype == np.int16 else symbols
    return layout.row_pointers.numpy(), columns, symbols, layout.codebook.numpy()


def spmm_numba(layout: SparseLayout, x: np.ndarray) -> np.ndarray:
    """W @ x in fp32 for x of shape (columns,) or (columns, batch), C-contiguous fp32."""
    spmv, spmm = _kernels()
    pointers, columns, symbols, codebook = layout_arrays(layout)
    if x.ndim == 1:
        y = np.empty(layout.shape[0], dtype=np.float32)
        spmv(pointers, columns, symbols, codebook, x, y)
        return y
    y = np.zeros((layout.shape[0], x.shape[1]), dtype=np.float32)
    spmm(pointers, columns, symbols, codebook, x, y)
    return y
