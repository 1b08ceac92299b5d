"""Post-training compression of the pretrained I3D through vidcompress's public API only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from examples.i3d.model import I3D
from vidcompress import PruneConfig, QuantizeConfig, encode, finalize_, load_compressed, prune_, quantize_
from vidcompress.codec import inspect_container, read_container

# The paper's final setting: conv layers at 0.9 and 8 bits; the classifier (I3D's logits are a 1x1x1
# convolution) at 0.95 and 5 bits, as T-C3D treats its FC layer.
PAPER_SPARSITY = "conv=0.9,logits.conv.weight=0.95"
PAPER_BITS = "conv=8,logits.conv.weight=5"


def compress_i3d(model: I3D, sparsity: str | None, bits: str, path: Path) -> tuple[I3D, dict[str, Any]]:
    """Prune (one-shot, by magnitude; None leaves the weights dense), quantize (k-means per layer),
    encode to `path`; return the model decoded from that file and the container's figures."""
    if sparsity:
        prune_(model, PruneConfig(sparsity=sparsity))
    quantize_(model, QuantizeConfig(bits=bits))
    finalize_(model)
    encode(model, path)
    report = inspect_container(read_container(path))
    totals = report.totals()
    figures = {
        "bytes": path.stat().st_size,
        "bits_per_parameter": totals["bits_per_parameter"],
        "weights_kept": totals["nonzeros"] / max(sum(layer.parameters for layer in report.layers), 1),
    }
    return load_compressed(path, I3D()).eval(), figures
