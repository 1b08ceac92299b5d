"""Reports on weights files: per-layer tables as Markdown and JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vidcompress.layers import state_dict_kind, why_not_compressible
from vidcompress.metadata import read_stages


def machine_info() -> dict[str, Any]:
    """What a measurement ran on: CPU, cores, threads, GPU, versions and date (for reports' headers)."""
    import numpy
    import torch

    from vidcompress._version import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "vidcompress": __version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
    }
    return info


def machine_line(info: dict[str, Any]) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']}, {info['cores']} cores{gpu}; torch {info['torch']}; {info['date']}"


def size_change(before: int, after: int) -> str:
    """How `after` bytes compare with `before`: '3.2x smaller than', '1.1x larger than', 'as large as'."""
    if after <= 0 or before <= 0 or round(before / after, 1) == 1.0:
        return "about as large as"
    return f"{before / after:.1f}x smaller than" if after < before else f"{after / before:.1f}x larger than"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; the first column is left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class LayerStats:
    """What `inspect` shows of one tensor."""

    name: str
    shape: list[int]
    kind: str  # "conv", "fc", "emb" or "other" (biases, norms, buffers: never compressed)
    dtype: str
    parameters: int
    nonzeros: int
    distinct_values: int
    bits: int | None = None  # from the quantize stage's metadata, when the file has one
    codebook: list[float] | None = None
    note: str = ""  # why a tensor of 2+ dimensions is left alone
    nonfinite: int = 0  # NaN and inf values (a float tensor's)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.parameters if self.parameters else 0.0


@dataclass
class WeightsReport:
    """Per-tensor statistics of a state dict plus totals, and the file's metadata."""

    layers: list[LayerStats]
    metadata: dict[str, str] = field(default_factory=dict)
    file_bytes: int | None = None

    @property
    def compressible(self) -> list[LayerStats]:
        return [layer for layer in self.layers if layer.kind != "other"]

    def totals(self) -> dict[str, Any]:
        params = sum(layer.parameters for layer in self.layers)
        nonzeros = sum(layer.nonzeros for layer in self.layers)
        c_params = sum(layer.parameters for layer in self.compressible)
        c_nonzeros = sum(layer.nonzeros for layer in self.compressible)
        return {
            "tensors": len(self.layers),
            "compressible_layers": len(self.compressible),
            "parameters": params,
            "nonzeros": nonzeros,
            "sparsity": 1.0 - nonzeros / params if params else 0.0,
            "compressible_parameters": c_params,
            "compressible_sparsity": 1.0 - c_nonzeros / c_params if c_params else 0.0,
            "file_bytes": self.file_bytes,
            "nonfinite": sum(layer.nonfinite for layer in self.layers),
        }

    def to_dict(self) -> dict[str, Any]:
        layers = [{**asdict(layer), "sparsity": layer.sparsity} for layer in self.layers]
        return {"layers": layers, "totals": self.totals(), "metadata": self.metadata}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def codebooks_text(self) -> str:
        """One line per quantized layer: its codebook (symbol 0 is zero)."""
        return "\n".join(
            f"{layer.name} ({layer.bits} bits): " + ", ".join(f"{c:.4g}" for c in layer.codebook)
            for layer in self.layers
            if layer.codebook is not None
        )

    def to_markdown(self, *, all_tensors: bool = False) -> str:
        shown = self.layers if all_tensors else [layer for layer in self.layers if layer.kind != "other" or layer.note]
        rows = [
            [
                layer.name,
                "x".join(map(str, layer.shape)),
                f"other ({layer.note})" if layer.note else layer.kind,
                f"{layer.parameters:,}",
                f"{layer.nonzeros:,}",
                f"{layer.sparsity:.3f}",
                f"{layer.distinct_values:,}",
                "-" if layer.bits is None else layer.bits,
            ]
            for layer in shown
        ]
        table = markdown_table(
            ["layer", "shape", "kind", "parameters", "nonzeros", "sparsity", "distinct", "bits"], rows
        )
        totals = self.totals()
        summary = (
            f"{totals['compressible_layers']} compressible layers of {totals['tensors']} tensors; "
            f"{totals['parameters']:,} parameters, {totals['nonzeros']:,} nonzero "
            f"(sparsity {totals['sparsity']:.3f}; compressible layers {totals['compressible_sparsity']:.3f})"
        )
        if self.file_bytes is not None:
            summary += f"; file {self.file_bytes:,} bytes"
        legend = (
            "distinct: distinct values (zero included); bits: the quantize stage's codebook width, "
            "'-' for a layer not quantized by vidcompress"
        )
        text = f"{table}\n\n{summary}\n{legend}"
        bad = [layer for layer in self.layers if layer.nonfinite]
        if bad:
            listed = ", ".join(f"{layer.name} ({layer.nonfinite:,})" for layer in bad)
            text += f"\nnon-finite values (NaN or inf), which prune, quantize and encode refuse: {listed}"
        return text


def inspect_state_dict(
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    file_bytes: int | None = None,
) -> WeightsReport:
    """Statistics of every tensor of a state dict (kind, nonzeros, sparsity, distinct values)."""
    quantized = read_stages(metadata or {}).get("quantize", {}).get("layers", {})
    layers = []
    for name, tensor in tensors.items():
        kind = state_dict_kind(name, tensor)
        flat = tensor.detach().reshape(-1)
        distinct = torch.unique(flat) if flat.numel() else flat
        bits = quantized.get(name, {}).get("bits")
        nonfinite = int((~torch.isfinite(flat)).sum()) if flat.is_floating_point() else 0
        layers.append(
            LayerStats(
                name=name,
                shape=list(tensor.shape),
                kind=kind.value if kind else "other",
                dtype=str(tensor.dtype).removeprefix("torch."),
                parameters=flat.numel(),
                nonzeros=int(torch.count_nonzero(flat)),
                distinct_values=int(distinct.numel()),
                bits=bits,
                codebook=_codebook(distinct) if bits is not None and distinct.numel() <= 1 << 16 else None,
                note=why_not_compressible(name, tensor) if kind is None and tensor.ndim >= 2 else "",
                nonfinite=nonfinite,
            )
        )
    return WeightsReport(layers, dict(metadata or {}), file_bytes)


def _codebook(distinct: torch.Tensor) -> list[float]:
    """A quantized layer's codebook as the encoder numbers it: zero first, then the values in order."""
    return [0.0, *(float(v) for v in distinct if v != 0)]
