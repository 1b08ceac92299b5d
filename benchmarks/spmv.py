"""Sparse matrix times vector / small batch on the compressed layout, against its peers in one run.

Matrices: the ones Deep Compression measured (AlexNet fc6 9216->4096, fc7 4096x4096, VGG-16 fc6
25088->4096) and T-C3D's conv layers as W.reshape(out, -1), at 90% and 95% sparsity, 255 shared values
(8 bits), batch 1 and 8.
CPU rows (always): ours (scipy's CSR kernel over the layout, values gathered from the codebook per
call), ours with the expanded matrix cached (the modules' `cache=True`: 8 more bytes a nonzero) vs scipy
CSR fp32 built from the dense matrix vs torch dense.
GPU rows (when CuPy and a CUDA GPU are present): our CUDA kernels vs cuSPARSE CSR fp32
(cupyx.scipy.sparse) vs dense cuBLAS, with achieved bandwidth as a fraction of the device's peak.

    python -m benchmarks.spmv [--quick]
"""

from __future__ import annotations

import argparse
import time

import scipy.sparse
import torch

from benchmarks.common import machine, machine_line, write_results
from vidcompress.kernels import SparseLayout, csr_matrix, cuda_available, spmm_cpu

MATRICES = {
    "AlexNet fc6": (4096, 9216),
    "AlexNet fc7": (4096, 4096),
    "VGG-16 fc6": (4096, 25088),
    "T-C3D layer2.1.conv2": (128, 128 * 27),
    "T-C3D layer3.1.conv2": (256, 256 * 27),
    "T-C3D layer4.1.conv2": (512, 512 * 27),
}


def quantized_matrix(shape: tuple[int, int], sparsity: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(255, generator=generator) * 0.02
    weight = codebook[torch.randint(0, 255, shape, generator=generator)]
    keep = torch.rand(shape, generator=generator) >= sparsity
    return torch.where(keep, weight, torch.zeros(()))


def best_time(function, repeat: int) -> float:
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def cpu_rows(weight: torch.Tensor, layout: SparseLayout, batch: int, repeat: int) -> dict:
    x = torch.randn(weight.shape[1], batch)
    vector = x[:, 0].contiguous()
    operand = vector if batch == 1 else x
    csr = scipy.sparse.csr_matrix(weight.numpy())
    dense_x = operand.numpy()
    cached = csr_matrix(layout)
    return {
        "ours_cpu_s": best_time(lambda: spmm_cpu(layout, operand), repeat),
        "ours_cached_cpu_s": best_time(lambda: spmm_cpu(layout, operand, cached), repeat),
        "scipy_csr_s": best_time(lambda: csr @ dense_x, repeat),
        "torch_dense_s": best_time(lambda: weight @ operand, repeat),
    }


def gpu_rows(weight: torch.Tensor, layout: SparseLayout, batch: int, repeat: int, peak: float) -> dict:
    import cupy
    import cupyx.scipy.sparse

    from vidcompress.kernels import spmm_cuda

    device_layout = layout.to("cuda")
    x = torch.randn(weight.shape[1], batch, device="cuda")
    operand = x[:, 0].contiguous() if batch == 1 else x
    dense = weight.cuda()
    csr = cupyx.scipy.sparse.csr_matrix(cupy.asarray(weight.numpy()))
    cupy_x = cupy.asarray(operand)

    def gpu_time(function) -> float:
        function()
        torch.cuda.synchronize()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeat):
            function()
        stop.record()
        torch.cuda.synchronize()
        return start.elapsed_time(stop) / 1000 / repeat

    ours = gpu_time(lambda: spmm_cuda(device_layout, operand))
    moved = layout.size_bytes + 4 * batch * (weight.shape[0] + weight.shape[1])
    return {
        "ours_gpu_s": ours,
        "cusparse_csr_s": gpu_time(lambda: csr @ cupy_x),
        "cublas_dense_s": gpu_time(lambda: dense @ operand),
        "ours_bytes_moved": moved,
        "ours_bandwidth_fraction": moved / ours / peak,
    }


def device_peak_bandwidth() -> float:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    return 2.0 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    info = machine()
    use_gpu = cuda_available()
    peak = device_peak_bandwidth() if use_gpu else 0.0
    repeat = 3 if args.quick else 10
    rows = []
    for name, shape in MATRICES.items():
        for sparsity in (0.9, 0.95):
            weight = quantized_matrix(shape, sparsity)
            layout = SparseLayout.from_dense(weight)
            for batch in (1, 8):
                row = {"matrix": name, "shape": list(shape), "sparsity": sparsity, "batch": batch}
                row["layout_bytes"] = layout.size_bytes
                row["csr_fp32_bytes"] = 8 * layout.nonzeros + 4 * (shape[0] + 1)
                row.update(cpu_rows(weight, layout, batch, repeat))
                if use_gpu:
                    row.update(gpu_rows(weight, layout, batch, 50 if args.quick else 200, peak))
                rows.append(row)
                print(name, sparsity, batch, {k: v for k, v in row.items() if k.endswith("_s")})
    data = {"machine": info, "gpu": use_gpu, "peak_bandwidth_bytes_per_s": peak, "rows": rows}
    lines = [
        "# Sparse kernels on the compressed layout",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.spmv{' --quick' if args.quick else ''}`.",
        "",
        "Layout: 1-byte codebook symbol + 2-byte column index per nonzero (3 bytes) + int32 row pointers,",
        "against CSR fp32's 8 bytes per nonzero + row pointers. 255 shared values per matrix.",
        "",
        "## CPU (best of the repeats, milliseconds)",
        "",
        "| matrix | sparsity | batch | layout / CSR bytes | ours | ours, cached | scipy CSR | torch dense "
        "| ours vs scipy | cached vs scipy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['matrix']} | {r['sparsity']} | {r['batch']} | {r['layout_bytes'] / r['csr_fp32_bytes']:.2f} "
            f"| {1e3 * r['ours_cpu_s']:.3f} | {1e3 * r['ours_cached_cpu_s']:.3f} | {1e3 * r['scipy_csr_s']:.3f} "
            f"| {1e3 * r['torch_dense_s']:.3f} | {r['scipy_csr_s'] / r['ours_cpu_s']:.2f}x "
            f"| {r['scipy_csr_s'] / r['ours_cached_cpu_s']:.2f}x |"
        )
    if use_gpu:
        lines += [
            "",
            f"## GPU: {info['gpu']} (peak {peak / 1e12:.2f} TB/s; mean over repeats, microseconds)",
            "",
            "| matrix | sparsity | batch | ours | cuSPARSE CSR | cuBLAS dense | ours vs cuSPARSE "
            "| ours bandwidth / peak |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['matrix']} | {r['sparsity']} | {r['batch']} | {1e6 * r['ours_gpu_s']:.1f} "
                f"| {1e6 * r['cusparse_csr_s']:.1f} | {1e6 * r['cublas_dense_s']:.1f} "
                f"| {r['cusparse_csr_s'] / r['ours_gpu_s']:.2f}x | {r['ours_bandwidth_fraction']:.2f} |"
            )
    else:
        lines += ["", "No CUDA GPU with CuPy in this run: GPU rows not measured."]
    name = "spmv_gpu" if use_gpu else "spmv_cpu"
    write_results(name, data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
