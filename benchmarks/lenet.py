"""Deep Compression's Table 1 on real MNIST: LeNet-300-100 and LeNet-5, trained here from scratch.

MNIST from the verified `mnist` fixture (`python -m examples.real fetch mnist`): 50,000 training,
10,000 validation and 10,000 test images. Both networks have the Caffe layouts the paper used
(LeNet-300-100: 784-300-100-10, 266,610 parameters; LeNet-5: 20 and 50 5x5 convolutions, FC 500,
431,080). Each is trained, pruned on a progressive schedule with retraining (Deep Compression's
per-layer rates), quantized with centroid fine-tuning (LeNet-300-100 at 6 bits, LeNet-5 at 8 conv /
5 fc, as in the paper) and encoded (relative index + Huffman, index bits chosen per layer).

Chosen on the validation split, never the test split: the pruning rate of each network's largest
layer (LeNet-300-100's first FC, LeNet-5's FC 500) and the FC bits, scanned from the paper's
setting towards smaller files and kept at the last setting whose compressed model's validation
error, plus one standard error of its paired difference from the dense model's, is at most
ALLOWED_RISE points above the dense model's (the scan stops at the first that is not). The test split
is measured once, for the dense model and the chosen compressed one.

`--beyond` takes the same dense networks past Deep Compression by the same rule (`lenet_beyond.md`):
deeper pruning of the largest layer, distillation by function matching (BEYOND_SHIFT) and
entropy-constrained quantization (ECSQ), against the ratios published for methods that go past it
(soft weight-sharing, universal compression).

    python -m benchmarks.lenet [--quick] [--network NAME] [--beyond]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import RESULTS, machine, machine_line, write_results
from examples.real import cache_dir, load_mnist
from vidcompress import AGPSchedule, PruneConfig, Pruner, QuantizeConfig, StepSchedule, finalize_, quantize_
from vidcompress.codec import EncodeConfig, decode, encode, inspect_container, load_compressed, read_container
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.report import markdown_table

ALLOWED_RISE = 0.1  # points of validation error the compressed model may add
# A setting passes when its validation rise plus one standard error of the paired difference fits the
# allowance. Without the margin the scan took the largest setting within the full allowance, and twice
# the test split said more than validation had (+0.11 for +0.06, +0.18 for +0.09: among settings near
# the limit, the one picked is the one whose rise validation underestimates most).
MARGIN_STANDARD_ERRORS = 1.0
PRUNE_STEP = 0.2  # sparsity added per pruning step, then `step_epochs` of retraining
# Retraining after pruning and centroid fine-tuning learn from the labels and from the dense model (Hinton
# et al.'s distillation: half cross-entropy, half T^2 KL divergence to the dense model's softened output).
DISTILL_TEMPERATURE, DISTILL_WEIGHT = 2.0, 0.5
# `--beyond` distils by function matching (Beyer et al. 2022, "Knowledge distillation: A good teacher is
# patient and consistent"): the dense model runs on the same randomly moved images as the student (up to
# BEYOND_SHIFT pixels each way), so the student learns the dense model's function around every training
# image, not only its outputs on the images themselves. Chosen on LeNet-300-100's validation split
# only (`lenet_recipe_check.md`: rise -0.16 +- 0.08 with 1 pixel, -0.11 +- 0.08 with 2, -0.06 +- 0.07
# with fixed logits).
BEYOND_SHIFT = 1
# Per network: epochs a pruning step, epochs at the targets (lr / 2 annealed to zero), epochs of centroid
# fine-tuning (lr / 20 annealed). LeNet-5 costs about ten times LeNet-300-100 an epoch on a CPU.


def lenet_300_100() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def lenet_5() -> nn.Module:
    """Caffe's LeNet: no nonlinearity after the convolutions, ReLU after FC 500."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )  # fmt: skip


