"""`diff_state_dicts`: what compression did to each layer, one state dict against another.

Per compressible layer (of the reference): relative error ||b - a|| / ||a||, signal-to-quantization-
noise ratio 10 log10(||a||^2 / ||b - a||^2) in dB, and each side's sparsity, distinct values and the
bits those need (ceil(log2(distinct nonzero values + 1)), zero counted as one symbol). Every other
tensor that differs (a bias stored in float16, say) is listed with its relative error; NaN and inf are
counted per side, and the errors are taken over the elements finite on both.
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
    nonfinite: tuple[int, int] = (0, 0)  # NaN and inf elements in A and in B


@dataclass(frozen=True)
class TensorChange:
    """A tensor that is not a compressible layer and differs: how much, and each side's dtype."""

    name: str
    relative_error: float  # ||b - a|| / ||a|| over the elements finite on both; inf for a shape change
    dtypes: tuple[str, str]
    nonfinite: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class DiffReport:
    layers: list[LayerDiff]
    only_in_a: list[str]
    only_in_b: list[str]
    other_changed: list[TensorChange]  # tensors that are not compressible layers and differ

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [
                {**asdict(layer), "sqnr_db": None if math.isinf(layer.sqnr_db) else layer.sqnr_db}
                for layer in self.layers
            ],
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "other_changed": [
                {**asdict(change), "relative_error": _finite_or_none(change.relative_error)}
                for change in self.other_changed
            ],
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
        if self.layers:
            lines.append(
                "bits: the codebook width each side's distinct nonzero values need, ceil(log2(distinct + 1)); "
                "a float layer with many distinct values needs many (fp: more than 65,535)."
            )
        for label, names in (("only in A", self.only_in_a), ("only in B", self.only_in_b)):
            if names:
                lines.append(f"{label}: {_listing(names)}")
        if self.other_changed:
            worst_change = max(self.other_changed, key=lambda change: change.relative_error)
            described = [
                f"{c.name} ({c.relative_error:.2g}{'' if c.dtypes[0] == c.dtypes[1] else f', {c.dtypes[0]} -> {c.dtypes[1]}'})"  # noqa: E501
                for c in self.other_changed
            ]
            largest = f"largest {worst_change.relative_error:.2g} ({worst_change.name})"
            lines.append(f"other tensors that differ (relative error): {_listing(described)}; {largest}")
        nonfinite = [(layer.name, layer.nonfinite) for layer in self.layers if any(layer.nonfinite)]
        nonfinite += [(change.name, change.nonfinite) for change in self.other_changed if any(change.nonfinite)]
        if nonfinite:
            lines.append(
                "non-finite values (NaN or inf; errors are over the elements finite on both sides): "
                + _listing([f"{name} (A {a:,}, B {b:,})" for name, (a, b) in nonfinite])
            )
        return "\n".join(lines)


def _listing(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _errors(reference: torch.Tensor, other: torch.Tensor) -> tuple[float, float, tuple[int, int]]:
    """(relative error, SQNR in dB, non-finite counts of A and B) over the elements finite on both."""
    ref64, other64 = reference.detach().double(), other.detach().double()
    finite_a, finite_b = torch.isfinite(ref64), torch.isfinite(other64)
    both = finite_a & finite_b
    nonfinite = (int((~finite_a).sum()), int((~finite_b).sum()))
    ref64, other64 = ref64[both], other64[both]
    signal, noise = float(ref64.square().sum()), float((other64 - ref64).square().sum())
    relative = math.sqrt(noise / signal) if signal else (0.0 if noise == 0 else math.inf)
    if noise == 0:
        sqnr = math.inf
    elif signal == 0 or math.isinf(noise):
        sqnr = -math.inf
    else:
        sqnr = 10 * math.log10(signal / noise) if signal / noise > 0 else -math.inf
    return relative, sqnr, nonfinite


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
        relative, sqnr, nonfinite = _errors(reference, other)
        layers.append(
            LayerDiff(
                name=layer.name,
                kind=layer.kind.value,
                parameters=reference.numel(),
                relative_error=relative,
                sqnr_db=sqnr,
                a=Side.of(reference),
                b=Side.of(other),
                nonfinite=nonfinite,
            )
        )
    compared = {layer.name for layer in layers}
    other_changed = []
    for name in a:
        if name not in b or name in compared or _identical(a[name], b[name]):
            continue
        dtypes = (_dtype(a[name]), _dtype(b[name]))
        if a[name].shape != b[name].shape:
            other_changed.append(TensorChange(name, math.inf, dtypes))
            continue
        relative, _, nonfinite = _errors(a[name], b[name])
        other_changed.append(TensorChange(name, relative, dtypes, nonfinite))
    return DiffReport(layers, [n for n in a if n not in b], [n for n in b if n not in a], other_changed)


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and values (NaN equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, 0, 0, equal_nan=True)))


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
