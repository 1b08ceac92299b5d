"""Sparse matrix times vector / small batch on the compressed layout, against its peers in one run.

Matrices: the ones Deep Compression measured (AlexNet fc6 9216->4096, fc7 4096x4096, VGG-16 fc6
25088->4096) and T-C3D's conv layers as W.reshape(out, -1), at 90% and 95% sparsity, 255 shared values
(8 bits), batch 1 and 8.
CPU rows (default): ours (the numba kernels reading the layout as stored, `vidcompress[cpu]`), the scipy
path without numba (the layout expanded to CSR per call) vs scipy CSR fp32 prebuilt from the dense
matrix vs torch dense; all with every thread of the machine.
GPU rows (`--gpu`, needs CuPy and a CUDA GPU; `scripts/gpu_check.sh` runs it): our CUDA kernels on the CSR
and on the relative layout vs cuSPARSE CSR fp32 (through cupyx and through torch) vs dense cuBLAS, timed
as CUDA-graph replays streaming from HBM, with achieved bandwidth as a fraction of the device's peak.

    python -m benchmarks.spmv [--quick] [--gpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import scipy.sparse
import torch

from benchmarks.common import machine, machine_line, write_results
from vidcompress.kernels import RelativeLayout, SparseLayout, csr_matrix, cuda_available, spmm_cpu
from vidcompress.kernels.cpu_numba import numba_available
from vidcompress.kernels.cuda import SPMV_VARIANTS, _spmm_cuda, spmv_unusable, spmv_variant, torch_stream
from vidcompress.report import markdown_table

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
    """Best time of each peer over interleaved rounds (each round calls every peer once, so a slow spell
    of the machine hits all of them): at least `repeat` rounds, more for small matrices (about 0.3 s)."""
    x = torch.randn(weight.shape[1], batch)
    vector = x[:, 0].contiguous()
    operand = vector if batch == 1 else x
    csr = scipy.sparse.csr_matrix(weight.numpy())
    dense_x = operand.numpy()
    peers = {
        "ours_cpu_s": lambda: spmm_cpu(layout, operand),
        "expanded_per_call_s": lambda: csr_matrix(layout) @ dense_x,
        "scipy_csr_s": lambda: csr @ dense_x,
        "torch_dense_s": lambda: weight @ operand,
    }
    one_round = sum(best_time(function, 1) for function in peers.values())
    rounds = max(repeat, min(200, int(0.3 / max(one_round, 1e-9))))
    best = dict.fromkeys(peers, float("inf"))
    for _ in range(rounds):
        for name, function in peers.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _l2_bytes() -> int:
    return int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20))


def copies_for(nbytes: int) -> int:
    """Copies of an operand that together exceed 4x the L2 cache (at most 64), so each launch streams from HBM."""
    return max(1, min(64, -(-4 * _l2_bytes() // max(nbytes, 1))))


def gpu_time(launches: list, replays: int) -> tuple[float, str]:
    """Mean seconds per launch: `launches` (one per operand copy) captured in one CUDA graph and replayed,
    so neither Python nor launch latency is timed; eager launches when a library refuses capture."""
    for launch in launches:  # warm-up: kernels compiled, workspaces allocated
        launch()
    torch.cuda.synchronize()
    mode = "graph"
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for launch in launches:
                launch()
        graph.replay()
        torch.cuda.synchronize()
        run = graph.replay
    except Exception as error:  # some library calls cannot be captured: time them eagerly, and say so
        torch.cuda.synchronize()
        mode = f"eager ({type(error).__name__})"

        def run() -> None:
            for launch in launches:
                launch()

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        run()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 1000 / (replays * len(launches)), mode


def gpu_rows(weight: torch.Tensor, layout: SparseLayout, batch: int, replays: int, peak: float) -> dict:
    import cupy
    import cupyx.scipy.sparse

    from vidcompress.kernels import spmm_cuda

    rows, cols = weight.shape
    x = torch.randn(cols, batch, device="cuda")
    operand = x[:, 0].contiguous() if batch == 1 else x
    vectors = 4 * batch * (rows + cols)  # x read once, y written once
    relative = RelativeLayout.from_csr(layout)
    csr_bytes = 8 * layout.nonzeros + 4 * (rows + 1)

    def on_torch_stream(function):
        def launch():
            with torch_stream(x.device):
                return function()

        return launch

    result: dict = {}
    timings = {}
    relative_copies = [relative.to("cuda") for _ in range(copies_for(relative.size_bytes))]
    timings["ours_relative"] = gpu_time([lambda c=c: spmm_cuda(c, operand) for c in relative_copies], replays)
    result["ours_relative_bytes_moved"] = relative.size_bytes + vectors
    del relative_copies
    csr_copies = [layout.to("cuda") for _ in range(copies_for(layout.size_bytes))]
    result["ours_csr_bytes_moved"] = layout.size_bytes + vectors
    if batch == 1:  # each batch-1 kernel; "ours_csr" is the one spmm_cuda picks by itself
        chosen = spmv_variant(csr_copies[0], x.device.index or 0)
        result["ours_csr_variant"] = chosen
        for variant in SPMV_VARIANTS:
            if spmv_unusable(csr_copies[0], variant, x.device.index or 0) is not None:
                continue
            timings[f"ours_csr_{variant}"] = gpu_time(
                [lambda c=c, v=variant: _spmm_cuda(c, operand, variant=v) for c in csr_copies], replays
            )
            result[f"ours_csr_{variant}_bytes_moved"] = result["ours_csr_bytes_moved"]
        timings["ours_csr"] = timings[f"ours_csr_{chosen}"]
    else:
        timings["ours_csr"] = gpu_time([lambda c=c: spmm_cuda(c, operand) for c in csr_copies], replays)
    del csr_copies

    def peer(key: str, launches) -> None:  # a peer that fails is reported as such, not fatal to the run
        try:
            timings[key] = gpu_time(launches(), replays)
        except Exception as error:
            timings[key] = (float("nan"), f"failed: {type(error).__name__}: {error}"[:200])
        torch.cuda.synchronize()

    host = scipy.sparse.csr_matrix(weight.numpy())
    cupy_x = cupy.asarray(operand)
    copies = copies_for(csr_bytes)
    peer(
        "cusparse_csr",
        lambda: [
            on_torch_stream(lambda c=c: c @ cupy_x)
            for c in [cupyx.scipy.sparse.csr_matrix(host) for _ in range(copies)]
        ],
    )
    product = torch.mv if batch == 1 else torch.mm
    torch_csr = weight.to_sparse_csr()
    peer("torch_csr", lambda: [lambda c=c: product(c, operand) for c in [torch_csr.cuda() for _ in range(copies)]])
    dense_copies = copies_for(4 * weight.numel())
    peer("cublas_dense", lambda: [lambda c=c: c @ operand for c in [weight.cuda() for _ in range(dense_copies)]])
    result["csr_fp32_bytes_moved"] = csr_bytes + vectors
    result["dense_bytes_moved"] = 4 * weight.numel() + vectors
    for key, (seconds, mode) in timings.items():
        result[f"{key}_gpu_s"], result[f"{key}_mode"] = seconds, mode
    for key in [k for k in timings if k.startswith("ours_")]:
        result[f"{key}_bandwidth_fraction"] = result[f"{key}_bytes_moved"] / result[f"{key}_gpu_s"] / peak
    # Check the kernels' answers here too: a fast wrong kernel must not make a table.
    expected = weight.cuda() @ operand
    variants: list[str | None] = [v for v in SPMV_VARIANTS if f"ours_csr_{v}" in timings] if batch == 1 else [None]
    checks: list[tuple[SparseLayout | RelativeLayout, str | None]] = [(relative, None)]
    checks += [(layout, v) for v in variants]
    for source, checked in checks:
        got = _spmm_cuda(source.to("cuda"), operand, variant=checked)
        error = float((got - expected).abs().max()) / max(float(expected.abs().max()), 1e-12)
        if error > 1e-5:
            raise AssertionError(f"{type(source).__name__} kernel ({checked}) off by {error:.2e} (relative)")
    torch.cuda.empty_cache()
    cupy.get_default_memory_pool().free_all_blocks()
    return result


def nominal_bandwidth() -> float | None:
    """The memory's peak from its clock and bus width (bytes/s), or None when the driver does not say."""
    import cupy

    runtime = cupy.cuda.runtime
    props = runtime.getDeviceProperties(0)
    clock_khz, bus_bits = props.get("memoryClockRate"), props.get("memoryBusWidth")  # gone from CUDA 13's struct
    try:
        clock_khz = clock_khz or runtime.deviceGetAttribute(getattr(runtime, "cudaDevAttrMemoryClockRate", 36), 0)
        bus_bits = bus_bits or runtime.deviceGetAttribute(getattr(runtime, "cudaDevAttrGlobalMemoryBusWidth", 37), 0)
    except Exception:
        pass
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8


