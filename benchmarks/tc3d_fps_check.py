"""Is `load_sparse` slower than dense on Table IV's model when it keeps every layer dense?

`tc3d_tables.md`'s Table IV (best of 4 alternating rounds over 16 videos) showed the compressed model
with S clips at 6,378 FPS against dense 9,130, although `load_sparse` had swapped none of its 22
layers. This check times the same three forms of that model (dense; `load_sparse`; the decoded
weights in the dense architecture, `load_compressed`) in rounds that alternate their order, medians,
with and without flushing denormal floats (pruned and quantized weights could make tiny activations).

    python -m benchmarks.tc3d_fps_check [--work ~/.cache/vidcompress/work/tc3d_tables_30e] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import cast

import torch

from benchmarks.common import machine, machine_line, write_results
from examples.tc3d.data import ucf101_split
from examples.tc3d.evaluate import load_trained, measure_fps
from examples.tc3d.model import TC3D
from vidcompress import load_compressed, load_sparse
from vidcompress.kernels.modules import SparseReport
from vidcompress.report import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(Path.home() / ".cache/vidcompress/work/tc3d_tables_30e"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    info = machine()
    run = Path(args.work) / "S3-average-seed0"  # Table IV's model and its compressed container
    container = Path(args.work) / "compressed" / "5_huffman.vcz"
    if not container.exists():
        raise SystemExit(f"{container}: not found; run `python -m benchmarks.tc3d_tables --work {args.work}` first")
    dense, config, _ = load_trained(run)
    example = torch.randn(1, config.segments, 3, config.frames, config.size, config.size)
    sparse = cast(TC3D, load_sparse(container, load_trained(run)[0], example_inputs=example))
    models = {
        "dense": dense,
        "load_sparse": sparse,
        "load_compressed": cast(TC3D, load_compressed(container, load_trained(run)[0])),
    }
    swapped = sum(choice.mode == "sparse" for choice in cast(SparseReport, sparse.sparse_report_))
    items, _ = ucf101_split(config.data, train=False)
    paths = [item.path for item in items[:16]]
    for model in models.values():
        measure_fps(model, config, paths[:2])  # warm-up
    rows = {}
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        fps: dict[str, list[float]] = {name: [] for name in models}
        for round_ in range(args.rounds):
            order = list(models) if round_ % 2 == 0 else list(reversed(models))
            for name in order:
                fps[name].append(measure_fps(models[name], config, paths))
        rows[f"flush denormals {'on' if flush else 'off'}"] = {name: statistics.median(v) for name, v in fps.items()}
        print(rows, flush=True)
    torch.set_flush_denormal(False)
    lines = [
        "# Table IV's model: dense, `load_sparse` and `load_compressed`, timed in alternating rounds",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.tc3d_fps_check`.",
        "",
        " ".join(__doc__.split("\n\n")[1].split()),
        "",
        f"`load_sparse` swapped {swapped} of its layers. FPS with S = {config.segments} clips at batch 1, "
        f"median of {args.rounds} rounds over 16 test videos.",
        "",
        markdown_table(["", *models], [[label, *(f"{r[name]:.0f}" for name in models)] for label, r in rows.items()]),
        "",
    ]
    write_results("tc3d_fps_check", {"rows": rows, "swapped": swapped, "rounds": args.rounds}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
