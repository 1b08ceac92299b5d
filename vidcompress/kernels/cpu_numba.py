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


@cache
def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


_KERNELS: tuple[Any, Any] | None = None  # (spmv, spmm) once compiled (a global: cheaper per call than a cache)


def _compile() -> tuple[Any, Any]:
    global _KERNELS
    import numba
    from numba import uint64

    # Indices are unsigned (uint64) throughout: with signed ones numba adds a negative-index branch to
    # every load, which doubled the inner loop. Four independent partial sums per row (summed in a fixed
    # order, so results do not depend on the thread count) hide the latency of the fp32 additions.
    @numba.njit(parallel=True, cache=True, nogil=True)
    def spmv(pointers, columns, symbols, codebook, x, y):  # pragma: no cover (compiled)
        four = uint64(4)
        for row in numba.prange(pointers.size - 1):
            k = uint64(pointers[row])
            end = uint64(pointers[row + 1])
            a0 = a1 = a2 = a3 = np.float32(0.0)
            while k + four <= end:
                a0 += codebook[uint64(symbols[k])] * x[uint64(columns[k])]
                a1 += codebook[uint64(symbols[k + uint64(1)])] * x[uint64(columns[k + uint64(1)])]
                a2 += codebook[uint64(symbols[k + uint64(2)])] * x[uint64(columns[k + uint64(2)])]
                a3 += codebook[uint64(symbols[k + uint64(3)])] * x[uint64(columns[k + uint64(3)])]
                k += four
            while k < end:
                a0 += codebook[uint64(symbols[k])] * x[uint64(columns[k])]
                k += uint64(1)
            y[row] = (a0 + a1) + (a2 + a3)

    @numba.njit(parallel=True, cache=True, nogil=True)
    def spmm(pointers, columns, symbols, codebook, x, y):  # pragma: no cover (compiled)
        batch = uint64(x.shape[1])
        for row in numba.prange(pointers.size - 1):
            out = y[row]
            for k in range(uint64(pointers[row]), uint64(pointers[row + 1])):
                value = codebook[uint64(symbols[k])]
                source = x[uint64(columns[k])]
                for j in range(batch):
                    out[j] += value * source[j]

    _KERNELS = (spmv, spmm)
    return _KERNELS


def spmm_numba(layout: SparseLayout, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """W @ x in fp32 for x of shape (columns,) or (columns, batch), C-contiguous fp32; `out`: a
    C-contiguous fp32 array of the result's shape to write into (zeroed here for a batch)."""
    spmv, spmm = _KERNELS or _compile()
    pointers, columns, symbols, codebook = layout.host_arrays()
    rows = layout.shape[0]
    if x.ndim == 1 or x.shape[1] == 1:  # a single column runs the vector kernel (no store per nonzero)
        y = np.empty(rows if x.ndim == 1 else (rows, 1), dtype=np.float32) if out is None else out
        spmv(pointers, columns, symbols, codebook, x.reshape(-1), y.reshape(-1))
        return y
    if out is None:
        y = np.zeros((rows, x.shape[1]), dtype=np.float32)
    else:
        y = out
        y.fill(0.0)
    spmm(pointers, columns, symbols, codebook, x, y)
    return y
