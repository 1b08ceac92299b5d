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
from vidcompress import PruneConfig, Pruner, StepSchedule, finalize_, quantize_
from vidcompress.encode import encode, inspect_container, load_compressed, read_container
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
# LeNet-300-100's first layer (784 x 300, 88% of its weights) the benchmark tries these rates on a
# validation split carved from the training images, keeps the highest whose validation accuracy is within
# ALLOWED_DROP points of the dense model's, and only then trains on all training images and measures the
# test split once. The test split never chooses anything.
FIRST_LAYER_RATES = (0.92, 0.935, 0.94, 0.945, 0.95, 0.955)
ALLOWED_DROP = 0.5
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


def validation_split(
    images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A quarter of the training images held out for choosing settings (seeded, disjoint from test)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    cut = int(0.75 * len(labels))
    fit, held = order[:cut], order[cut:]
    return images[fit], labels[fit], images[held], labels[held]


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
    pruner = Pruner(PruneConfig(rules, StepSchedule(0.1))).attach(model)
    steps = max(StepSchedule(0.1).steps_to_reach(t) for t in pruner.targets_.values())
    for step in range(steps + 3):
        pruner.step()
        train(model, x_fit, y_fit, 3, lr / 5, seed=10 + step)
    pruned = accuracy(model, x_eval, y_eval)
    quantize_(model, bits)
    train(model, x_fit, y_fit, 5, lr / 10, seed=50)
    finalize_(model)
    path = folder / "compressed.vcz"
    encode(model, path, bits=bits, index_bits="auto")
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


def with_first_layer(rules: str, rate: float) -> str:
    first, *rest = rules.split(",")
    return ",".join([f"{first.split('=')[0]}={rate:g}", *rest])


def main() -> None:
    info = machine()
    x_train, y_train, x_test, y_test = digits()
    holdout = validation_split(x_train, y_train)
    rows: dict[str, dict[str, Any]] = {}
    selection: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (build, rules, bits, paper_ratio, lr) in NETWORKS.items():
            if name == "LeNet-300-100":
                for rate in FIRST_LAYER_RATES:
                    trial = compress_lenet(build, with_first_layer(rules, rate), bits, lr, holdout, Path(folder))
                    selection.append({"first_layer_rate": rate, **{k: v for k, v in trial.items() if k != "breakdown"}})
                    print("validation", rate, f"{trial['ratio']:.1f}x", f"{-trial['drop_points']:+.2f}", flush=True)
                passing = [t for t in selection if t["drop_points"] <= ALLOWED_DROP + 1e-9]
                chosen = max(passing, key=lambda t: t["first_layer_rate"]) if passing else selection[0]
                rules = with_first_layer(rules, chosen["first_layer_rate"])
            row = compress_lenet(build, rules, bits, lr, (x_train, y_train, x_test, y_test), Path(folder))
            rows[name] = {**row, "paper_ratio": paper_ratio}
            print(name, {k: v for k, v in rows[name].items() if k != "breakdown"}, flush=True)
    fit, held = len(holdout[1]), len(holdout[3])
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
            f"| {-r['drop_points']:+.2f} | `{r['rules']}` |"
        )
    lines += [
        "",
        "## Choosing LeNet-300-100's first-layer rate (validation split)",
        "",
        f"The training images split {fit:,} / {held}: each rate runs the whole pipeline on the first part and is "
        f"measured on the second; the highest rate within {ALLOWED_DROP} points of the dense model there is "
        "used above, trained on all training images and measured once on the test split. Deep Compression's "
        "rate is 0.92.",
        "",
        "| first-layer rate | ratio | validation accuracy dense -> compressed | change |",
        "|---:|---:|---:|---:|",
        *(
            f"| {t['first_layer_rate']:g} | {t['ratio']:.1f}x | {100 * t['accuracy_dense']:.2f} -> "
            f"{100 * t['accuracy_compressed']:.2f} | {-t['drop_points']:+.2f} |"
            for t in selection
        ),
    ]
    write_results("lenet", {"machine": info, "rows": rows, "selection": selection}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
