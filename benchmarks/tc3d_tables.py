"""T-C3D on the synthetic action set: the analogues of the paper's Table II (S = 1, 3, 6 clips) and
Table I (the four fusion functions), with accuracy per class family.

A CPU-sized configuration (width 8, 48 x 48 input, 8-frame clips at stride 2), trained from scratch
for each row; minutes per row on 2 cores.

    python -m benchmarks.tc3d_tables [--epochs 15] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, machine_line, write_results
from examples.tc3d.data import ucf101_split
from examples.tc3d.synthetic import CATALOGUE, generate
from examples.tc3d.train import TrainConfig, build_model, evaluation_loader, predict, run_training
from vidcompress.io import load_state_dict
from vidcompress.report import markdown_table

FAMILIES = ("appearance", "motion", "composition", "order")


@torch.no_grad()
def family_accuracy(config: TrainConfig) -> dict[str, float]:
    """Video accuracy (S centred clips) on the test split, overall and per class family."""
    items, classes = ucf101_split(config.data, train=False)
    model = build_model(config, len(classes))
    model.load_state_dict(load_state_dict(Path(config.out) / "model.safetensors")[0])
    answers = predict(model, evaluation_loader(config, items))
    predicted, truth = answers.predicted, answers.labels
    family_of = np.array([CATALOGUE[i].family for i in range(len(classes))])
    result = {"all": float((predicted == truth).mean())}
    for family in FAMILIES:
        chosen = family_of[truth] == family
        if chosen.any():
            result[family] = float((predicted[chosen] == truth[chosen]).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 epochs, small data")
    args = parser.parse_args()
    epochs = 3 if args.quick else args.epochs
    info = machine()
    with tempfile.TemporaryDirectory() as folder:
        root = generate(Path(folder) / "synthetic", classes=8, videos_per_class=16 if args.quick else 32)
        base = TrainConfig(
            data=str(root), width=8, size=48, frames=8, stride=2, epochs=epochs, batch_size=8, lr=0.01,
            lr_steps=[int(epochs * 0.67), int(epochs * 0.87)], dropout=0.5, workers=2, progress=False,
        )  # fmt: skip
        runs = {
            "S=1, average": replace(base, segments=1, fusion="average"),
            "S=3, average": replace(base, segments=3, fusion="average"),
            "S=6, average": replace(base, segments=6, fusion="average"),
            "S=3, max": replace(base, segments=3, fusion="max"),
            "S=3, weighted": replace(base, segments=3, fusion="weighted"),
            "S=3, attention": replace(base, segments=3, fusion="attention"),
            "S=6, weighted": replace(base, segments=6, fusion="weighted"),
        }
        rows = {}
        for name, config in runs.items():
            config.out = str(Path(folder) / name.replace(", ", "-").replace("=", ""))
            start = time.perf_counter()
            run_training(config)
            rows[name] = {"seconds": time.perf_counter() - start, **family_accuracy(config)}
            print(name, rows[name], flush=True)
    config_record = {k: v for k, v in asdict(base).items() if k not in ("data", "out", "segments", "fusion")}
    data = {"machine": info, "config": config_record, "classes": [c.name for c in CATALOGUE[:8]], "rows": rows}

    def table(names: list[str]) -> list[str]:
        headers = ["configuration", "all", *FAMILIES, "train (s)"]
        cells = [
            [name, *(f"{100 * rows[name][f]:.1f}" for f in ("all", *FAMILIES)), f"{rows[name]['seconds']:.0f}"]
            for name in names
        ]
        return [markdown_table(headers, cells)]

    command = "python -m benchmarks.tc3d_tables" + (" --quick" if args.quick else f" --epochs {epochs}")
    lines = [
        "# T-C3D on the synthetic action set: Tables II and I",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        "Data: 8 classes x 32 videos (24 train, 8 test each), 48 frames of 64 x 64, written as .avi and read "
        "back with PyAV. Families: appearance (RedBall, BlueSquare), short-term motion (Rise, Fall), long-term "
        "composition (HighJump, LongJump: a shared run-up for two thirds of the video), long-term order "
        "(RiseThenFall, FallThenRise: the same two movements, a segment-long pause between them).",
        f"Model: T-C3D, width 8, 48 x 48 input, 8-frame clips at stride 2; {epochs} epochs of SGD (lr 0.01, "
        "momentum 0.9, weight decay 5e-5, x0.1 at 2/3 and 7/8), dropout 0.5, batch 8. Video accuracy (%) on "
        "the test split with S centred clips; chance is 50% within a family.",
        "",
        "## Table II analogue: number of clips S (average fusion, and weighted)",
        "",
        *table(["S=1, average", "S=3, average", "S=6, average", "S=3, weighted", "S=6, weighted"]),
        "",
        "## Table I analogue: fusion functions (S = 3)",
        "",
        *table(["S=3, average", "S=3, max", "S=3, weighted", "S=3, attention"]),
    ]
    write_results("tc3d_tables", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