def copy_bandwidth() -> float:
    """A 1 GiB device-to-device copy's rate, bytes read + written per second (best of 5 runs of 10)."""
    source = torch.empty(1 << 28, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(5):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            target.copy_(source)
        stop.record()
        torch.cuda.synchronize()
        best = max(best, 2 * source.numel() * 4 * 10 / (start.elapsed_time(stop) / 1000))
    del source, target
    torch.cuda.empty_cache()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--gpu", action="store_true", help="the GPU rows only (needs CuPy and a CUDA GPU)")
    args = parser.parse_args()
    if args.gpu:
        if not cuda_available():
            raise SystemExit("error: --gpu needs CuPy and a CUDA GPU; neither or one is missing here")
        gpu_main(args.quick)
    else:
        cpu_main(args.quick)


def cases() -> Iterator[tuple[dict, torch.Tensor, SparseLayout]]:
    """(the row's identifying fields, the quantized matrix, its layout) for every matrix, sparsity, batch."""
    for name, shape in MATRICES.items():
        for sparsity in (0.9, 0.95):
            weight = quantized_matrix(shape, sparsity)
            layout = SparseLayout.from_dense(weight)
            for batch in (1, 8):
                yield {"matrix": name, "shape": list(shape), "sparsity": sparsity, "batch": batch}, weight, layout


def cpu_main(quick: bool) -> None:
    info = machine()
    repeat = 3 if quick else 10
    rows = []
    for row, weight, layout in cases():
        row["layout_bytes"] = layout.size_bytes
        row["csr_fp32_bytes"] = 8 * layout.nonzeros + 4 * (weight.shape[0] + 1)
        row.update(cpu_rows(weight, layout, row["batch"], repeat))
        rows.append(row)
        print(row["matrix"], row["sparsity"], row["batch"], {k: v for k, v in row.items() if k.endswith("_s")})
    data = {"machine": info, "rows": rows}
    lines = [
        "# Sparse kernels on the compressed layout: CPU",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.spmv{' --quick' if quick else ''}`.",
        "",
        "Layout: 1-byte codebook symbol + 2-byte column index per nonzero (3 bytes) + int32 row pointers,",
        "against CSR fp32's 8 bytes per nonzero + row pointers. 255 shared values per matrix.",
        "",
        f"## CPU (best of at least {repeat} interleaved rounds after a warm-up, milliseconds; numba {'on' if numba_available() else 'absent: ours is scipy'})",
        "",
        markdown_table(
            [
                "matrix",
                "sparsity",
                "batch",
                "layout / CSR bytes",
                "ours",
                "expanded per call",
                "scipy CSR",
                "torch dense",
                "ours vs scipy CSR",
                "ours vs torch dense",
            ],
            [
                [
                    r["matrix"],
                    r["sparsity"],
                    r["batch"],
                    f"{r['layout_bytes'] / r['csr_fp32_bytes']:.2f}",
                    f"{1e3 * r['ours_cpu_s']:.3f}",
                    f"{1e3 * r['expanded_per_call_s']:.3f}",
                    f"{1e3 * r['scipy_csr_s']:.3f}",
                    f"{1e3 * r['torch_dense_s']:.3f}",
                    f"**{r['scipy_csr_s'] / r['ours_cpu_s']:.2f}x**",
                    f"**{r['torch_dense_s'] / r['ours_cpu_s']:.2f}x**",
                ]
                for r in rows
            ],
        ),
        "",
        "Ratios above 1: ours is faster.",
    ]
    write_results("spmv_cpu", data, "\n".join(lines))
    print("\n".join(lines))


def gpu_main(quick: bool) -> None:
    info = machine()
    nominal, copy = nominal_bandwidth(), copy_bandwidth()
    peak = nominal or copy
    replays = 5 if quick else 20
    rows = []
    for row, weight, layout in cases():
        row["nonzeros"] = layout.nonzeros
        row.update(gpu_rows(weight, layout, row["batch"], replays, peak))
        rows.append(row)
        timings = {k: v for k, v in row.items() if k.endswith(("_s", "_fraction"))}
        print(row["matrix"], row["sparsity"], row["batch"], timings)
    device = info["gpu"]
    data = {"machine": info, "nominal_bandwidth_bytes_per_s": nominal, "copy_bandwidth_bytes_per_s": copy, "rows": rows}
    modes = sorted({r[k] for r in rows for k in r if k.endswith("_mode")})
    lines = [
        f"# Sparse kernels on the compressed layouts: GPU ({device})",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.spmv --gpu{' --quick' if quick else ''}`"
        " (run by `scripts/gpu_check.sh`).",
        "",
        f"Memory bandwidth: {f'{nominal / 1e12:.2f} TB/s' if nominal else 'not reported'} nominal (clock x bus"
        f" width), {copy / 1e12:.2f} TB/s measured (a 1 GiB device-to-device copy, bytes read + written);"
        f" fractions below are of the {'nominal' if nominal else 'measured'} figure.",
        "",
        "Method: each method's operand is copied until the copies exceed 4x the L2 cache (at most 64 copies), one",
        "launch per copy is captured in a CUDA graph and the graph replayed, so every launch streams its matrix",
        "from HBM and no Python or launch latency is timed. The small T-C3D layers hit the 64-copy cap and partly",
        f"stay in L2. Timing modes seen: {', '.join(modes)}. Mean microseconds per multiplication.",
        "Ours (CSR): 1-byte symbol + 2-byte column per nonzero; the default column is the kernel `spmm_cuda` picks",
        "by itself; at batch 1 each of its kernels is timed too: x read through the cache (cached), x staged in",
        "shared memory by every block (staged), and staged with 8-nonzero vector loads of the layout (vector).",
        "Ours (relative): 2-byte packed (delta, symbol) entries, fillers and 8-entry row padding included.",
        "cuSPARSE CSR fp32 through cupyx and through torch. Bandwidth: our layout's bytes + x + y over the",
        "kernel's time, as a fraction of the peak, for our default CSR kernel and the relative one.",
        "",
    ]

    def micros(r: dict, key: str) -> str:
        return f"{1e6 * r[key]:.2f}" if key in r else "-"

    cells = []
    for r in rows:
        best = min(r["ours_csr_gpu_s"], r["ours_relative_gpu_s"])
        cusparse = min((r["cusparse_csr_gpu_s"], r["torch_csr_gpu_s"]), key=lambda t: (t != t, t))  # NaN last
        cells.append([
            r["matrix"], r["sparsity"], r["batch"], micros(r, "ours_csr_gpu_s"),
            *(micros(r, f"ours_csr_{v}_gpu_s") for v in SPMV_VARIANTS),
            micros(r, "ours_relative_gpu_s"), micros(r, "cusparse_csr_gpu_s"), micros(r, "torch_csr_gpu_s"),
            micros(r, "cublas_dense_gpu_s"), f"{cusparse / best:.2f}x", f"{r['cublas_dense_gpu_s'] / best:.2f}x",
            f"{r['ours_csr_bandwidth_fraction']:.2f} / {r['ours_relative_bandwidth_fraction']:.2f}",
        ])  # fmt: skip
    headers = ["matrix", "sparsity", "batch", "ours CSR (default)", "cached", "staged", "vector", "ours relative",
               "cuSPARSE (cupyx)", "cuSPARSE (torch)", "cuBLAS dense", "best ours vs cuSPARSE", "best ours vs dense",
               "bandwidth CSR / relative"]  # fmt: skip
    lines.append(markdown_table(headers, cells))
    lines += ["", '"vs cuSPARSE" compares against the faster of the two cuSPARSE columns.']
    slug = "".join(c if c.isalnum() else "-" for c in str(device).lower()).strip("-")
    write_results(f"spmv_gpu_{slug}", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
