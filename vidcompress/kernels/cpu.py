"""CPU multiplication on the layout: Y = W X.

With numba installed (`vidcompress[cpu]`), our own kernels read the layout as it is stored (see
`cpu_numba.py`): nothing but its 3 bytes a nonzero in memory and no per-call expansion. Without it,
per call the codebook symbols are expanded to fp32 values and the column indices widened for scipy's
CSR kernel, which costs more than the multiplication. A caller that can spare 8 bytes a nonzero may
pass the expanded matrix (`csr_matrix(layout)`) instead (the sparse modules' `cache=True`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from vidcompress.gather import gather
from vidcompress.kernels.cpu_numba import numba_available, spmm_numba
from vidcompress.kernels.layout import SparseLayout
from vidcompress.kernels.relative import RelativeLayout


def csr_matrix(layout: SparseLayout) -> scipy.sparse.csr_matrix:
    """A scipy CSR matrix expanded from the layout (values gathered from the codebook)."""
    pointers, columns, symbols, codebook = layout.host_arrays()
    columns = columns.astype(np.int32) if columns.dtype == np.uint16 else columns
    values = gather(codebook, symbols)
    return scipy.sparse.csr_matrix((values, columns, pointers), shape=layout.shape, copy=False)


def spmm_cpu(
    layout: SparseLayout | RelativeLayout, x: torch.Tensor, csr: scipy.sparse.csr_matrix | None = None
) -> torch.Tensor:
    """W @ X for X of shape (columns,) or (columns, batch), in fp32; `csr`: the layout already expanded.

    A relative layout goes through its reference decoder (`to_csr`), so both layouts give the same bits.
    """
    if isinstance(layout, RelativeLayout):
        layout = layout.to_csr()
    if csr is None and numba_available():
        # The common case (fp32, contiguous) converts without a copy; the per-call cost matters at batch 1.
        vector = x.detach()
        if vector.dtype != torch.float32 or not vector.is_contiguous():
            vector = vector.float().contiguous()
        operand = vector.numpy()
        return torch.from_numpy(spmm_numba(layout, operand.reshape(layout.shape[1], -1) if x.ndim > 1 else operand))
    dense = x.detach().to(torch.float32).reshape(layout.shape[1], -1).numpy()
    result = (csr if csr is not None else csr_matrix(layout)) @ dense
    out = torch.from_numpy(np.ascontiguousarray(result, dtype=np.float32))
    return out.reshape(-1) if x.ndim == 1 else out
