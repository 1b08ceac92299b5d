"""End-to-end inference, dense against the compressed form: batch 1, on this CPU, in one run.

Models, each pruned and quantized at the paper's settings (conv 0.9 / fc 0.95, 8 / 5 bits; I3D's
classifier is its logits convolution) and encoded: the T-C3D demo model (width 24, 48 x 48), the
full-size T-C3D (width 64, 112 x 112; random weights: speed does not depend on their values) and
DeepMind's I3D (real weights; `python -m examples.real fetch i3d`). For each: the model decoded into
dense modules (`load_compressed`) against `load_sparse` (`auto` with the example video: each layer
timed whole, dense against sparse, on the input it receives, and kept sparse only where faster), time
per video at batch 1 (best of the repeats after a warm-up),
the paper's FPS (frames of video classified per second: a 300-frame video from S clips for T-C3D,
the 64 frames of a view for I3D), and the peak resident memory of a fresh process that loads the
model and runs one video.

    python -m benchmarks.inference [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, machine_line, write_results
from vidcompress.report import markdown_table

MODELS: dict[str, dict[str, Any]] = {
    "T-C3D demo (width 24, 48 x 48)": {"builder": "tc3d", "width": 24, "size": 48, "video_frames": 300},
    "T-C3D full size (width 64, 112 x 112)": {"builder": "tc3d", "width": 64, "size": 112, "video_frames": 300},
    "I3D (Kinetics-400)": {"builder": "i3d", "video_frames": 64},
}

# Run in a fresh interpreter: build, load (dense or sparse), one warm-up and timed videos; report.
RUNNER = """
import json, resource, sys, time
import torch
from benchmarks.inference import build, example_input
spec, container, mode, repeat = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
x = example_input(spec)
if mode == "dense":
    from vidcompress import load_compressed
    model = load_compressed(container, build(spec)).eval()
    sparse_layers = 0
else:
    from vidcompress import load_sparse
    model = load_sparse(container, build(spec), example_inputs=x).eval()
    sparse_layers = sum(choice.mode == "sparse" for choice in model.sparse_report_)
best = float("inf")
with torch.no_grad():
    model(x)
    for _ in range(repeat):
        start = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - start)
print(json.dumps({"seconds": best, "sparse_layers": sparse_layers,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(spec: dict[str, Any]) -> torch.nn.Module:
    if spec["builder"] == "i3d":
        from examples.i3d.model import I3D

        return I3D()
    from examples.tc3d.model import build_tc3d

    return build_tc3d(num_classes=101, width=spec["width"], segments=3, fusion="average")


def example_input(spec: dict[str, Any]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if spec["builder"] == "i3d":
        return torch.rand(1, 3, 64, 224, 224, generator=generator) * 2 - 1
    return torch.randn(1, 3, 3, 8, spec["size"], spec["size"], generator=generator)


def compressed_container(spec: dict[str, Any], path: Path) -> int:
    """Prune, quantize and encode the model at the paper's settings; the parameter count."""
    from vidcompress import PruneConfig, QuantizeConfig, encode, finalize_, prune_, quantize_

    if spec["builder"] == "i3d":
        from examples.i3d.compress import PAPER_BITS, PAPER_SPARSITY
        from examples.i3d.convert import pretrained_i3d

        model: torch.nn.Module = pretrained_i3d()
        sparsity, bits = PAPER_SPARSITY, PAPER_BITS
    else:
        torch.manual_seed(0)
        model = build(spec)
        sparsity, bits = "conv=0.9,fc=0.95", "conv=8,fc=5"
    prune_(model, PruneConfig(sparsity=sparsity))
    quantize_(model, QuantizeConfig(bits=bits))
    finalize_(model)
    encode(model, path)
    return sum(p.numel() for p in model.parameters())


def measure(spec: dict[str, Any], container: Path, mode: str, repeat: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(spec), str(container), mode, str(repeat)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the demo model only, 2 repeats")
    args = parser.parse_args()
    info = machine()
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    repeat = 2 if args.quick else 5
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in models.items():
            path = Path(folder) / "model.vcz"
            began = time.perf_counter()
            parameters = compressed_container(spec, path)
            row: dict[str, Any] = {"model": name, "parameters": parameters, "container_bytes": path.stat().st_size}
            for mode in ("dense", "sparse"):
                row[mode] = measure(spec, path, mode, repeat)
                row[mode]["fps"] = spec["video_frames"] / row[mode]["seconds"]
            row["seconds"] = time.perf_counter() - began
            rows.append(row)
            print(row, flush=True)
    command = "python -m benchmarks.inference" + (" --quick" if args.quick else "")
    lines = [
        "# End-to-end inference: dense against `load_sparse`",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        "Batch 1, best of the repeats after a warm-up, each mode in a fresh process (its peak resident memory "
        "includes the interpreter and torch). Paper settings (conv 0.9 / fc 0.95, 8 / 5 bits). FPS: frames of "
        "video classified per second (300-frame videos from 3 clips of 8 frames for T-C3D; a 64-frame view for I3D).",
        "",
        markdown_table(
            ["model", "container", "dense (s)", "sparse (s)", "speed-up", "FPS dense -> sparse", "layers sparse",
             "peak MB dense -> sparse"],
            [
                [r["model"], f"{r['container_bytes']:,}", f"{r['dense']['seconds']:.3f}", f"{r['sparse']['seconds']:.3f}",
                 f"**{r['dense']['seconds'] / r['sparse']['seconds']:.2f}x**", f"{r['dense']['fps']:.0f} -> {r['sparse']['fps']:.0f}",
                 r["sparse"]["sparse_layers"], f"{r['dense']['maxrss_mb']:.0f} -> {r['sparse']['maxrss_mb']:.0f}"]
                for r in rows
            ],
        ),
        "",
        "Speed-up above 1: the compressed model runs faster. `load_sparse` decodes the container into the "
        "model first and then replaces layers, so its peak includes the dense weights of that moment, and "
        "numba's compiler when its kernels load.",
    ]  # fmt: skip
    write_results(
        "inference_quick" if args.quick else "inference",
        {"machine": info, "command": command, "rows": rows},
        "\n".join(lines),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
