"""The container's fixed costs and its lightly pruned layers, against their bounds, in one run.

1. Bytes that are not weights (manifest, provenance metadata, envelope header, codebooks, code tables)
   for three models: T-C3D at width 8 (the tests' size), full-size T-C3D at the paper's settings, and a MiniLM-L6-sized BERT
   (hidden 384, 6 layers, vocabulary 30,522; random weights from its transformers configuration: no
   trained weights can be downloaded here), fc at 8 bits, embeddings at 8 bits.
2. A transformer-sized matrix (30,522 x 384, MiniLM's word embeddings; Gaussian values quantized to
   8 bits) magnitude-pruned to sparsity 0, 0.001, 0.1 and 0.3: the container's bytes for the layer, what
   the sparse layout alone (relative index, container v2) would cost, and the bound: the entropy of the
   zero/nonzero pattern plus the nonzero symbols' entropy.

    python -m benchmarks.container_costs
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, machine_line, write_results
from vidcompress import PAPER_BITS, PAPER_SPARSITY, prune_state_dict, quantize_state_dict
from vidcompress.codec import FORMAT_VERSION, EncodeConfig, encode, read_container, size_breakdown
from vidcompress.codec.layer import coded_bytes, layer_codebook
from vidcompress.codec.relative_index import column_major, relative_index_encode
from vidcompress.metadata import with_stage
from vidcompress.quantize import QuantizeConfig
from vidcompress.report import markdown_table
from vidcompress.rules import BITS, SPARSITY, LayerRules


def _models() -> dict[str, tuple[dict[str, torch.Tensor], str, str]]:
    import transformers

    from examples.tc3d import build_tc3d

    torch.manual_seed(0)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
        )
    )
    return {
        "T-C3D, width 8 (tests)": (build_tc3d(num_classes=8, width=8).state_dict(), PAPER_SPARSITY, PAPER_BITS),
        "T-C3D, full size (paper)": (build_tc3d(num_classes=101).state_dict(), PAPER_SPARSITY, PAPER_BITS),
        "BERT, MiniLM-L6 size": (bert.state_dict(), "fc=0.5", "fc=8,emb=8"),
    }


def fixed_costs(folder: Path) -> list[dict]:
    rows = []
    for name, (state, sparsity, bits) in _models().items():
        pruned, targets = prune_state_dict(state, LayerRules.parse(sparsity, SPARSITY, default=True))
        config = QuantizeConfig(bits=LayerRules.parse(bits, BITS, default=True))
        quantized, report = quantize_state_dict(pruned, config)
        record = {"layers": {layer.name: {"bits": layer.bits, "sse": layer.sse} for layer in report.layers}}
        metadata = with_stage(with_stage({}, "prune", {"sparsity": targets}), "quantize", record)
        path = folder / "m.vcz"
        encode(quantized, path, metadata=metadata)
        parts = size_breakdown(read_container(path))
        not_weights = sum(parts[k] for k in ("manifest", "provenance", "envelope_header", "codebooks", "code_tables"))
        rows.append({"model": name, "layers": len(report.layers), **parts, "not_weights": not_weights})
        print(name, parts)
    return rows


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


def main() -> None:
    info = machine()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        costs = fixed_costs(folder)
        light = light_pruning(folder)
    lines = [
        "# Container: fixed costs and lightly pruned layers",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.container_costs`.",
        "",
        f"## Bytes that are not weights (container format {FORMAT_VERSION})",
        "",
        "Weights are random (see the module docstring); the fixed costs do not depend on their values.",
        "Provenance: the earlier stages' record (bits and targets per layer), on its own line since the",
        "codebooks are no longer repeated there as JSON text.",
        "",
        markdown_table(
            [
                "model",
                "layers",
                "file",
                "manifest",
                "provenance",
                "envelope",
                "codebooks",
                "code tables",
                "not weights",
            ],
            [
                [
                    r["model"],
                    r["layers"],
                    f"{r['total']:,}",
                    f"{r['manifest']:,}",
                    f"{r['provenance']:,}",
                    f"{r['envelope_header']:,}",
                    f"{r['codebooks']:,}",
                    f"{r['code_tables']:,}",
                    f"{r['not_weights']:,} ({100 * r['not_weights'] / r['total']:.1f}%)",
                ]
                for r in costs
            ],
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
    write_results("container_costs", {"machine": info, "fixed_costs": costs, "light_pruning": light}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
