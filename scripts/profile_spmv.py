"""One launch of each batch-1 CSR SpMV kernel on VGG-16 fc6 at 0.9 sparsity, for a profiler to read:
    ncu --section SpeedOfLight --section Occupancy --section WarpStateStats -k regex:spmv \\
        python scripts/profile_spmv.py
"""

import torch

from vidcompress.kernels import SparseLayout
from vidcompress.kernels.cuda import SPMV_VARIANTS, _spmm_cuda


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (4096, 25088)
    codebook = torch.randn(255, generator=generator)
    weight = codebook[torch.randint(0, 255, shape, generator=generator)]
    weight = torch.where(torch.rand(shape, generator=generator) < 0.9, torch.zeros(()), weight)
    layout = SparseLayout.from_dense(weight).to("cuda")
    x = torch.randn(shape[1], device="cuda")
    expected = weight.cuda() @ x
    for variant in SPMV_VARIANTS:
        for _ in range(2):  # the second launch is the one a profiler with -c should read warm
            result = _spmm_cuda(layout, x, variant=variant)
        torch.cuda.synchronize()
        error = float((result - expected).abs().max() / expected.abs().max())
        print(variant, f"max relative error {error:.1e}")


if __name__ == "__main__":
    main()
