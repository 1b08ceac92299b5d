"""CPU multiplication on the layout: Y = W X with torch's CSR kernels, values gathered per call."""

from __future__ import annotations

import warnings

import torch

from vidcompress.kernels.layout import SparseLayout


def csr_tensor(layout: SparseLayout) -> torch.Tensor:
    """A torch sparse CSR view of the layout (values gathered from the codebook)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # The layout's invariants were established when it was built; no need to re-check per call.
        return torch.sparse_csr_tensor(
            layout.row_pointers.long(),
            layout.column_indices(),
            layout.codebook[layout.symbol_indices()],
            size=layout.shape,
            check_invariants=False,
        )


def spmm_cpu(layout: SparseLayout, x: torch.Tensor) -> torch.Tensor:
    """W @ X for X of shape (columns,) or (columns, batch), in fp32."""
    vector = x.ndim == 1
    dense = x.reshape(layout.shape[1], -1).to(torch.float32)
    result = csr_tensor(layout) @ dense
    return result.reshape(-1) if vector else result
