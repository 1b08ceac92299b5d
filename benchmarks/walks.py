"""What the row walk (container format 5) saves on real trained networks, and what it costs the encoder.

Deep Compression's relative index walks `W.reshape(out, -1)` column by column. Since format 5 the
encoder also prices the walk row by row, per layer, and keeps the smaller; where whole input units are
pruned away (a first layer's always-blank pixels) or whole output units, the zeros are not spread alike
both ways. This encodes the same quantized weights twice, with the column walk only
(`EncodeConfig(row_walk=False)`, a format-4 file) and with both walks, and reports the file bytes, how
many layers took the row walk, and the encoding and decoding times (weighing two walks costs the
encoder a second pass per layer).

Subjects: real trained networks only (the LeNets `benchmarks.lenet` trains on real MNIST, the `ccexam`
MNIST CNN, DeepMind's I3D), pruned one-shot by magnitude and quantized by k-means without retraining at
Deep Compression's settings (LeNets: the paper's per-layer rates and bits; the CNN: T-C3D's conv 0.9 /
fc 0.95 at 8 / 5 bits; I3D: the same on its convolutions and its 1x1x1 logits, as `benchmarks.i3d`).
Retraining moves values, not masks, so the walks see the masks the pipeline would keep; `lenet.md`
measures the same on the retrained LeNets.

    python -m benchmarks.walks
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, machine_line, timed, write_results
from benchmarks.entropy_gap import tensors_of
from examples.i3d.compress import PAPER_BITS as I3D_BITS
from examples.i3d.compress import PAPER_SPARSITY as I3D_SPARSITY
from vidcompress import PAPER_BITS, PAPER_SPARSITY, QuantizeConfig, prune_state_dict, quantize_state_dict
from vidcompress.codec import EncodeConfig, decode, encode
from vidcompress.report import markdown_table

# (label, model, sparsity rules, bits): the LeNets' rates and bits are Deep Compression's Table 1
SUBJECTS: tuple[tuple[str, str, str, str], ...] = (
    ("LeNet-300-100 (paper: 8% kept, 6 bits)", "LeNet-300-100", "1.weight=0.92,3.weight=0.91,5.weight=0.74", "fc=6"),
    ("LeNet-5 (paper: 8% kept, 8 / 5 bits)", "LeNet-5", "0.weight=0.34,2.weight=0.88,5.weight=0.92,7.weight=0.81",
     "conv=8,fc=5"),
    ("MNIST CNN (ccexam), conv 0.9 / fc 0.95, 8 / 5 bits", "ccexam", PAPER_SPARSITY, PAPER_BITS),
    ("I3D (Kinetics-400), conv 0.9 / logits 0.95, 8 / 5 bits", "i3d", I3D_SPARSITY, I3D_BITS),
)  # fmt: skip


def quantized(model: str, sparsity: str, bits: str) -> dict[str, torch.Tensor]:
    """The subject's state dict pruned and quantized."""
    pruned, _ = prune_state_dict(tensors_of(model), sparsity)
    return quantize_state_dict(pruned, QuantizeConfig(bits=bits))[0]


def measure(subject: dict[str, torch.Tensor], bits: str, folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for label, row_walk in (("columns", False), ("best", True)):
        path = folder / f"{label}.vcz"
        config = EncodeConfig(bits=bits, index_bits="auto", row_walk=row_walk)
        encode_seconds, container = timed(encode, subject, path, config, repeat=3)
        decode_seconds, _ = timed(decode, path, repeat=3)
        result[label] = {
            "file_bytes": path.stat().st_size,
            "encode_seconds": encode_seconds,
            "decode_seconds": decode_seconds,
            "layouts": {entry.name: entry.layout.value for entry in container.layers},
            "format_version": container.metadata["format_version"],
        }
    return result


def main() -> None:
    info = machine()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, model, sparsity, bits in SUBJECTS:
            subject = quantized(model, sparsity, bits)
            rows.append({"subject": label, "sparsity": sparsity, "bits": bits, **measure(subject, bits, Path(folder))})
            print(label, {k: v for k, v in rows[-1]["best"].items() if k != "layouts"}, flush=True)
    cells = []
    for r in rows:
        columns, best = r["columns"], r["best"]
        layouts = list(best["layouts"].values())
        cells.append([
            r["subject"], f"{columns['file_bytes']:,}", f"{best['file_bytes']:,}",
            f"{100 * (1 - best['file_bytes'] / columns['file_bytes']):.1f}%",
            f"{layouts.count('rows')} of {len(layouts)}",
            f"{columns['encode_seconds']:.2f} -> {best['encode_seconds']:.2f}",
            f"{columns['decode_seconds']:.3f} -> {best['decode_seconds']:.3f}",
        ])  # fmt: skip
    lines = [
        "# The row walk (container format 5) on real trained networks",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.walks`.",
        "",
        " ".join(__doc__.split("\n\n")[1:3]).replace("\n", " "),
        "",
        markdown_table(
            [
                "subject",
                "file, column walk only (bytes)",
                "file, either walk (bytes)",
                "saved",
                "layers walking rows",
                "encode (s)",
                "decode (s)",
            ],
            cells,
        ),
        "",
        "Times: best of 3, column walk only -> either walk. Index widths `auto` (per layer and walk).",
    ]
    write_results("walks", {"machine": info, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
