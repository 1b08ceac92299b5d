"""A trained network nobody tuned for us: the `ccexam` MNIST CNN (Conv32-Conv64-FC128-FC10, 99.05%)
compressed one-shot, with no data, at a range of settings; test error of the model decoded from each
container, on the 10,000 MNIST test images (the package's normalisation).

    python -m benchmarks.mnist_cnn
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import machine, machine_line, write_results
from examples.real import load_ccexam_state_dict, load_mnist
from vidcompress import PruneConfig, QuantizeConfig, encode, finalize_, load_compressed, prune_, quantize_
from vidcompress.io import save_state_dict
from vidcompress.report import markdown_table

SETTINGS: list[tuple[str, str | None, str]] = [
    ("the library's defaults", "conv=0.3,fc=0.3", "conv=8,fc=8"),
    ("8 bits, no pruning", None, "conv=8,fc=8"),
    ("4 bits, no pruning", None, "conv=4,fc=4"),
    ("0.5, 8 bits", "conv=0.5,fc=0.5", "conv=8,fc=8"),
    ("0.7, 6 bits", "conv=0.7,fc=0.7", "conv=6,fc=6"),
    ("the paper's 0.9 / 0.95, 8 / 5 bits", "conv=0.9,fc=0.95", "conv=8,fc=5"),
]


class MNISTNet(nn.Module):
    """ccexam's layout (its `DigitCNN` at 28 x 28), rebuilt here: the wheel's code is never imported."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Linear(64 * 49, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def main() -> None:
    info = machine()
    images, labels = load_mnist()["test"]
    x = (torch.from_numpy(images).view(-1, 1, 28, 28) - 0.1307) / 0.3081
    y = torch.from_numpy(labels)

    def error(model: nn.Module) -> float:
        with torch.no_grad():
            return 100.0 * float((model.eval()(x).argmax(1) != y).float().mean())

    dense = MNISTNet()
    dense.load_state_dict(load_ccexam_state_dict())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        save_state_dict(dense.state_dict(), Path(folder) / "dense.safetensors")
        dense_bytes = (Path(folder) / "dense.safetensors").stat().st_size
        baseline = error(dense)
        for label, sparsity, bits in SETTINGS:
            model = MNISTNet()
            model.load_state_dict(load_ccexam_state_dict())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if sparsity:
                    prune_(model, PruneConfig(sparsity=sparsity))
                quantize_(model, QuantizeConfig(bits=bits))
            finalize_(model)
            path = Path(folder) / "m.vcz"
            encode(model, path)
            decoded = load_compressed(path, MNISTNet())
            rows.append({"setting": label, "sparsity": sparsity, "bits": bits, "bytes": path.stat().st_size,
                         "ratio": dense_bytes / path.stat().st_size, "test_error": error(decoded)})  # fmt: skip
            print(rows[-1], flush=True)
    lines = [
        "# A trained MNIST CNN compressed one-shot (no data)",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.mnist_cnn`.",
        "",
        f"The `ccexam` CNN ({sum(p.numel() for p in dense.parameters()):,} parameters, a {dense_bytes:,}-byte fp32 "
        f"file), test error {baseline:.2f}% on MNIST's 10,000 test images. Each setting: magnitude pruning, k-means "
        "weight sharing, encode; the error is that of the model decoded from the container.",
        "",
        markdown_table(
            ["setting", "bytes", "ratio", "test error (%)", "change (points)"],
            [[r["setting"], f"{r['bytes']:,}", f"{r['ratio']:.1f}x", f"{r['test_error']:.2f}",
              f"{r['test_error'] - baseline:+.2f}"] for r in rows],
        ),
    ]  # fmt: skip
    write_results("mnist_cnn", {"machine": info, "baseline_error": baseline, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