NETWORKS: dict[str, dict[str, Any]] = {
    # Deep Compression's Tables 3 and 4: weights kept 8% / 9% / 26% and 66% / 12% / 8% / 19%.
    "LeNet-300-100": {
        "build": lenet_300_100,
        "rates": {"1.weight": 0.92, "3.weight": 0.91, "5.weight": 0.74},
        # (rate of the scanned layer, quantization): the paper's first, then smaller files
        "scan": ("1.weight", ((0.92, "fc=6"), (0.94, "fc=6"), (0.94, "fc=5"), (0.95, "fc=5"), (0.96, "fc=5"), (0.97, "fc=5"))),
        "paper": {"error_before": 1.64, "error_after": 1.58, "ratio": 40, "kept": 8, "weight_bits": 6, "index_bits": 5},
        "lr": 0.05,
        "epochs": 20,
        "schedule": {"agp_steps": 8, "step_epochs": 1, "retrain_epochs": 24, "finetune_epochs": 3},
        # Past Deep Compression (`--beyond`, goal 64x): deeper pruning, then ECSQ (`quantizer`), chosen the same way
        "beyond": {
            "rates": {"1.weight": 0.95, "3.weight": 0.92, "5.weight": 0.75},
            "scan": ("1.weight", ((0.95, "ecsq:fc=5:0.02"), (0.96, "ecsq:fc=5:0.02"), (0.96, "ecsq:fc=4:0.05"), (0.97, "ecsq:fc=5:0.02"), (0.97, "ecsq:fc=4:0.05"), (0.98, "ecsq:fc=4:0.05"))),
            "schedule": {"agp_steps": 8, "step_epochs": 1, "retrain_epochs": 24, "finetune_epochs": 3},
            "shift": BEYOND_SHIFT,
            "goal": 64,
            "anchors": "soft weight-sharing 64x (1.89 -> 1.94)",
        },
    },
    "LeNet-5": {
        "build": lenet_5,
        "rates": {"0.weight": 0.34, "2.weight": 0.88, "5.weight": 0.92, "7.weight": 0.81},
        "scan": ("5.weight", ((0.92, "conv=8,fc=5"), (0.92, "conv=8,fc=4"), (0.94, "conv=8,fc=4"), (0.94, "conv=6,fc=4"), (0.96, "conv=6,fc=4"), (0.97, "conv=6,fc=4"))),
        "paper": {"error_before": 0.80, "error_after": 0.74, "ratio": 39, "kept": 8, "weight_bits": "8 / 5", "index_bits": "8 / 5"},
        "lr": 0.02,
        "epochs": 12,
        "schedule": {"agp_steps": 8, "step_epochs": 1, "retrain_epochs": 12, "finetune_epochs": 2},
        "beyond": {
            "rates": {"0.weight": 0.5, "2.weight": 0.9, "5.weight": 0.98, "7.weight": 0.85},
            "scan": ("5.weight", ((0.97, "ecsq:conv=6,fc=5:0.02"), (0.98, "ecsq:conv=6,fc=5:0.02"), (0.98, "ecsq:conv=6,fc=4:0.03"), (0.985, "ecsq:conv=6,fc=4:0.03"))),
            "schedule": {"agp_steps": 8, "step_epochs": 1, "retrain_epochs": 12, "finetune_epochs": 2},
            "shift": BEYOND_SHIFT,
            "goal": 100,
            "anchors": "Choi et al. 2017 51.25x; universal compression 124.8x; soft weight-sharing 162x (0.88 -> 0.97)",
        },
    },
}  # fmt: skip


