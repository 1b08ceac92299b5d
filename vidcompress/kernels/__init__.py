"""Sparse kernels on the compressed layout: CPU (scipy CSR) and CUDA (CuPy RawModule), and modules.

Importing this package never imports CuPy; the CUDA path loads it on first use.
"""

from vidcompress.kernels.cpu import csr_matrix, spmm_cpu
from vidcompress.kernels.cuda import cuda_available, spmm_cuda
from vidcompress.kernels.layout import SparseLayout
from vidcompress.kernels.modules import (
    SparseChoice,
    SparseConv,
    SparseLinear,
    SparseReport,
    load_sparse,
    sparse_matmul,
)
from vidcompress.kernels.relative import RelativeLayout

__all__ = [
    "RelativeLayout",
    "SparseChoice",
    "SparseConv",
    "SparseLayout",
    "SparseLinear",
    "SparseReport",
    "csr_matrix",
    "cuda_available",
    "load_sparse",
    "sparse_matmul",
    "spmm_cpu",
    "spmm_cuda",
]
