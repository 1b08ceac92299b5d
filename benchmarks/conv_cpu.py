"""Sparse convolutions on the CPU: the direct kernel against torch's dense convolution and im2col + SpMM.

Every convolution of the full-size T-C3D (width 64, 112 x 112, S = 3 clips of 8 frames) and of
DeepMind's I3D (a 64-frame 224 x 224 view), each distinct geometry once, at the input shape the model
gives it. Weights: a random 10% of the taps kept (the paper's conv rate), 255 shared values; the speed
of a sparse kernel depends on the count and spread of nonzeros, not on their values, and the layers'
real weights are not needed (I3D's real ones would give per-row counts a little less even).

Peers, all on one fp32 input, called in turn for `rounds` interleaved rounds (medians):
- dense: `torch.nn.functional.conv3d` (oneDNN) on the dense weight;
- direct: `SparseConv` on the CPU with numba (`conv_numba`: an axpy of the output plane per nonzero,
  a strided convolution's input split into phases first);
- im2col: the path every convolution took before (unfold, then our numba SpMM on the layout).

    python -m benchmarks.conv_cpu [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import machine, machine_line, write_results
from benchmarks.inference import MODELS, build, example_input
from vidcompress.kernels import SparseConv
from vidcompress.kernels.cpu_numba import numba_available
from vidcompress.report import markdown_table

SPARSITY = 0.9
LEVELS = 255


def geometries(name: str) -> list[dict[str, Any]]:
    """Each distinct Conv3d of the model with the input shape it receives, in order of use."""
    spec = MODELS[name]
    model = build(spec).eval()
    seen: dict[tuple, dict[str, Any]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], layer: str) -> None:
        assert isinstance(module, nn.Conv3d)
        if module.groups != 1:
            return
        key = (module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
               tuple(inputs[0].shape))  # fmt: skip
        seen.setdefault(key, {"layer": layer, "module": module, "input": tuple(inputs[0].shape), "count": 0})
        seen[key]["count"] += 1

    handles = [
        m.register_forward_pre_hook(lambda m, i, layer=layer: hook(m, i, layer))
        for layer, m in model.named_modules()
        if isinstance(m, nn.Conv3d)
    ]
    with torch.no_grad():
        model(example_input(spec))
    for handle in handles:
        handle.remove()
    return list(seen.values())


def sparse_copy(conv: nn.Conv3d, seed: int) -> nn.Conv3d:
    """A copy of `conv` with SPARSITY of its taps zero and LEVELS shared values (`padding` as a number
    or tuple; I3D's TF 'SAME' convolutions pad in the module before the convolution)."""
    generator = torch.Generator().manual_seed(seed)
    kernel, stride = cast(tuple[int, int, int], conv.kernel_size), cast(tuple[int, int, int], conv.stride)
    copy = nn.Conv3d(conv.in_channels, conv.out_channels, kernel, stride, cast(Any, conv.padding), bias=False)
    shape = copy.weight.shape
    values = torch.randn(LEVELS, generator=generator) * 0.02
    weight = values[torch.randint(0, LEVELS, shape, generator=generator)]
    keep = torch.rand(shape, generator=generator) >= SPARSITY
    copy.weight.data = torch.where(keep, weight, torch.zeros(()))
    return copy


def measure(conv: nn.Conv3d, x: torch.Tensor, rounds: int) -> dict[str, Any]:
    direct, im2col = SparseConv.from_conv(conv), SparseConv.from_conv(conv)
    im2col._direct = lambda x: False  # type: ignore[method-assign]
    peers = {"dense": lambda: F.conv3d(x, conv.weight, None, conv.stride, conv.padding), "direct": lambda: direct(x),
             "im2col": lambda: im2col(x)}  # fmt: skip
    with torch.no_grad():
        expected = peers["dense"]()
        error = max(float((peer() - expected).abs().max()) for peer in (peers["direct"], peers["im2col"]))
        times: dict[str, list[float]] = {name: [] for name in peers}
        for round_ in range(rounds):
            order = list(peers) if round_ % 2 == 0 else list(reversed(peers))
            for name in order:
                start = time.perf_counter()
                peers[name]()
                times[name].append(time.perf_counter() - start)
    return {
        "nonzeros": direct.layout.nonzeros,
        "relative_error": error / max(float(expected.abs().max()), 1e-12),
        **{f"{name}_s": statistics.median(values) for name, values in times.items()},
    }


def layer_rows(
    quick: bool, measure: Callable[[nn.Conv3d, torch.Tensor], dict[str, Any]], device: str = "cpu"
) -> list[dict[str, Any]]:
    """One row per distinct geometry of the full-size T-C3D and (unless `quick`) I3D: the geometry, then
    what `measure(sparse copy of the layer, its input)` returns."""
    names = [n for n in MODELS if n.startswith("T-C3D full")] + ([] if quick else ["I3D (Kinetics-400)"])
    rows = []
    for name in names:
        for seed, geometry in enumerate(geometries(name)):
            module = geometry["module"]
            x = torch.randn(*geometry["input"], generator=torch.Generator().manual_seed(seed)).to(device)
            row = {"model": name, "layer": geometry["layer"], "uses": geometry["count"], "input": geometry["input"],
                   "kernel": tuple(module.kernel_size), "stride": tuple(module.stride),
                   "out_channels": module.out_channels, **measure(sparse_copy(module, seed), x)}  # fmt: skip
            rows.append(row)
            print(row["layer"], {k: round(v * 1e3, 3) for k, v in row.items() if k.endswith("_s")}, flush=True)
    return rows


def layer_table(rows: list[dict[str, Any]], dense: str, digits: int) -> str:
    """The Markdown table of `layer_rows` with dense, direct and im2col times (ms, `digits` decimals)."""
    return markdown_table(
        ["model", "layer (first of its geometry)", "uses", "kernel", "stride", "input (N, C, T, H, W)", "out",
         "nonzeros", f"{dense} ms", "direct ms", "im2col ms", "direct vs dense", "direct vs im2col"],
        [[r["model"].split(" (")[0], r["layer"], r["uses"], "x".join(map(str, r["kernel"])),
          "x".join(map(str, r["stride"])), ", ".join(map(str, r["input"])), r["out_channels"], f"{r['nonzeros']:,}",
          *(f"{1e3 * r[f'{peer}_s']:.{digits}f}" for peer in ("dense", "direct", "im2col")),
          f"**{r['dense_s'] / r['direct_s']:.2f}x**", f"{r['im2col_s'] / r['direct_s']:.2f}x"] for r in rows],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T-C3D only, 3 rounds")
    args = parser.parse_args()
    if not numba_available():
        raise SystemExit("numba is not installed: the direct kernel needs it (pip install 'vidcompress[cpu]')")
    torch.set_num_threads(2)
    info = machine()
    rounds = 3 if args.quick else 9
    rows = [{**row, "rounds": rounds} for row in layer_rows(args.quick, lambda conv, x: measure(conv, x, rounds))]
    table = layer_table(rows, "dense", 2)
    worst = max(r["relative_error"] for r in rows)
    markdown = "\n".join([
        "# Sparse convolutions on the CPU: direct kernel, dense, im2col", "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.conv_cpu{' --quick' if args.quick else ''}`.", "",
        f"Every distinct Conv3d geometry of the models at the input the model gives it (batch 1 video; T-C3D's "
        f"3 clips are its N). A random {100 * (1 - SPARSITY):.0f}% of taps kept, {LEVELS} shared values; "
        f"medians of {rows[0]['rounds']} interleaved rounds (torch and numba on 2 threads). Largest difference "
        f"from the dense output: {worst:.1e} of its largest value.", "",
        table, "",
        "Speed-ups above 1: the direct kernel is faster. `load_sparse` measures each layer itself and keeps "
        "the dense convolution where the direct kernel is not at least 10% faster.",
    ])  # fmt: skip
    name = "conv_cpu_quick" if args.quick else "conv_cpu"  # a smoke run never replaces the results
    write_results(name, {"machine": info, "sparsity": SPARSITY, "levels": LEVELS, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
