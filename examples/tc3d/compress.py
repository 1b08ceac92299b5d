"""The paper's five compression steps on a trained T-C3D, with accuracy and size on disk after each.

Sparse (progressive pruning to 0.85 conv / 0.9 fc, +0.1 per epoch), Dense (masks released, lr x 1/10),
Prune (progressive to 0.9 / 0.95), Quantize (8 / 5 bits, centroids fine-tuned), Huffman (the
container). Every size is a file written by this run:
- Original and Dense: the fp32 safetensors file;
- Sparse and Prune: a container holding the pruned layers' nonzero values as they are (`raw`) with
  relative indices, Huffman-coded;
- Quantize: a container with every stream packed (no Huffman);
- Huffman: the final container; its accuracy is measured on the model decoded from that file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest
from torch import nn

from examples.tc3d.data import VideoItem, has_validation, ucf101_split
from examples.tc3d.evaluate import load_trained
from examples.tc3d.train import (
    TrainConfig,
    build_model,
    evaluation_loader,
    fusion_warmup_for,
    loader,
    make_dataset,
    predict,
    train_one_epoch,
)
from vidcompress import DSDConfig, StepSchedule, finalize_, quantize_, run_dsd
from vidcompress.attach import plain_state_dict
from vidcompress.codec import EncodeConfig, encode, inspect_container, load_compressed, read_container
from vidcompress.config import Config, nested
from vidcompress.io import save_state_dict
from vidcompress.prune import PAPER_SPARSITY, SPARSE_PHASE_SPARSITY, overall_sparsity
from vidcompress.quantize import PAPER_BITS, QuantizeConfig
from vidcompress.rules import ENCODE_BITS

PAPER_INDEX_BITS = "conv=8,fc=5"  # Deep Compression's relative-index widths

# The paper's headline (T-C3D on UCF101); its per-step figures are not reproduced here.
PAPER = {"Original": {"megabytes": 127.0, "accuracy": 92.5}, "Huffman": {"megabytes": 4.4, "accuracy": 92.4}}


def paper_dsd() -> DSDConfig:
    """The paper's pruning: sparse to 0.85 / 0.9 and final to 0.9 / 0.95 at +0.1 an epoch."""
    return DSDConfig(
        sparse_sparsity=SPARSE_PHASE_SPARSITY,
        final_sparsity=PAPER_SPARSITY,
        schedule=StepSchedule(0.1),
        sparse_epochs=9,
        dense_epochs=3,
        final_epochs=16,  # 10 to reach 0.9 / 0.95 at +0.1 an epoch, then 6 of retraining at that sparsity
        recovery_lr_factor=0.1,  # the retraining epochs after the targets are reached run at lr x 0.1
    )


@dataclass(frozen=True, init=False)
class CompressConfig(Config):
    """Settings of the five steps, made of the library's own configs; the defaults are the paper's.

    Args:
        dsd: the Sparse, Dense and Prune steps.
        quantize: the Quantize step (bits per layer; centroids then fine-tuned).
        encode: the Huffman step (index bits; the bits are the quantizer's).
        compare: also quantize a copy of the pruned model with this config (same fine-tuning) and
            encode it, so that a run at other bits still reports the paper's; None skips it.
        finetune_epochs, finetune_lr_factor: centroid fine-tuning (each centroid gets the sum of its
            members' gradients: small steps).
        lr: the sparse phase starts at the training rate (DSD); dense and fine-tuning use less.
        progress: per-batch progress bars.
    """

    dsd: DSDConfig
    quantize: QuantizeConfig
    encode: EncodeConfig
    compare: QuantizeConfig | None
    finetune_epochs: int
    finetune_lr_factor: float
    lr: float
    progress: bool

    def __init__(
        self,
        *,
        dsd: DSDConfig | Mapping[str, Any] | None = None,
        quantize: QuantizeConfig | Mapping[str, Any] | None = None,
        encode: EncodeConfig | Mapping[str, Any] | None = None,
        compare: QuantizeConfig | Mapping[str, Any] | None = None,
        finetune_epochs: int = 3,
        finetune_lr_factor: float = 0.01,
        lr: float = 0.01,
        progress: bool = True,
    ) -> None:
        self._set(
            dsd=paper_dsd() if dsd is None else nested(dsd, DSDConfig),
            quantize=QuantizeConfig(bits=PAPER_BITS) if quantize is None else nested(quantize, QuantizeConfig),
            encode=EncodeConfig(index_bits=PAPER_INDEX_BITS) if encode is None else nested(encode, EncodeConfig),
            compare=None if compare is None else nested(compare, QuantizeConfig),
            finetune_epochs=finetune_epochs,
            finetune_lr_factor=finetune_lr_factor,
            lr=lr,
            progress=progress,
        )


