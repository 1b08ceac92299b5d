"""Whole against half-bit quantizer steps in size budgets (`benchmarks/results/budget_half_bits.md`).

A budget picks each layer's quantizer from a grid of bits. In whole bits, a model whose best rate
falls between two widths can only time-share: some layers a bit coarser, others a bit finer, which
at high rate costs more error than every layer sitting in between (the error falls as 2^-2b, a
convex curve). Half bits (the odd level count nearest 2^b - 1: 5, 11, 21, 45 ...) give each layer
the point in between. This compresses the same trained networks to the same target ratios with the
uniform quantizer and no pruning, in whole bits and in half bits, data-free, and reports the file,
the budget's damage estimate (relative squared error summed over layers) and the measured fidelity
(validation accuracy on MNIST; agreement and KL to the dense model on the I3D clips).

    python -m benchmarks.budget_half_bits [--models lenet-300-100,lenet-5,mnist-cnn,i3d]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, machine_line, write_results
from benchmarks.nncodec import Subject, i3d_subject, mnist_subject
from vidcompress import load_compressed
from vidcompress.budget import DEFAULT_BUDGET_BITS, DEFAULT_FINE_BITS, BudgetConfig, Target, compress_to_budget
from vidcompress.errors import ConfigError
from vidcompress.report import markdown_table

RATIOS = {"lenet-300-100": (12.0, 16.0, 20.0, 25.0), "lenet-5": (12.0, 16.0, 20.0, 25.0),
          "mnist-cnn": (8.0, 12.0, 16.0, 20.0), "i3d": (7.0, 8.0, 9.0)}  # fmt: skip
GRIDS = {"whole bits": DEFAULT_BUDGET_BITS, "half bits": DEFAULT_FINE_BITS}


def subject_of(key: str) -> Subject:
    return i3d_subject() if key == "i3d" else mnist_subject(key)


def sweep(subject: Subject, ratios: tuple[float, ...]) -> list[dict[str, Any]]:
    rows = []
    for grid, bits in GRIDS.items():
        config = BudgetConfig(sparsities=(0.0,), method="uniform", bits=bits)
        candidates: dict[str, Any] = {}
        for ratio in ratios:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.vcz"
                start = time.perf_counter()
                try:
                    allocation, _ = compress_to_budget(subject.state, path, Target("ratio", ratio), config,
                                                       cache=candidates)  # fmt: skip
                except ConfigError as error:  # below the smallest file whole bits (at least 2) give
                    rows.append({"grid": grid, "ratio": ratio, "unreachable": str(error)})
                    continue
                seconds = time.perf_counter() - start
                model = load_compressed(path, subject.build()).eval()
                rows.append({
                    "grid": grid, "ratio": ratio, "bytes": path.stat().st_size, "damage": allocation.damage,
                    "seconds": seconds, **subject.measure(model),
                })  # fmt: skip
            print(subject.key, rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet-300-100,lenet-5,mnist-cnn,i3d")
    args = parser.parse_args()
    info = machine()
    torch.set_num_threads(1)
    results: dict[str, dict[str, Any]] = {}
    for key in args.models.split(","):
        subject = subject_of(key)
        results[key] = {"title": subject.title, "baseline": subject.baseline, "rows": sweep(subject, RATIOS[key])}
    lines = [
        "# Size budgets: whole against half-bit quantizer steps",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.budget_half_bits --models {args.models}` "
        "(one thread).",
        "",
        "Each trained network through `compress_to_budget` at the same target ratios, uniform levels, no "
        "pruning, data-free; candidates in whole bits (2-8: 3, 7, 15 ... levels) or half bits (2-8 in steps of "
        "0.5: also 5, 11, 21, 45 ... levels). Damage: the budget's own estimate, relative squared error summed "
        "over layers (lower is better). Fidelity: validation accuracy (%) for the MNIST networks; top-1 "
        "agreement and KL(dense || compressed) on the ten I3D clips' centre views for I3D.",
    ]
    for result in results.values():
        measures = [k for k in result["baseline"] if k not in ("test",)]
        lines += ["", f"## {result['title']}", "", "Dense: " + ", ".join(
            f"{k} {v:.4g}" for k, v in result["baseline"].items()) + ".", ""]  # fmt: skip
        table = []
        for row in result["rows"]:
            if "unreachable" in row:
                table.append([row["grid"], f"{row['ratio']:g}x", "unreachable", "", *([""] * len(measures))])
                continue
            table.append([
                row["grid"], f"{row['ratio']:g}x", f"{row['bytes']:,}", f"{row['damage']:.4g}",
                *(f"{row[m]:.4g}" for m in measures),
            ])  # fmt: skip
        lines.append(markdown_table(["grid", "target", "bytes", "damage", *measures], table))
    write_results("budget_half_bits", {"machine": info, "results": results}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
