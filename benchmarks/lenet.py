"""Deep Compression's Table 1 analogues: LeNet-300-100 and LeNet-5 on scikit-learn's digits.

The 8 x 8 digits are upsampled to 28 x 28 so that both networks have their MNIST shapes (784-300-100-10,
266,610 parameters; Caffe's LeNet-5, 431,080). Each is trained, pruned on a progressive schedule with
retraining (Deep Compression's per-layer rates; LeNet-300-100's first layer at the highest rate that
holds accuracy on a validation split), quantized (6 bits for LeNet-300-100's fc, 8 conv / 5 fc for
LeNet-5, as in the paper) with centroid fine-tuning, and encoded. Sizes are files on disk; accuracy is on
the held-out 25% of digits, measured once.

    python -m benchmarks.lenet
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from benchmarks.common import machine, machine_line, write_results
from examples.tc3d.report import signed_points
from vidcompress import PruneConfig, Pruner, StepSchedule, finalize_, quantize_
from vidcompress.codec import EncodeConfig, encode, inspect_container, load_compressed, read_container
from vidcompress.io import save_state_dict


def lenet_300_100() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def lenet_5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )  # fmt: skip


NETWORKS = {
    # name: (builder, pruning rules, bits, paper ratio, learning rate): Deep Compression's Table 2/3 rates.
    "LeNet-300-100": (lenet_300_100, "1.weight=0.92,3.weight=0.91,5.weight=0.74", "fc=6", 40, 0.05),
    "LeNet-5": (lenet_5, "0.weight=0.66,2.weight=0.88,5.weight=0.92,7.weight=0.81", "conv=8,fc=5", 39, 0.01),
}
# The inputs are digits upsampled from 8 x 8, not MNIST, so the paper's rates are a starting point. For
# LeNet-300-100's first layer (784 x 300, 88% of its weights) the benchmark scans these rates upwards with
# 4-fold cross-validation on the training images (every training image is validated once per rate) and
# stops at the first rate whose mean validation change is worse than -ALLOWED_DROP points; the rate before
# it is trained on all training images and measured on the test split once. The test split never
# chooses anything. (A single 337-image validation split was too noisy: its rates passed and failed out
# of order, and "the highest that passes" then picked a rate that lost points on the test split.)
FIRST_LAYER_RATES = (0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)
ALLOWED_DROP = 0.5
FOLDS = 4
EPOCHS = 40


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    labels = torch.tensor(data.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    cut = int(0.75 * len(labels))
    train, test = order[:cut], order[cut:]
    return images[train], labels[train], images[test], labels[test]


def folds(
    images: torch.Tensor, labels: torch.Tensor, count: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`count` (fit, validation) splits of the training images; each image is validated in one of them."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    parts = order.chunk(count)
    splits = []
    for index, held in enumerate(parts):
        fit = torch.cat([part for other, part in enumerate(parts) if other != index])
        splits.append((images[fit], labels[fit], images[held], labels[held]))
    return splits


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, seed: int) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed * 100 + epoch)
        model.train()
        for batch in torch.randperm(len(labels), generator=generator).split(64):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    return float((model(images).argmax(1) == labels).float().mean())


def compress_lenet(
    build: Callable[[], nn.Module],
    rules: str,
    bits: str,
    lr: float,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    folder: Path,
) -> dict[str, Any]:
    """Train, prune progressively with retraining, quantize with fine-tuning, encode; measure on data[2:]."""
    x_fit, y_fit, x_eval, y_eval = data
    torch.manual_seed(0)
    model = build()
    train(model, x_fit, y_fit, EPOCHS, lr, seed=1)
    dense_path = folder / "dense.safetensors"
    save_state_dict(model.state_dict(), dense_path)
    baseline = accuracy(model, x_eval, y_eval)
    pruner = Pruner(PruneConfig(sparsity=rules, schedule=StepSchedule(0.1))).attach(model)
    steps = max(StepSchedule(0.1).steps_to_reach(t) for t in pruner.targets_.values())
    for step in range(steps + 3):
        pruner.step()
        train(model, x_fit, y_fit, 3, lr / 5, seed=10 + step)
    pruned = accuracy(model, x_eval, y_eval)
    quantize_(model, bits)
    train(model, x_fit, y_fit, 5, lr / 10, seed=50)
    finalize_(model)
    path = folder / "compressed.vcz"
    encode(model, path, EncodeConfig(bits=bits, index_bits="auto"))
    final = accuracy(load_compressed(path, build()), x_eval, y_eval)
    report = inspect_container(read_container(path))
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "dense_bytes": dense_path.stat().st_size,
        "container_bytes": path.stat().st_size,
        "ratio": dense_path.stat().st_size / path.stat().st_size,
        "accuracy_dense": baseline,
        "accuracy_pruned": pruned,
        "accuracy_compressed": final,
        "drop_points": 100 * (baseline - final),
        "bits_per_parameter": report.totals()["bits_per_parameter"],
        "sparsity": 1 - report.totals()["nonzeros"] / sum(layer.parameters for layer in report.layers),
        "breakdown": report.breakdown,
        "rules": rules,
        "bits": bits,
    }


def choose_first_layer_rate(
    build: Callable[[], nn.Module],
    rules: str,
    bits: str,
    lr: float,
    splits: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    folder: Path,
    selection: list[dict[str, Any]],
) -> float:
    """Scan FIRST_LAYER_RATES upwards by cross-validation; the last rate before the first failure."""
    chosen = FIRST_LAYER_RATES[0]
    for rate in FIRST_LAYER_RATES:
        trials = [compress_lenet(build, with_first_layer(rules, rate), bits, lr, split, folder) for split in splits]
        held = [len(split[3]) for split in splits]
        entry = {
            "first_layer_rate": rate,
            "ratio": sum(t["ratio"] for t in trials) / len(trials),
            "accuracy_dense": pooled(trials, held, "accuracy_dense"),
            "accuracy_compressed": pooled(trials, held, "accuracy_compressed"),
            "fold_changes": [-t["drop_points"] for t in trials],
        }
        entry["drop_points"] = 100 * (entry["accuracy_dense"] - entry["accuracy_compressed"])
        selection.append(entry)
        print("validation", rate, f"{entry['ratio']:.1f}x", signed_points(entry["drop_points"]), flush=True)
        if entry["drop_points"] > ALLOWED_DROP + 1e-9:
            break
        chosen = rate
    return chosen


def pooled(trials: list[dict[str, Any]], held: list[int], key: str) -> float:
    """An accuracy over all the folds' validation answers (each fold weighted by its size)."""
    return sum(trial[key] * count for trial, count in zip(trials, held, strict=True)) / sum(held)


