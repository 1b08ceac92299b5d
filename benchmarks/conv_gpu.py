"""Sparse convolutions on a GPU: the CUDA direct kernel against cuDNN's dense convolution and im2col + SpMM.

The same layers as `conv_cpu.py` (every distinct Conv3d geometry of the full-size T-C3D and of I3D, 10%
of the taps kept, 255 shared values), on the GPU: dense is `torch.nn.functional.conv3d` (cuDNN,
TF32 off), direct is `SparseConv` with `direct_on_gpu` (`conv_cuda`), im2col is `SparseConv`'s default
on a GPU (unfold, then our CUDA SpMM). Times: each peer captured in a CUDA graph and replayed (eager
where a library refuses capture), mean per call. Needs CuPy and a CUDA GPU; `scripts/gpu_check.sh`
runs it and names the results after the device.

    python -m benchmarks.conv_gpu [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import machine, machine_line, write_results
from benchmarks.conv_cpu import LEVELS, SPARSITY, layer_rows, layer_table
from benchmarks.spmv import gpu_time
from vidcompress.kernels import SparseConv, cuda_available


def measure(conv: torch.nn.Conv3d, x: torch.Tensor, replays: int) -> dict[str, Any]:
    direct, im2col = SparseConv.from_conv(conv).cuda(), SparseConv.from_conv(conv).cuda()
    direct.direct_on_gpu = True
    weight = conv.weight.detach().cuda()
    peers = {
        "dense": lambda: F.conv3d(x, weight, None, conv.stride, conv.padding),
        "direct": lambda: direct(x),
        "im2col": lambda: im2col(x),
    }
    row: dict[str, Any] = {"nonzeros": direct.layout.nonzeros}
    with torch.no_grad():
        expected = peers["dense"]()
        error = max(float((peers[name]() - expected).abs().max()) for name in ("direct", "im2col"))
        row["relative_error"] = error / max(float(expected.abs().max()), 1e-12)
        for name, peer in peers.items():
            row[f"{name}_s"], row[f"{name}_mode"] = gpu_time([peer], replays)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T-C3D only, fewer replays")
    args = parser.parse_args()
    if not cuda_available():
        raise SystemExit("no CUDA GPU with CuPy: nothing to measure")
    torch.backends.cudnn.allow_tf32 = False  # fp32 against fp32
    info = machine()
    device = torch.cuda.get_device_name()
    rows = layer_rows(args.quick, lambda conv, x: measure(conv, x, 5 if args.quick else 20), device="cuda")
    table = layer_table(rows, "cuDNN dense", 3)
    eager = sorted({f"{k[:-5]}: {v}" for r in rows for k, v in r.items() if k.endswith("_mode") and v != "graph"})
    markdown = "\n".join([
        f"# Sparse convolutions on a GPU ({device}): direct kernel, cuDNN dense, im2col", "",
        f"Machine: {machine_line(info)}; {device}. Command: `python -m benchmarks.conv_gpu{' --quick' if args.quick else ''}`.", "",
        f"Every distinct Conv3d geometry of the models at the input the model gives it (batch 1 video). A random "
        f"{100 * (1 - SPARSITY):.0f}% of taps kept, {LEVELS} shared values; fp32 (TF32 off); mean time per call of "
        f"CUDA-graph replays. Largest difference from the dense output: "
        f"{max(r['relative_error'] for r in rows):.1e} of its largest value."
        + (f" Timed eagerly (not captured): {', '.join(eager)}." if eager else ""), "",
        table, "",
        "Speed-ups above 1: the direct kernel is faster.",
    ])  # fmt: skip
    slug = "".join(c if c.isalnum() else "-" for c in device.lower()).strip("-")
    data = {"machine": info, "device": device, "sparsity": SPARSITY, "levels": LEVELS, "rows": rows}
    write_results(f"conv_gpu_{slug}" + ("_quick" if args.quick else ""), data, markdown)


if __name__ == "__main__":
    main()
