"""End-to-end inference, dense against the compressed form: batch 1, on this CPU, in one run.

Models, each pruned and quantized at the paper's settings (conv 0.9 / fc 0.95, 8 / 5 bits; I3D's
classifier is its logits convolution) and encoded: the T-C3D demo model (width 24, 48 x 48), the
full-size T-C3D (width 64, 112 x 112; random weights: speed does not depend on their values) and
DeepMind's I3D (real weights; `python -m examples.real fetch i3d`). For each: the model decoded into
dense modules (`load_compressed`) against `load_sparse` (`auto` with the example video: each layer
timed whole, dense against sparse, on the input it receives, and kept sparse only where at least 10%
faster), time per video at batch 1 (both forms in one process, called in turn; medians), the paper's FPS (frames of video classified per second: a 300-frame video from S clips for T-C3D,
the 64 frames of a view for I3D), and the peak resident memory of a fresh process that loads the
model and runs one video.

    python -m benchmarks.inference [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
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

# Memory: a fresh interpreter per mode that builds, loads (dense or sparse) and runs one video.
MEMORY_RUNNER = """
import json, resource, sys
import torch
from benchmarks.inference import build, example_input, load
spec, container, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
x = example_input(spec)
model = load(spec, container, mode, x)
with torch.no_grad():
    model(x)
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# Time: one fresh interpreter holds both models and calls them in turn (dense, sparse; then sparse,
# dense; ...), so a slow spell of the shared machine falls on both rather than on one mode's process.
TIME_RUNNER = """
import json, sys, time
import torch
from benchmarks.inference import build, example_input, load
spec, container, rounds = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
x = example_input(spec)
models = {mode: load(spec, container, mode, x) for mode in ("dense", "sparse")}
times = {"dense": [], "sparse": []}
with torch.no_grad():
    for model in models.values():
        model(x)
    for round_ in range(rounds):
        for mode in ("dense", "sparse") if round_ % 2 == 0 else ("sparse", "dense"):
            start = time.perf_counter()
            models[mode](x)
            times[mode].append(time.perf_counter() - start)
report = models["sparse"].sparse_report_
print(json.dumps({"times": times, "sparse_layers": [
    {"name": c.name, "dense_ms": c.dense_ms, "sparse_ms": c.sparse_ms} for c in report if c.mode == "sparse"]}))
"""


def load(spec: dict[str, Any], container: str, mode: str, x: torch.Tensor) -> torch.nn.Module:
    """The compressed model decoded into dense modules, or with `load_sparse`'s default (`auto`, probed on x)."""
    from vidcompress import load_compressed, load_sparse

    if mode == "dense":
        return load_compressed(container, build(spec)).eval()
    return load_sparse(container, build(spec), example_inputs=x).eval()


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


def run(runner: str, *args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", runner, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(spec: dict[str, Any], container: Path, rounds: int) -> dict[str, Any]:
    """Medians of the interleaved times, the median of the per-round speed-ups, and peak memory per mode."""
    timing = run(TIME_RUNNER, json.dumps(spec), str(container), str(rounds))
    times = timing["times"]
    row: dict[str, Any] = {"rounds": rounds, "times": times, "sparse_layers": timing["sparse_layers"]}
    for mode in ("dense", "sparse"):
        seconds = statistics.median(times[mode])
        row[mode] = {
            "seconds": seconds,
            "best_seconds": min(times[mode]),
            "fps": spec["video_frames"] / seconds,
            "maxrss_mb": run(MEMORY_RUNNER, json.dumps(spec), str(container), mode)["maxrss_mb"],
        }
    row["speedup"] = statistics.median(d / s for d, s in zip(times["dense"], times["sparse"], strict=True))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the demo model only, 3 rounds")
    args = parser.parse_args()
    info = machine()
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    rounds = 3 if args.quick else 11
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in models.items():
            path = Path(folder) / "model.vcz"
            began = time.perf_counter()
            parameters = compressed_container(spec, path)
            row: dict[str, Any] = {"model": name, "parameters": parameters, "container_bytes": path.stat().st_size}
            row.update(measure(spec, path, rounds))
            row["seconds"] = time.perf_counter() - began
            rows.append(row)
            print(row, flush=True)
    command = "python -m benchmarks.inference" + (" --quick" if args.quick else "")
    lines = [
        "# End-to-end inference: dense against `load_sparse`",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"Batch 1. Time: one fresh process holds both forms and calls them in turn, {rounds} rounds after a "
        "warm-up (the order alternating each round); the table gives medians and the median of the per-round "
        "speed-ups. Peak resident memory: a fresh process per form that loads it and runs one video (it "
        "includes the interpreter and torch). Paper settings (conv 0.9 / fc 0.95, 8 / 5 bits). FPS: frames of "
        "video classified per second (300-frame videos from 3 clips of 8 frames for T-C3D; a 64-frame view for I3D).",
        "",
        markdown_table(
            ["model", "container", "dense (s)", "sparse (s)", "speed-up", "FPS dense -> sparse", "layers sparse",
             "peak MB dense -> sparse"],
            [
                [r["model"], f"{r['container_bytes']:,}", f"{r['dense']['seconds']:.3f}", f"{r['sparse']['seconds']:.3f}",
                 f"**{r['speedup']:.2f}x**", f"{r['dense']['fps']:.0f} -> {r['sparse']['fps']:.0f}",
                 len(r["sparse_layers"]), f"{r['dense']['maxrss_mb']:.0f} -> {r['sparse']['maxrss_mb']:.0f}"]
                for r in rows
            ],
        ),
        "",
        "The layers `load_sparse` made sparse, with its probe's medians (dense ms -> sparse ms):",
        "",
        *(
            f"- {r['model']}: "
            + (", ".join(f"{c['name']} {c['dense_ms']:.2f} -> {c['sparse_ms']:.2f}" for c in r["sparse_layers"]) or "none")
            for r in rows
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
