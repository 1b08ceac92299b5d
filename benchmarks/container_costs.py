"""The container's fixed costs and its lightly pruned layers, against their bounds, in one run.

1. Bytes that are not weights (manifest, provenance metadata, envelope header, codebooks, code tables,
   raw tensors) for three models, each as stored, with raw tensors in float16 (`raw_dtype`), and with
   batch norm folded into its layer first (`fold_bn_`) plus float16: T-C3D at width 8 (the tests' size), full-size T-C3D at the paper's settings, and a MiniLM-L6-sized BERT
   (hidden 384, 6 layers, vocabulary 30,522; random weights from its transformers configuration: no
   trained weights can be downloaded here), fc at 8 bits, embeddings at 8 bits.
2. Trained MNIST networks (the `ccexam` CNN; a CNN with batch norm trained here for one epoch): the
   same three ways at one fixed one-shot setting, with test top-1 of the model decoded from each file.
3. A transformer-sized matrix (30,522 x 384, MiniLM's word embeddings; Gaussian values quantized to
   8 bits) magnitude-pruned to sparsity 0, 0.001, 0.1 and 0.3: the container's bytes for the layer, what
   the sparse layout alone (relative index, container v2) would cost, and the bound: the entropy of the
   zero/nonzero pattern plus the nonzero symbols' entropy.

    python -m benchmarks.container_costs
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.common import machine, machine_line, write_results
from vidcompress import PAPER_BITS, PAPER_SPARSITY, fold_bn_, load_compressed, prune_state_dict, quantize_state_dict
from vidcompress.codec import FORMAT_VERSION, EncodeConfig, encode, read_container, size_breakdown
from vidcompress.codec.layer import coded_bytes, layer_codebook
from vidcompress.codec.relative_index import column_major, relative_index_encode
from vidcompress.metadata import with_stage
from vidcompress.quantize import QuantizeConfig
from vidcompress.report import markdown_table
from vidcompress.rules import BITS, SPARSITY, LayerRules


def _models() -> dict[str, tuple[nn.Module, str, str]]:
    import transformers

    from examples.tc3d import build_tc3d

    torch.manual_seed(0)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
        )
    )
    return {
        "T-C3D, width 8 (tests)": (build_tc3d(num_classes=8, width=8), PAPER_SPARSITY, PAPER_BITS),
        "T-C3D, full size (paper)": (build_tc3d(num_classes=101), PAPER_SPARSITY, PAPER_BITS),
        "BERT, MiniLM-L6 size": (bert, "fc=0.5", "fc=8,emb=8"),
    }


VARIANTS = ("as stored", "raw float16", "BN folded + raw float16")
NOT_WEIGHTS = ("manifest", "provenance", "envelope_header", "codebooks", "code_tables", "raw_tensors")


def _compressed_file(model: nn.Module, variant: str, sparsity: str, bits: str, path: Path) -> dict[str, int]:
    """Fold (if the variant says so), prune, quantize and encode a copy of `model`; the file's parts."""
    model = copy.deepcopy(model).eval()
    if variant.startswith("BN folded"):
        fold_bn_(model)
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    pruned, targets = prune_state_dict(state, LayerRules.parse(sparsity, SPARSITY, default=True))
    config = QuantizeConfig(bits=LayerRules.parse(bits, BITS, default=True))
    quantized, report = quantize_state_dict(pruned, config)
    record = {"layers": {layer.name: {"bits": layer.bits, "sse": layer.sse} for layer in report.layers}}
    metadata = with_stage(with_stage({}, "prune", {"sparsity": targets}), "quantize", record)
    raw_dtype = None if variant == "as stored" else "float16"
    encode(quantized, path, EncodeConfig(raw_dtype=raw_dtype), metadata=metadata)
    parts = size_breakdown(read_container(path))
    return {**parts, "layers": len(report.layers), "not_weights": sum(parts[k] for k in NOT_WEIGHTS)}


