"""`diff_state_dicts`: what compression did to each layer, one state dict against another.

Per compressible layer (of the reference): relative error ||b - a|| / ||a||, signal-to-quantization-
noise ratio 10 log10(||a||^2 / ||b - a||^2) in dB, and each side's sparsity, distinct values and the
bits those need (ceil(log2(distinct nonzero values + 1)), zero counted as one symbol).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vidcompress.errors import InputError
from vidcompress.layers import state_dict_layers
from vidcompress.report import markdown_table


@dataclass(frozen=True)
class Side:
    sparsity: float
    distinct: int  # distinct nonzero values
    bits: int  # the codebook width that holds them (zero included); 32 for more than 2^16 - 1

    @classmethod
    def of(cls, tensor: torch.Tensor) -> Side:
        flat = tensor.detach().reshape(-1)
        nonzero = flat[flat != 0]
        distinct = int(torch.unique(nonzero).numel())
        bits = max(1, math.ceil(math.log2(distinct + 1))) if distinct < 1 << 16 else 32
        return cls(1.0 - nonzero.numel() / max(flat.numel(), 1), distinct, bits)


@dataclass(frozen=True)
class LayerDiff:
    name: str
    kind: str
    parameters: int
    relative_error: float
    sqnr_db: float  # inf where the layers are equal
    a: Side
    b: Side


@dataclass(frozen=True)
class DiffReport:
    layers: list[LayerDiff]
    only_in_a: list[str]
    only_in_b: list[str]
    other_changed: list[str]  # tensors that are not compressible layers and differ

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [
                {**asdict(layer), "sqnr_db": None if math.isinf(layer.sqnr_db) else layer.sqnr_db}
                for layer in self.layers
            ],
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "other_changed": self.other_changed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        rows = [
            [
                layer.name, layer.kind, f"{layer.parameters:,}", f"{layer.relative_error:.4g}",
                "equal" if math.isinf(layer.sqnr_db) else f"{layer.sqnr_db:.1f}",
                f"{layer.a.sparsity:.3f} -> {layer.b.sparsity:.3f}",
                f"{_bits(layer.a)} -> {_bits(layer.b)}",
            ]
            for layer in self.layers
        ]  # fmt: skip
        lines = [
            markdown_table(["layer", "kind", "parameters", "relative error", "SQNR (dB)", "sparsity", "bits"], rows)
        ]
        if self.layers:
            total = sum(layer.parameters for layer in self.layers)
            worst = min(self.layers, key=lambda layer: layer.sqnr_db)
            weighted = sum(layer.relative_error * layer.parameters for layer in self.layers) / max(total, 1)
            lines.append(
                f"\n{len(self.layers)} layers, {total:,} parameters; relative error {weighted:.4g} "
                f"(parameter-weighted mean); lowest SQNR: {worst.name}."
            )
        for label, names in (
            ("only in A", self.only_in_a),
            ("only in B", self.only_in_b),
            ("other tensors that differ", self.other_changed),
        ):
            if names:
                lines.append(
                    f"{label}: {', '.join(names[:8])}{f', ... {len(names) - 8} more' if len(names) > 8 else ''}"
                )
        return "\n".join(lines)


def _bits(side: Side) -> str:
    return "fp" if side.bits == 32 else str(side.bits)


def diff_state_dicts(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> DiffReport:
    """Compare `b` (e.g. compressed) with the reference `a`, layer by layer.

    Raises:
        InputError: a layer present in both has another shape in `b`.
    """
    layers = []
    for layer in state_dict_layers(a):
        if layer.name not in b:
            continue
        reference, other = a[layer.name].detach(), b[layer.name].detach()
        if reference.shape != other.shape:
            raise InputError(f"{layer.name}: shape {tuple(reference.shape)} in A, {tuple(other.shape)} in B")
        ref64, other64 = reference.double(), other.double()
        signal, noise = float(ref64.square().sum()), float((other64 - ref64).square().sum())
        layers.append(
            LayerDiff(
                name=layer.name,
                kind=layer.kind.value,
                parameters=reference.numel(),
                relative_error=math.sqrt(noise / signal) if signal else (0.0 if noise == 0 else math.inf),
                sqnr_db=math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal else -math.inf),
                a=Side.of(reference),
                b=Side.of(other),
            )
        )
    compared = {layer.name for layer in layers}
    other_changed = [
        name
        for name in a
        if name in b and name not in compared and (a[name].shape != b[name].shape or not torch.equal(a[name], b[name]))
    ]
    return DiffReport(layers, [n for n in a if n not in b], [n for n in b if n not in a], other_changed)