@dataclass
class StepResult:
    step: str
    accuracy: float
    file: str
    bytes: int
    sparsity: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compress_run(
    run: str | Path,
    out: str | Path,
    config: CompressConfig | None = None,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compress the model of a training run through the five steps; write files and a JSON record."""
    config = config or CompressConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, train_config, classes = load_trained(run)
    device = torch.device("cpu")
    train_items, _ = ucf101_split(train_config.data, train_config.split, train=True)
    test_items, _ = ucf101_split(train_config.data, train_config.split, train=False)
    train_set = make_dataset(train_config, train_items, train=True)
    tests = evaluation_loader(train_config, test_items)
    # Epoch logs (DSD, fine-tuning) on the validation split where there is one; each step's row on test.
    monitored = "validation" if has_validation(train_config.data, train_config.split) else "test"
    monitor, validation_items = tests, list[VideoItem]()
    if monitored == "validation":
        validation_items, _ = ucf101_split(train_config.data, train_config.split, subset="validation")
        monitor = evaluation_loader(train_config, validation_items)

    def accuracy(network: nn.Module) -> float:
        """Test accuracy: a step's row."""
        return predict(network, tests, device=device).accuracy  # type: ignore[arg-type]

    def monitored_accuracy(network: nn.Module) -> float:
        """Accuracy for epoch logs: validation where the data set has it."""
        return predict(network, monitor, device=device).accuracy  # type: ignore[arg-type]

    def one_epoch(network: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        torch.manual_seed(train_config.seed * 7919 + epoch)
        train_set.set_epoch(1000 + epoch)
        data = loader(
            train_set,
            batch_size=train_config.batch_size,
            workers=train_config.workers,
            shuffle=True,
            seed=train_config.seed,
            epoch=1000 + epoch,
        )
        train_one_epoch(network, data, optimizer, device, config.progress)

    results: list[StepResult] = []

    def quantize_and_tune(network: nn.Module, quantization: QuantizeConfig) -> Any:
        """Weight sharing, centroid fine-tuning at the reduced rate, then plain weights again."""
        bits = quantization.bits
        shared = quantize_(network, quantization)
        tuner = torch.optim.SGD(network.parameters(), lr=config.lr * config.finetune_lr_factor, momentum=0.9)
        for epoch in range(config.finetune_epochs):
            one_epoch(network, tuner, 100 + epoch)
            log(f"  centroid fine-tuning ({bits}) epoch {epoch}: {monitored} {100 * monitored_accuracy(network):.1f}%")
        finalize_(network)
        return shared

    def record(step: str, network: nn.Module, file: Path, measured: float | None = None) -> None:
        result = StepResult(
            step, measured if measured is not None else accuracy(network), str(file.name), file.stat().st_size,
            overall_sparsity(network),
        )  # fmt: skip
        results.append(result)
        log(f"{step}: accuracy {100 * result.accuracy:.1f}%, {result.bytes:,} bytes ({file.name})")

    original = out / "0_original.safetensors"
    save_state_dict(model.state_dict(), original)
    answers = predict(model, tests)  # the original's answers, for the paired comparison
    labels, before = answers.labels, answers.predicted
    record("Original", model, original, answers.accuracy)

    order = list(build_model(train_config, len(classes)).state_dict())

    def plain_state(network: nn.Module) -> dict[str, torch.Tensor]:
        """The weights as used (masks applied), under plain names, in the model's own order."""
        state = plain_state_dict(network)
        return {name: state[name] for name in order}

    def on_phase_end(phase: str, network: nn.Module) -> None:
        state = plain_state(network)
        if phase == "dense":
            path = out / "2_dense.safetensors"
            save_state_dict(state, path)
            record("Dense", network, path)
            return
        step, index = ("Sparse", 1) if phase == "sparse" else ("Prune", 3)
        path = out / f"{index}_{step.lower()}.vcz"
        raw = config.quantize.bits.with_value("raw", ENCODE_BITS)  # pruned, not quantized: values as they are
        encode(state, path, EncodeConfig(bits=raw, index_bits=config.encode.index_bits))
        record(step, network, path)

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=train_config.weight_decay)
    history, _ = run_dsd(
        model, optimizer, one_epoch, monitored_accuracy, config.dsd,
        progress=lambda r: log(
            f"  {r.phase} epoch {r.epoch}: {monitored} {100 * r.metric:.1f}%, sparsity {r.overall_sparsity:.3f}"
        ),
        on_phase_end=on_phase_end,
    )  # fmt: skip
    comparison = None
    if config.compare is not None:
        other = copy.deepcopy(model)  # the pruned model, masks and all; finalizing one leaves the other
        other_report = quantize_and_tune(other, config.compare)
        path = out / "5_huffman_compare.vcz"
        encode(other.state_dict(), path, _encoding(config, config.compare))
        decoded_other = load_compressed(path, build_model(train_config, len(classes)))
        comparison = {
            "bits": str(config.compare.bits),
            "file": path.name,
            "bytes": path.stat().st_size,
            "accuracy": accuracy(decoded_other),
            "bits_per_parameter": inspect_container(read_container(path)).totals()["bits_per_parameter"],
            "weight_bits_per_nonzero": _weight_bits_per_nonzero(path),
            "quantization": other_report.to_dict(),
        }
        log(
            f"Huffman at {config.compare.bits}: accuracy {100 * comparison['accuracy']:.1f}%, "
            f"{comparison['bytes']:,} bytes"
        )
        del other, decoded_other
    report = quantize_and_tune(model, config.quantize)
    quantized = {k: v.detach().clone() for k, v in model.state_dict().items()}
    packed = out / "4_quantize.vcz"
    encode(quantized, packed, _encoding(config, config.quantize, huffman=False))
    record("Quantize", model, packed)
    final = out / "5_huffman.vcz"
    encode(quantized, final, _encoding(config, config.quantize))
    decoded = load_compressed(final, build_model(train_config, len(classes)))
    after = predict(decoded, tests).predicted
    record("Huffman", decoded, final, float(np.mean(after == labels)))
    container = inspect_container(read_container(final))
    summary = {
        "run": str(run),
        "train_config": asdict(train_config),
        "compress_config": config.to_dict(),
        "classes": classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_videos": len(test_items),
        "monitored_split": monitored,
        "validation_videos": len(validation_items),
        "steps": [r.to_dict() for r in results],
        "dsd_history": history.to_dict(),
        "quantization": report.to_dict(),
        "container": container.to_dict(),
        "ratio": results[0].bytes / results[-1].bytes,
        "accuracy_drop_points": 100 * (results[0].accuracy - results[-1].accuracy),
        "bits_per_parameter": container.totals()["bits_per_parameter"],
        "weight_bits_per_nonzero": _weight_bits_per_nonzero(final),
        "comparison": comparison,
        "paired": paired_comparison(labels, before, after, classes),
    }
    (out / "compression.json").write_text(json.dumps(summary, indent=2))
    return summary


def paired_comparison(labels: np.ndarray, before: np.ndarray, after: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """What changed, video by video, between two models on the same test videos.

    An accuracy drop of a few videos can be churn: some answers turn wrong while as many others turn
    right. McNemar's exact test asks whether the videos that changed lean one way more than a coin
    would make them (the two-sided binomial test on the discordant pairs).
    """
    right_before, right_after = before == labels, after == labels
    lost = int(np.sum(right_before & ~right_after))
    gained = int(np.sum(~right_before & right_after))
    test = binomtest(lost, lost + gained, 0.5) if lost + gained else None
    p_value = float(test.pvalue) if test else 1.0
    # 95% interval of the accuracy change (after - before): exact (Clopper-Pearson) on the share of the
    # discordant videos that turned right, conditional on their number, scaled by discordant / all.
    share = (lost + gained) / max(len(labels), 1)
    if test:
        interval = test.proportion_ci(0.95, method="exact")  # of the share that turned wrong
        change_interval = [share * (1 - 2 * interval.high), share * (1 - 2 * interval.low)]
    else:
        change_interval = [0.0, 0.0]
    per_class = {
        name: {
            "videos": int(np.sum(labels == index)),
            "original": float(np.mean(right_before[labels == index])),
            "compressed": float(np.mean(right_after[labels == index])),
        }
        for index, name in enumerate(classes)
        if np.any(labels == index)  # a class with no test videos has no accuracy
    }
    return {
        "right_to_wrong": lost, "wrong_to_right": gained, "mcnemar_p": p_value,
        "change": (gained - lost) / max(len(labels), 1), "change_interval_95": change_interval, "per_class": per_class,
    }  # fmt: skip


def _weight_bits_per_nonzero(path: Path) -> dict[str, float]:
    """Coded bits per stored nonzero of a container's weight and index streams, over all layers."""
    layers = inspect_container(read_container(path)).layers
    nonzeros = max(sum(layer.nonzeros for layer in layers), 1)
    return {
        "weights": sum(layer.weight_payload_bits for layer in layers) / nonzeros,
        "indices": sum(layer.index_payload_bits for layer in layers) / nonzeros,
    }


def _encoding(config: CompressConfig, quantization: QuantizeConfig, huffman: bool = True) -> EncodeConfig:
    """The encode step's config with a quantizer's bits (each layer's codebook holds its values)."""
    return EncodeConfig(bits=quantization.bits, index_bits=config.encode.index_bits, huffman=huffman)


DEMO_FUSION = "weighted"  # the demo's: why, docs/tc3d.md "What the demo runs"


def default_run_config(
    data: str, out: str, width: int, size: int, epochs: int, fusion: str = DEMO_FUSION
) -> TrainConfig:
    """The CPU-sized training configuration of the demo; weighted fusion's weights stay at 1/S for the
    first third of the epochs (`fusion_warmup_for`)."""
    steps = [max(1, int(epochs * 0.67)), max(1, int(epochs * 0.87))]
    return TrainConfig(
        data=data, out=out, width=width, size=size, epochs=epochs, batch_size=8, lr=0.01, lr_steps=steps,
        dropout=0.5, workers=2, fusion=fusion, fusion_warmup=fusion_warmup_for(fusion, epochs // 3),
    )  # fmt: skip