def fixed_costs(folder: Path) -> list[dict]:
    rows = []
    for name, (model, sparsity, bits) in _models().items():
        for variant in VARIANTS:
            parts = _compressed_file(model, variant, sparsity, bits, folder / "m.vcz")
            rows.append({"model": name, "variant": variant, **parts})
            print(name, variant, parts, flush=True)
    return rows


class BatchNormCNN(nn.Module):
    """A small MNIST CNN with batch norm after every layer but the last (conv-BN-ReLU-pool twice, FC-BN-ReLU, FC)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(32 * 49, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


MNIST_SPARSITY, MNIST_BITS = "conv=0.5,fc=0.7", "conv=8,fc=5"  # one fixed one-shot setting, not tuned


def mnist_rows(folder: Path) -> list[dict]:
    """The MNIST networks as stored, with raw float16, and BN-folded + float16: bytes and test top-1."""
    from benchmarks.mnist_cnn import MNISTNet
    from examples.real import load_ccexam_state_dict, load_mnist

    data = load_mnist()
    images, labels = data["test"]
    x = (torch.from_numpy(images).view(-1, 1, 28, 28) - 0.1307) / 0.3081
    y = torch.from_numpy(labels)

    def top1(model: nn.Module) -> float:
        with torch.no_grad():
            return 100.0 * float((model.eval()(x).argmax(1) == y).float().mean())

    ccexam = MNISTNet()
    ccexam.load_state_dict(load_ccexam_state_dict())
    trained = _train_batchnorm_cnn(data["train"])
    rows = []
    for name, model, build in (
        ("ccexam CNN (no BN)", ccexam, MNISTNet),
        ("BN CNN, 1 epoch here", trained, BatchNormCNN),
    ):
        dense = top1(model)
        for variant in VARIANTS:
            if variant.startswith("BN folded") and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
                continue
            path = folder / "mnist.vcz"
            parts = _compressed_file(model, variant, MNIST_SPARSITY, MNIST_BITS, path)
            architecture = build().eval()
            if variant.startswith("BN folded"):
                fold_bn_(architecture)
            decoded = load_compressed(path, architecture)
            rows.append({"model": name, "variant": variant, "dense_top1": dense, "top1": top1(decoded), **parts})
            print(rows[-1]["model"], variant, rows[-1]["total"], rows[-1]["top1"], flush=True)
    return rows


def _train_batchnorm_cnn(train: tuple[np.ndarray, np.ndarray]) -> nn.Module:
    torch.manual_seed(0)
    model = BatchNormCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = (torch.from_numpy(train[0]).view(-1, 1, 28, 28) - 0.1307) / 0.3081
    labels = torch.from_numpy(train[1])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    model.train()
    for start in range(0, len(order), 128):
        batch = order[start : start + 128]
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def light_pruning(folder: Path) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(30522, 384, generator=generator) * 0.05
    quantized, _ = quantize_state_dict({"embeddings.word_embeddings.weight": weight}, QuantizeConfig(bits="emb=8"))
    base = quantized["embeddings.word_embeddings.weight"]
    rows = []
    for sparsity in (0.0, 0.001, 0.1, 0.3):
        rules = LayerRules.parse(f"emb={sparsity}" if sparsity else "emb=off", SPARSITY)
        state = {"embeddings.word_embeddings.weight": base}
        pruned, _ = prune_state_dict(state, rules)
        tensor = pruned["embeddings.word_embeddings.weight"]
        container = encode(pruned, folder / "l.vcz", EncodeConfig(bits="emb=8", index_bits="emb=auto"))
        entry = container.layers[0]
        _, flat = layer_codebook(tensor, 8, "layer")
        alphabet = int(flat.max()) + 1
        columns = column_major(flat, tuple(tensor.shape))  # container v2's walk
        best_sparse = min(
            coded_bytes(entries.symbols, alphabet) + coded_bytes(entries.codes, 1 << bits)
            for bits in range(1, 13)
            for entries in [relative_index_encode(columns, bits)]
        )
        n = flat.size
        zeros = int((flat == 0).sum())
        p = zeros / n
        pattern_bits = 0.0 if p in (0.0, 1.0) else n * -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
        _, counts = np.unique(flat[flat != 0], return_counts=True)
        q = counts / counts.sum()
        value_bits = float(-(q * np.log2(q)).sum() * counts.sum())
        rows.append(
            {
                "sparsity": sparsity,
                "layout": entry.layout,
                "layer_bytes": entry.data_bytes,
                "sparse_layout_bytes": best_sparse,
                "bound_bytes": (pattern_bits + value_bits) / 8,
                "pattern_bound_bytes": pattern_bits / 8,
                "file_bytes": container.file_bytes,
            }
        )
        print(rows[-1])
    return rows


def _parts_row(r: dict) -> list:
    return [
        r["model"], r["variant"], r["layers"], f"{r['total']:,}", f"{r['raw_tensors']:,}",
        f"{r['manifest'] + r['provenance'] + r['envelope_header']:,}", f"{r['codebooks']:,}", f"{r['code_tables']:,}",
        f"{r['not_weights']:,} ({100 * r['not_weights'] / r['total']:.1f}%)",
    ]  # fmt: skip


PARTS_HEADER = ["model", "variant", "layers", "file", "raw tensors", "manifest + envelope", "codebooks", "code tables",
                "not weights"]  # fmt: skip


def main() -> None:
    info = machine()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        costs = fixed_costs(folder)
        mnist = mnist_rows(folder)
        light = light_pruning(folder)
    lines = [
        "# Container: bytes that are not weights, and lightly pruned layers",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.container_costs`.",
        "",
        f"## Bytes that are not weights (container format {FORMAT_VERSION})",
        "",
        "Not weights: raw tensors (biases, norms, buffers), manifest, provenance (the earlier stages' record),",
        "envelope header, codebooks and code tables. Each model three ways: as stored; raw tensors in float16",
        "(`--raw-dtype float16`); batch norm folded into the layer before it (`fold_bn_`), then float16.",
        "Weights are random here (see the module docstring); these costs do not depend on their values.",
        "",
        markdown_table(PARTS_HEADER, [_parts_row(r) for r in costs]),
        "",
        "## Trained MNIST networks: the same three ways, and test top-1",
        "",
        f"One fixed one-shot setting, no retraining: sparsity `{MNIST_SPARSITY}`, bits `{MNIST_BITS}` (not tuned).",
        "Top-1 on the 10,000 MNIST test images, of the model decoded from each file (dense: before compression).",
        "The BN CNN is trained here for one epoch (Adam, batch 128, seed 0) on the 50,000 training images.",
        "",
        markdown_table(
            [*PARTS_HEADER, "dense top-1 %", "top-1 %"],
            [[*_parts_row(r), f"{r['dense_top1']:.2f}", f"{r['top1']:.2f}"] for r in mnist],
        ),
        "",
        "## A lightly pruned 30,522 x 384 matrix (8 bits)",
        "",
        "Bound: the entropy of the zero/nonzero pattern plus the entropy of the nonzero symbols. Sparse",
        "layout: the best relative-index width (1-12 bits), the only layout of container format 2.",
        "",
        markdown_table(
            ["sparsity", "layout chosen", "layer bytes", "sparse layout bytes", "bound bytes", "over the bound"],
            [
                [
                    r["sparsity"],
                    r["layout"],
                    f"{r['layer_bytes']:,}",
                    f"{r['sparse_layout_bytes']:,}",
                    f"{r['bound_bytes']:,.0f}",
                    f"{100 * (r['layer_bytes'] / r['bound_bytes'] - 1):.2f}%",
                ]
                for r in light
            ],
        ),
    ]
    write_results(
        "container_costs",
        {"machine": info, "fixed_costs": costs, "mnist": mnist, "light_pruning": light},
        "\n".join(lines),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