def mnist_tensors(quick: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    data = load_mnist()
    limit = {"train": 6000, "validation": 2000, "test": 2000} if quick else {}
    out = {}
    for split, (images, labels) in data.items():
        count = limit.get(split, len(labels))
        out[split] = (torch.from_numpy(images[:count]).view(-1, 1, 28, 28), torch.from_numpy(labels[:count]))
    return out


def train(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    lr: float,
    seed: int,
    cosine: bool = False,
    teacher: torch.Tensor | nn.Module | None = None,
    shift: int = 0,
) -> None:
    """SGD with momentum, batch 64, weight decay 5e-4 (Caffe's LeNet solver); lr halved every third
    epoch, or (`cosine`) annealed to zero over the epochs (retraining after pruning). `teacher`: the
    dense model's logits on every training image, or the dense model itself, distilled from (see
    DISTILL_WEIGHT). `shift`: each image moved by up to this many pixels each way, at random; the
    teacher (a model) sees the same moved image (function matching, see BEYOND_SHIFT)."""
    images, labels = data
    t = DISTILL_TEMPERATURE
    targets = F.log_softmax(teacher / t, dim=1) if isinstance(teacher, torch.Tensor) else None
    if isinstance(teacher, nn.Module):
        teacher.eval()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = (len(labels) + 63) // 64
    total, step = epochs * steps_per_epoch, 0
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 ** (epoch // 3)
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        model.train()
        for batch in torch.randperm(len(labels), generator=generator).split(64):
            if cosine:
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                step += 1
            inputs = shifted(images[batch], shift, generator) if shift else images[batch]
            logits = model(inputs)
            loss = F.cross_entropy(logits, labels[batch])
            if teacher is not None:
                if isinstance(teacher, nn.Module):
                    with torch.no_grad():
                        wanted = F.log_softmax(teacher(inputs) / t, dim=1)
                else:
                    assert targets is not None
                    wanted = targets[batch]
                soft = F.log_softmax(logits / t, dim=1)
                kl = F.kl_div(soft, wanted, log_target=True, reduction="batchmean")
                loss = (1 - DISTILL_WEIGHT) * loss + DISTILL_WEIGHT * t * t * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def shifted(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of a batch (N, 1, H, W) moved by its own random offset of up to `pixels` each way
    (zeros move in at the edge)."""
    n, _, height, width = images.shape
    padded = F.pad(images, (pixels,) * 4)
    dx = torch.randint(0, 2 * pixels + 1, (n, 1, 1), generator=generator)
    dy = torch.randint(0, 2 * pixels + 1, (n, 1, 1), generator=generator)
    rows = dy + torch.arange(height).view(1, -1, 1)
    columns = dx + torch.arange(width).view(1, 1, -1)
    return padded[torch.arange(n).view(-1, 1, 1), 0, rows, columns].unsqueeze(1)


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x) for x in images.split(2000)])


@torch.no_grad()
def wrong(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Which images the model gets wrong."""
    model.eval()
    images, labels = data
    return torch.cat([model(x).argmax(1) != y for x, y in zip(images.split(2000), labels.split(2000), strict=True)])


def error(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Top-1 error in percent."""
    return 100.0 * float(wrong(model, data).float().mean())


def paired_rise(dense_wrong: torch.Tensor, compressed_wrong: torch.Tensor) -> tuple[float, float]:
    """The rise in error (points) from the dense to the compressed model on the same images, and its
    standard error (from the images only one of them gets wrong)."""
    n = dense_wrong.numel()
    broke = int((compressed_wrong & ~dense_wrong).sum())
    fixed = int((dense_wrong & ~compressed_wrong).sum())
    rise = (broke - fixed) / n
    variance = ((broke + fixed) / n - rise**2) / n
    return 100.0 * rise, 100.0 * math.sqrt(max(variance, 0.0))


def prune(
    dense: nn.Module,
    rates: dict[str, float],
    lr: float,
    train_data: tuple[torch.Tensor, torch.Tensor],
    epochs: dict[str, int],
    teacher: torch.Tensor | nn.Module | None,
    shift: int = 0,
    seed: int = 0,
) -> nn.Module:
    """Prune progressively with retraining (at lr / 2) after each step and at the targets; masks made
    permanent. With `epochs["agp_steps"]` the steps follow Zhu & Gupta's cubic schedule (large steps
    first, small ones near the targets), else +PRUNE_STEP a step. `seed`: added to every epoch's seed
    (the benchmark's runs use 0; `lenet_seed_check` others)."""
    model = copy.deepcopy(dense)
    rules = ",".join(f"{name}={rate:g}" for name, rate in rates.items())
    schedule: AGPSchedule | StepSchedule = (
        AGPSchedule(steps=epochs["agp_steps"]) if "agp_steps" in epochs else StepSchedule(PRUNE_STEP)
    )
    pruner = Pruner(PruneConfig(sparsity=rules, schedule=schedule)).attach(model)
    steps = max(schedule.steps_to_reach(rate) for rate in rates.values())
    for step in range(steps):
        pruner.step()
        train(model, train_data, epochs["step_epochs"], lr / 2, seed + 10 + step, True, teacher, shift)
    train(model, train_data, epochs["retrain_epochs"], lr / 2, seed + 40, True, teacher, shift)  # at the targets
    pruner.finalize()
    return model


def quantizer(setting: str) -> tuple[QuantizeConfig, str]:
    """A scan's quantization setting: bits rules (`fc=6`: k-means, the paper's), or `METHOD:BITS` /
    `ecsq:BITS:LAMBDA` for the quantizers beyond it. Returns the config and the bits rules."""
    method, *rest = setting.split(":") if ":" in setting else ("kmeans", setting)
    bits = rest[0]
    if method == "ecsq":
        return QuantizeConfig(bits=bits, method="ecsq", lagrangian=float(rest[1])), bits
    return QuantizeConfig(bits=bits, method=method), bits


def quantize_and_encode(
    pruned: nn.Module,
    build: Callable[[], nn.Module],
    setting: str,
    lr: float,
    train_data: tuple[torch.Tensor, torch.Tensor],
    path: Path,
    epochs: dict[str, int],
    teacher: torch.Tensor | nn.Module,
    shift: int = 0,
    seed: int = 0,
) -> nn.Module:
    """Quantize a pruned model (`quantizer(setting)`) with centroid fine-tuning, encode it; the model
    decoded from the file. `seed` as in `prune`."""
    model = copy.deepcopy(pruned)
    config, bits = quantizer(setting)
    quantize_(model, config)
    # Centroid fine-tuning (each centroid gets the sum of its members' gradients: small steps).
    train(model, train_data, epochs["finetune_epochs"], lr / 20, seed + 50, True, teacher, shift)
    finalize_(model)
    encode(model, path, EncodeConfig(bits=bits, index_bits="auto"))
    return load_compressed(path, build())


def container_figures(path: Path, dense_bytes: int) -> dict[str, Any]:
    report = inspect_container(read_container(path))
    layers = report.layers
    nonzeros = sum(layer.nonzeros for layer in layers)
    parameters = sum(layer.parameters for layer in layers)
    return {
        "container_bytes": path.stat().st_size,
        "ratio": dense_bytes / path.stat().st_size,
        "bits_per_parameter": report.totals()["bits_per_parameter"],
        "weights_kept": nonzeros / parameters,
        "weight_bits_per_nonzero": sum(layer.weight_payload_bits for layer in layers) / max(nonzeros, 1),
        "index_bits_per_nonzero": sum(layer.index_payload_bits for layer in layers) / max(nonzeros, 1),
        "layers": [
            {
                "name": layer.name,
                "kept": layer.nonzeros / layer.parameters,
                "bits": layer.bits,
                "index_bits": layer.index_bits,
            }
            for layer in layers
        ],
        "breakdown": report.breakdown,
    }


def dense_lenet(name: str, data: dict[str, Any] | None = None) -> nn.Module:
    """The network trained from scratch on MNIST's training split (seeded), kept in the fixture cache
    (`work/lenet/NAME.safetensors`, with its recipe) so that other benchmarks compress the same model."""
    spec = NETWORKS[name]
    recipe = {"epochs": str(spec["epochs"]), "lr": str(spec["lr"]), "init_seed": "0", "seed": "1"}
    path = cache_dir() / "work" / "lenet" / f"{name}.safetensors"
    torch.manual_seed(0)  # the initialisation
    model = spec["build"]()
    if path.exists():
        state, metadata = load_state_dict(path)
        if {k: metadata.get(k) for k in recipe} == recipe:
            model.load_state_dict(state)
            return model
    data = data if data is not None else mnist_tensors(quick=False)
    train(model, data["train"], spec["epochs"], spec["lr"], seed=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state_dict(model.state_dict(), path, metadata=recipe)
    return model


def passes(entry: dict[str, Any]) -> bool:
    """The scan's rule (MARGIN_STANDARD_ERRORS); rows measured before the margin have no standard error."""
    return entry["rise"] + MARGIN_STANDARD_ERRORS * entry.get("standard_error", 0.0) <= ALLOWED_RISE + 1e-9


def run_network(
    name: str, spec: dict[str, Any], plan: dict[str, Any], data: dict[str, Any], folder: Path, quick: bool
) -> dict[str, Any]:
    """Scan `plan`'s settings (its rates, scan and schedule: the network's own, or its `beyond` plan) on
    the validation split; the test split measured once, on the chosen setting."""
    start = time.perf_counter()
    if quick:
        torch.manual_seed(0)
        dense = spec["build"]()
        train(dense, data["train"], 2, spec["lr"], seed=1)
    else:
        dense = dense_lenet(name, data)
    dense_path = folder / f"{name}.safetensors"
    save_state_dict(dense.state_dict(), dense_path)
    dense_wrong = wrong(dense, data["validation"])
    dense_validation = 100.0 * float(dense_wrong.float().mean())
    print(name, f"dense: validation error {dense_validation:.2f}%", flush=True)
    shift = plan.get("shift", 0)  # function matching: the dense model itself teaches, on moved images
    teacher = copy.deepcopy(dense) if shift else logits_of(dense, data["train"][0])
    layer, candidates = plan["scan"]
    epochs = {k: 2 if k == "agp_steps" else 1 for k in plan["schedule"]} if quick else plan["schedule"]
    scan, chosen, pruned, runs = [], None, {}, {}
    for rate, bits in candidates[:2] if quick else candidates:
        rates = {**plan["rates"], layer: rate}
        if rate not in pruned:  # settings that differ only in bits share one pruned model
            pruned[rate] = prune(dense, rates, spec["lr"], data["train"], epochs, teacher, shift)
        path = folder / f"{name}-{rate:g}-{bits}.vcz"
        decoded = quantize_and_encode(
            pruned[rate], spec["build"], bits, spec["lr"], data["train"], path, epochs, teacher, shift
        )
        rules = ",".join(f"{n}={r:g}" for n, r in rates.items())
        runs[rate, bits] = decoded, path, {"rules": rules, "bits": bits}
        decoded_wrong = wrong(decoded, data["validation"])
        rise, standard_error = paired_rise(dense_wrong, decoded_wrong)
        entry = {
            "rate": rate,
            "bits": bits,
            "validation_error": 100.0 * float(decoded_wrong.float().mean()),
            "rise": rise,
            "standard_error": standard_error,
            **{
                k: v
                for k, v in container_figures(path, dense_path.stat().st_size).items()
                if k in ("ratio", "weights_kept")
            },
        }
        scan.append(entry)
        print(name, "scan", entry, flush=True)
        if not passes(entry):
            break
        chosen = rate, bits
    chosen = chosen if chosen is not None else candidates[0]
    decoded, path, extra = runs[chosen]  # the scan's own run: the test split is measured on it, once
    columns = folder / f"{name}-columns-only.vcz"  # the same weights in Deep Compression's walk (format 4)
    encode(decode(path), columns, EncodeConfig(bits=quantizer(chosen[1])[1], index_bits="auto", row_walk=False))
    return {
        "parameters": sum(p.numel() for p in dense.parameters()),
        "dense_bytes": dense_path.stat().st_size,
        "validation_error_dense": dense_validation,
        "validation_error_compressed": error(decoded, data["validation"]),
        "test_error_dense": error(dense, data["test"]),
        "test_error_compressed": error(decoded, data["test"]),
        "scan_layer": layer,
        "chosen_rate": chosen[0],
        "scan": scan,
        "paper": spec["paper"],
        "schedule": plan["schedule"],
        "dense_epochs": spec["epochs"],
        "distillation": {"temperature": DISTILL_TEMPERATURE, "weight": DISTILL_WEIGHT, "shift": shift},
        "margin_standard_errors": MARGIN_STANDARD_ERRORS,
        "seconds": time.perf_counter() - start,
        **extra,
        **container_figures(path, dense_path.stat().st_size),
        "columns_only_bytes": columns.stat().st_size,
    }


def weights_only_ratio(row: dict[str, Any]) -> float:
    """Deep Compression's ratio: fp32 bytes of the compressed weights over their coded bytes."""
    parts = row["breakdown"]
    weights = row["parameters"] - parts["raw_tensors"] // 4  # the raw tensors are the fp32 biases
    return 4 * weights / (parts["weight_streams"] + parts["index_streams"] + parts["code_tables"] + parts["codebooks"])


def walk_sentence(rows: dict[str, Any]) -> list[str]:
    """What the row walk (container format 5) saved on the chosen files, where the run measured it."""
    measured = {name: r for name, r in rows.items() if "columns_only_bytes" in r}
    if not measured:
        return []
    return [
        "Walk: each layer's relative index walks its columns (Deep Compression's) or its rows, whichever codes "
        "smaller (container format 5). The chosen files with the column walk only: "
        + "; ".join(
            f"{name} {r['columns_only_bytes']:,} bytes against {r['container_bytes']:,} "
            f"({r['dense_bytes'] / r['columns_only_bytes']:.1f}x files; the row walk saves "
            f"{100 * (1 - r['container_bytes'] / r['columns_only_bytes']):.1f}%)"
            for name, r in measured.items()
        )
        + ".",
        "",
    ]


def beyond_goal_met(name: str, ratio: float, test_rise: float) -> bool:
    """Issue 16's goal for a `--beyond` file: the network's ratio, test error within ALLOWED_RISE points."""
    return ratio >= NETWORKS[name]["beyond"]["goal"] and test_rise <= ALLOWED_RISE + 1e-9


def rise_on_test(row: dict[str, Any]) -> float:
    return row["test_error_compressed"] - row["test_error_dense"]


def beyond_report(rows: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """lenet_beyond.md: the goals past Deep Compression, beside the published results."""
    lines = [
        "# Past Deep Compression on real MNIST: deeper pruning, function matching and entropy-constrained quantization",
        "",
        *(f"{name}: measured on {r['machine']}. Command: `{r['command']}`." for name, r in rows.items()),
        "",
        f"MNIST (the `mnist` fixture): {len(data['train'][1]):,} training, {len(data['validation'][1]):,} "
        f"validation and {len(data['test'][1]):,} test images. The dense models are `benchmarks.lenet`'s "
        "(the same cached networks). Pruned on Zhu & Gupta's cubic schedule with retraining (distilled from "
        "the dense model by function matching: both see the same training images, each moved at random by up "
        f"to {BEYOND_SHIFT} pixel each way; the dense model was trained on unmoved images), quantized by ECSQ (`QuantizeConfig(method='ecsq')`, lambda relative to each "
        "layer's weight variance) with centroid fine-tuning, encoded (relative index + Huffman, index bits "
        "per layer). The largest layer's rate and the quantization were scanned on the validation split by "
        f"`benchmarks.lenet`'s rule (validation rise plus one standard error at most {ALLOWED_RISE} points); "
        "the test split was measured once, on the chosen file. Ratio: the fp32 .safetensors file over the "
        "container file, everything counted.",
        "",
        markdown_table(
            [
                "network",
                "test error dense -> compressed (%)",
                "ratio (files)",
                "goal",
                "ratio (weights only)",
                "weights kept",
                "bits / weight",
                "bits / index",
                "chosen",
                "published",
            ],
            [
                [
                    name,
                    f"{r['test_error_dense']:.2f} -> {r['test_error_compressed']:.2f}",
                    f"**{r['ratio']:.1f}x**",
                    f">= {NETWORKS[name]['beyond']['goal']}x, within 0.1 points: "
                    + ("met" if beyond_goal_met(name, r["ratio"], rise_on_test(r)) else "not met"),
                    f"{weights_only_ratio(r):.1f}x",
                    f"{100 * r['weights_kept']:.2f}%",
                    f"{r['weight_bits_per_nonzero']:.2f}",
                    f"{r['index_bits_per_nonzero']:.2f}",
                    f"`{r['scan_layer']}`={r['chosen_rate']:g}, {r['bits']}"
                    + ("" if passes(r["scan"][0]) else " (none passed: the scan's first setting)"),
                    NETWORKS[name]["beyond"]["anchors"],
                ]
                for name, r in rows.items()
            ],
        ),
        "",
        "Chosen: the scanned layer's rate and the quantizer (`ecsq:BITS:LAMBDA`). Published: ratios of "
        "methods that train for compressibility or code past Huffman (their own dense errors in brackets).",
        "",
        *walk_sentence(rows),
        "## The validation scans",
        "",
    ]
    for name, r in rows.items():
        lines += [
            f"{name}: dense validation error {r['validation_error_dense']:.2f}%. Rules: `{r['rules']}`. Epochs: "
            f"{r['schedule']['agp_steps']} pruning steps of {r['schedule']['step_epochs']}, "
            f"{r['schedule']['retrain_epochs']} at the targets, {r['schedule']['finetune_epochs']} of centroid "
            f"fine-tuning. Breakdown of the chosen file (bytes): "
            + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r["breakdown"].items() if v),
            "",
            markdown_table(
                ["rate", "quantization", "validation error (%)", "rise (points)", "standard error", "ratio", "kept"],
                [
                    [
                        f"{s['rate']:g}",
                        s["bits"],
                        f"{s['validation_error']:.2f}",
                        f"{s['rise']:+.2f}",
                        f"{s['standard_error']:.2f}",
                        f"{s['ratio']:.1f}x",
                        f"{100 * s['weights_kept']:.2f}%",
                    ]
                    for s in r["scan"]
                ],
            ),
            "",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run on a subset (not a result)")
    parser.add_argument("--network", choices=list(NETWORKS), help="run one network; the other's row is kept")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from its .json, no run")
    parser.add_argument(
        "--beyond", action="store_true", help="past Deep Compression: deeper pruning and ECSQ (lenet_beyond.md)"
    )
    args = parser.parse_args()
    info = machine()
    data = mnist_tensors(args.quick)
    name_of_results = ("lenet_beyond" if args.beyond else "lenet") + ("_quick" if args.quick else "")
    previous = RESULTS / f"{name_of_results}.json"
    rows: dict[str, Any] = {}
    command = "python -m benchmarks.lenet" + (" --beyond" if args.beyond else "") + (" --quick" if args.quick else "")
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in NETWORKS.items():
            if args.report_only or (args.network and name != args.network):
                continue
            plan = spec["beyond"] if args.beyond else spec
            rows[name] = run_network(name, spec, plan, data, Path(folder), args.quick)
            rows[name].update(
                machine=machine_line(info), command=command + (f" --network {name}" if args.network else "")
            )
            print(name, {k: v for k, v in rows[name].items() if k not in ("breakdown", "layers", "scan")}, flush=True)
    if (
        args.network or args.report_only
    ) and previous.exists():  # read now, not at the start: another network's run may have ended
        rows = {**json.loads(previous.read_text())["rows"], **rows}
    rows = {name: rows[name] for name in NETWORKS if name in rows}
    if args.beyond:
        write_results(name_of_results, {"rows": rows}, "\n".join(beyond_report(rows, data)))
        return
    lines = [
        "# Deep Compression's Table 1 on real MNIST",
        "",
        *(f"{name}: measured on {r['machine']}. Command: `{r['command']}`." for name, r in rows.items()),
        "",
        f"MNIST (the `mnist` fixture): {len(data['train'][1]):,} training, {len(data['validation'][1]):,} validation and "
        f"{len(data['test'][1]):,} test images. Trained from scratch here (SGD, momentum 0.9, weight decay 5e-4, batch "
        "64); pruned to Deep Compression's per-layer rates on Zhu & Gupta's cubic schedule with retraining "
        "after each step and at the targets (lr / 2, cosine to zero); quantized (k-means, the paper's bits or fewer) with centroid "
        "fine-tuning (lr / 20); epochs per network below; encoded with the index width chosen per layer. The "
        "largest layer's rate and the FC bits were chosen on the validation split (below); the "
        "test split was measured once. Errors of the model decoded from the container. Ratio: the fp32 "
        ".safetensors file over the container file (the paper counts weights only).",
        "",
        markdown_table(
            [
                "network",
                "test error dense -> compressed (%)",
                "ratio (files)",
                "ratio (weights only)",
                "weights kept",
                "bits / weight",
                "bits / index",
                "bits / parameter",
                "paper: error, ratio, kept, bits",
            ],
            [
                [
                    name,
                    f"{r['test_error_dense']:.2f} -> {r['test_error_compressed']:.2f}",
                    f"**{r['ratio']:.1f}x**",
                    f"{weights_only_ratio(r):.1f}x",
                    f"{100 * r['weights_kept']:.1f}%",
                    f"{r['weight_bits_per_nonzero']:.2f} ({r['bits']})",
                    f"{r['index_bits_per_nonzero']:.2f}",
                    f"{r['bits_per_parameter']:.3f}",
                    f"{r['paper']['error_before']:.2f} -> {r['paper']['error_after']:.2f}, {r['paper']['ratio']}x, "
                    f"{r['paper']['kept']}%, {r['paper']['weight_bits']} bits",
                ]
                for name, r in rows.items()
            ],
        ),
        "",
        "Ratio (files): the fp32 .safetensors file over the container, everything counted. Ratio (weights "
        "only), the paper's measure: the fp32 bytes of the compressed layers' weights over their coded streams, "
        "code tables and codebooks (biases, manifest and envelope left out). Bits / weight and bits / index: "
        "coded (Huffman) bits per stored nonzero, the codebook's width in brackets.",
        "",
        *walk_sentence(rows),
        "## Choices made on the validation split",
        "",
    ]
    for name, r in rows.items():
        scanned = "and bits " if "bits" in r["scan"][0] else ""  # rows measured before the bits were scanned
        lines += [
            f"{name}: rate of `{r['scan_layer']}` {scanned}scanned from the paper's setting towards smaller "
            f"files, to keep the last whose validation error"
            + (" plus one standard error of the paired difference" if "margin_standard_errors" in r else "")
            + f" is at most {ALLOWED_RISE} points above the dense "
            f"model's ({r['validation_error_dense']:.2f}%): **{r['chosen_rate']:g}, {r['bits']}**"
            + (" (none passed: the paper's own setting is kept)" if not passes(r["scan"][0]) else "")
            + (
                ". This row predates distillation and the margin (`lenet_before_distillation.md`); not rerun"
                if "margin_standard_errors" not in r
                else ""
            )
            + f". Rules: `{r['rules']}`. Epochs: "
            f"{r['dense_epochs']} dense, "
            + (f"{r['schedule']['agp_steps']} cubic " if "agp_steps" in r["schedule"] else "")
            + f"pruning steps of {r['schedule']['step_epochs']}, "
            f"{r['schedule']['retrain_epochs']} at the targets, {r['schedule']['finetune_epochs']} of centroid "
            "fine-tuning"
            + (
                f", distilling from the dense model (temperature {r['distillation']['temperature']:g}, "
                f"{100 * r['distillation']['weight']:.0f}% of the loss)."
                if r.get("distillation")
                else ", from the labels only."
            ),
            "",
            markdown_table(
                ["rate", "bits", "validation error (%)", "rise (points)", "standard error", "ratio", "weights kept"],
                [
                    [
                        f"{s['rate']:g}",
                        s.get("bits", r["bits"]),
                        f"{s['validation_error']:.2f}",
                        f"{s['rise']:+.2f}",
                        f"{s['standard_error']:.2f}" if "standard_error" in s else "-",
                        f"{s['ratio']:.1f}x",
                        f"{100 * s['weights_kept']:.1f}%",
                    ]
                    for s in r["scan"]
                ],
            ),
            "",
        ]
    history = [
        (
            "lenet_before_distillation",
            "The first run, with the recipe's retraining from the labels only and the rule without the margin "
            "(LeNet-5 with a shorter recipe):",
        ),
        (
            "lenet_full_allowance",
            "Distillation added after that run missed LeNet-300-100's test goal by one image; the rule still "
            "without the margin. Validation chose a larger rate, and the test miss grew:",
        ),
        (
            "lenet_other_init",
            "The margin added, but the dense model built before the seed was set (a bug, since fixed): another "
            "initialisation, trained by the same recipe. Not even the paper's setting passed; on the test split "
            "it lost 0.17 points:",
        ),
        (
            "lenet_step_schedule",
            "The seed fixed; pruning still in +0.2 steps (3 epochs a step on LeNet-300-100, 2 on LeNet-5). "
            "Replaced by Zhu & Gupta's cubic schedule after a validation-only trial (`lenet_recipe_check.md`, "
            "run after the switch: -0.06 +- 0.07 points against +0.02 +- 0.07 at one setting, inside the noise):",
        ),
    ]
    if not args.quick and all((RESULTS / f"{name}.json").exists() for name, _ in history):
        lines += [
            "## Earlier runs, kept as they were",
            "",
            "Each change below was made after seeing the test error of the setting chosen before it; the "
            "test split was measured once a run, on its chosen setting only.",
            "",
        ]
        seen: set[str] = set()  # a network not rerun keeps its earlier row: listed once
        for name, text in history:
            earlier = json.loads((RESULTS / f"{name}.json").read_text())["rows"]
            listed = []
            for network, r in earlier.items():
                key = json.dumps([network, r["test_error_compressed"], r["ratio"]])
                if key in seen:
                    continue
                seen.add(key)
                said = next(
                    e["rise"]
                    for e in r["scan"]
                    if e["rate"] == r["chosen_rate"] and e.get("bits", r["bits"]) == r["bits"]
                )
                listed.append(
                    f"- {network}: test error {r['test_error_dense']:.2f} -> {r['test_error_compressed']:.2f} "
                    f"({r['test_error_compressed'] - r['test_error_dense']:+.2f}; validation said {said:+.2f}), "
                    f"{r['ratio']:.1f}x at {r['chosen_rate']:g}, {r['bits']}"
                )
            lines += [f"`{name}.md`: {text}", "", *listed, ""]
    write_results(name_of_results, {"rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