def with_first_layer(rules: str, rate: float) -> str:
    first, *rest = rules.split(",")
    return ",".join([f"{first.split('=')[0]}={rate:g}", *rest])


def main() -> None:
    info = machine()
    x_train, y_train, x_test, y_test = digits()
    splits = folds(x_train, y_train, FOLDS)
    rows: dict[str, dict[str, Any]] = {}
    selection: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (build, rules, bits, paper_ratio, lr) in NETWORKS.items():
            if name == "LeNet-300-100":
                rules = with_first_layer(
                    rules, choose_first_layer_rate(build, rules, bits, lr, splits, Path(folder), selection)
                )
            row = compress_lenet(build, rules, bits, lr, (x_train, y_train, x_test, y_test), Path(folder))
            rows[name] = {**row, "paper_ratio": paper_ratio}
            print(name, {k: v for k, v in rows[name].items() if k != "breakdown"}, flush=True)
    lines = [
        "# Deep Compression's Table 1 analogues: LeNets on scikit-learn's digits",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.lenet`.",
        "",
        f"Digits upsampled from 8 x 8 to 28 x 28 (MNIST's shape); {len(y_train):,} training and {len(y_test)} "
        f"test images. Trained {EPOCHS} epochs of SGD (lr 0.05 for LeNet-300-100, 0.01 for LeNet-5); pruned "
        "+0.1 per step to Deep Compression's per-layer rates with 3 epochs of retraining per step (lr / 5); "
        "quantized with 5 epochs of centroid fine-tuning (lr / 10); encoded with `auto` index bits. Accuracy "
        "of the model decoded from the container.",
        "",
        "| network | parameters | fp32 file | container | ratio (paper) | bits / parameter | weights kept "
        "| accuracy dense -> pruned -> compressed | change | rules |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['dense_bytes']:,} | {r['container_bytes']:,} "
            f"| **{r['ratio']:.1f}x** ({r['paper_ratio']}x) | {r['bits_per_parameter']:.3f} | {100 * (1 - r['sparsity']):.1f}% "
            f"| {100 * r['accuracy_dense']:.2f} -> {100 * r['accuracy_pruned']:.2f} -> {100 * r['accuracy_compressed']:.2f} "
            f"| {signed_points(r['drop_points'])} | `{r['rules']}` |"
        )
    lines += [
        "",
        "## Choosing LeNet-300-100's first-layer rate (cross-validation on the training images)",
        "",
        f"Each rate, from Deep Compression's 0.92 upwards, runs the whole pipeline {FOLDS} times, each time "
        f"trained on {FOLDS - 1} of {FOLDS} parts of the training images and measured on the part left out, so "
        f"every training image is validated once. The scan stops at the first rate whose change, over all "
        f"{len(y_train):,} validation answers, is worse than -{ALLOWED_DROP} points; the rate before it is used "
        "above, trained on all training images and measured once on the test split.",
        "",
        "| first-layer rate | mean ratio | validation accuracy dense -> compressed | change | change per fold |",
        "|---:|---:|---:|---:|---|",
        *(
            f"| {t['first_layer_rate']:g} | {t['ratio']:.1f}x | {100 * t['accuracy_dense']:.2f} -> "
            f"{100 * t['accuracy_compressed']:.2f} | {signed_points(t['drop_points'])} | "
            f"{', '.join(signed_points(-change) for change in t['fold_changes'])} |"
            for t in selection
        ),
    ]
    write_results("lenet", {"machine": info, "rows": rows, "selection": selection}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
