"""A trained network nobody tuned for us: the `ccexam` MNIST CNN (Conv32-Conv64-FC128-FC10, 99.05%)
compressed one-shot at a range of settings, two ways: data-free (magnitude pruning and k-means, as
`prune_` and `quantize_` do) and calibrated (`calibrate_`: SparseGPT and GPTQ onto the codebook) from
512 unlabelled training images (their labels are never read), the dampening of each row chosen among
a few by the KL divergence to the dense model on 512 other unlabelled training images. Test error of the
model decoded from each container, on the 10,000 MNIST test images (the package's normalisation),
measured once per row.

    python -m benchmarks.mnist_cnn [--calibration 512] [--dampening 0.01,0.1,1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import machine, machine_line, write_results
from examples.real import load_ccexam_state_dict, load_mnist
from vidcompress import (
    CalibrateConfig,
    PruneConfig,
    QuantizeConfig,
    calibrate_,
    encode,
    finalize_,
    load_compressed,
    prune_,
    quantize_,
)
from vidcompress.io import save_state_dict
from vidcompress.report import markdown_table

SETTINGS: list[tuple[str, str | None, str]] = [
    ("the library's defaults", "conv=0.3,fc=0.3", "conv=8,fc=8"),
    ("8 bits, no pruning", None, "conv=8,fc=8"),
    ("4 bits, no pruning", None, "conv=4,fc=4"),
    ("0.5, 8 bits", "conv=0.5,fc=0.5", "conv=8,fc=8"),
    ("0.7, 6 bits", "conv=0.7,fc=0.7", "conv=6,fc=6"),
    ("0.5, 4 bits", "conv=0.5,fc=0.5", "conv=4,fc=4"),
    ("0.7, 4 bits", "conv=0.7,fc=0.7", "conv=4,fc=4"),
    ("0.9, 5 bits", "conv=0.9,fc=0.9", "conv=5,fc=5"),
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=int, default=512, help="unlabelled training images [512]")
    parser.add_argument("--dampening", default="0.01,0.1,1", help="the dampenings to choose among [0.01,0.1,1]")
    args = parser.parse_args()
    info = machine()
    mnist = load_mnist()

    def normalised(images: Any) -> torch.Tensor:
        return (torch.from_numpy(images).view(-1, 1, 28, 28) - 0.1307) / 0.3081

    x, y = normalised(mnist["test"][0]), torch.from_numpy(mnist["test"][1])
    unlabelled = normalised(mnist["train"][0][: 2 * args.calibration])  # the first images; labels unused
    calibration = list(unlabelled[: args.calibration].split(128))
    held_out = unlabelled[args.calibration :]  # for choosing the dampening: KL to the dense model
    dampenings = [float(d) for d in args.dampening.split(",")]

    def error(model: nn.Module) -> float:
        with torch.no_grad():
            return 100.0 * float((model.eval()(x).argmax(1) != y).float().mean())

    def trained() -> nn.Module:
        model = MNISTNet()
        model.load_state_dict(load_ccexam_state_dict())
        return model.eval()

    dense = trained()
    with torch.no_grad():
        dense_log = torch.log_softmax(dense(held_out), 1)

    def divergence(model: nn.Module) -> float:
        with torch.no_grad():
            log = torch.log_softmax(model.eval()(held_out), 1)
        return float(torch.nn.functional.kl_div(log, dense_log, log_target=True, reduction="batchmean"))

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        save_state_dict(dense.state_dict(), Path(folder) / "dense.safetensors")
        dense_bytes = (Path(folder) / "dense.safetensors").stat().st_size
        baseline = error(dense)

        def measured(model: nn.Module) -> tuple[int, float]:
            path = Path(folder) / "m.vcz"
            encode(model, path)
            return path.stat().st_size, error(load_compressed(path, MNISTNet()))

        for label, sparsity, bits in SETTINGS:
            model = trained()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if sparsity:
                    prune_(model, PruneConfig(sparsity=sparsity))
                quantize_(model, QuantizeConfig(bits=bits))
            finalize_(model)
            free_bytes, free_error = measured(model)
            start = time.perf_counter()
            tried = {}
            for damp in dampenings:
                model = trained()
                config = CalibrateConfig(sparsity=sparsity or "conv=off,fc=off", bits=bits, dampening=damp)
                report = calibrate_(model, calibration, config)
                tried[damp] = (divergence(model), model, report)
            chosen = min(tried, key=lambda d: tried[d][0])
            _, model, report = tried[chosen]
            seconds = time.perf_counter() - start
            calibrated_bytes, calibrated_error = measured(model)
            rows.append({
                "setting": label, "sparsity": sparsity, "bits": bits, "bytes": free_bytes,
                "ratio": dense_bytes / free_bytes, "test_error": free_error, "calibrated_bytes": calibrated_bytes,
                "calibrated_ratio": dense_bytes / calibrated_bytes, "calibrated_test_error": calibrated_error,
                "calibration_seconds": seconds, "dampening": chosen,
                "held_out_kl": {str(d): tried[d][0] for d in dampenings}, "calibration": report.to_dict(),
            })  # fmt: skip
            print({k: v for k, v in rows[-1].items() if k != "calibration"}, flush=True)
    command = f"python -m benchmarks.mnist_cnn --calibration {args.calibration} --dampening {args.dampening}"
    lines = [
        "# A trained MNIST CNN compressed one-shot: data-free and calibrated",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"The `ccexam` CNN ({sum(p.numel() for p in dense.parameters()):,} parameters, a {dense_bytes:,}-byte fp32 "
        f"file), test error {baseline:.2f}% on MNIST's 10,000 test images. Data-free: magnitude pruning and "
        f"k-means weight sharing. Calibrated: `calibrate_` from the first {args.calibration} training images "
        "(unlabelled) in batches of 128: SparseGPT pruning, GPTQ onto the k-means codebook, the codebook refitted "
        "to H, with the dampening (of H's mean diagonal) that gave the lowest KL divergence to the dense model on "
        f"{args.calibration} other unlabelled training images, among {args.dampening}. Both encoded with the default index bits; each error is that of the model decoded from its "
        "container. No setting was chosen on the test split: the rows are the settings fixed beforehand.",
        "",
        markdown_table(
            ["setting", "data-free bytes", "ratio", "test error (%)", "calibrated bytes", "ratio",
             "test error (%)", "dampening", "calibration (s, all tried)"],
            [[r["setting"], f"{r['bytes']:,}", f"{r['ratio']:.1f}x", f"{r['test_error']:.2f}",
              f"{r['calibrated_bytes']:,}", f"{r['calibrated_ratio']:.1f}x", f"{r['calibrated_test_error']:.2f}",
              f"{r['dampening']:g}", f"{r['calibration_seconds']:.1f}"] for r in rows],
        ),
    ]  # fmt: skip
    write_results("mnist_cnn", {"machine": info, "baseline_error": baseline, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
