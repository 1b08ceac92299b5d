"""`vidcompress inspect` on a container: coded bits per nonzero next to entropy, bytes by component."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from safetensors import safe_open

from vidcompress.codec.container import Container, size_breakdown
from vidcompress.codec.layer import decode_streams, entropy_bits
from vidcompress.report import markdown_table, size_change


@dataclass
class CodedLayerStats:
    name: str
    shape: list[int]
    kind: str
    bits: int
    index_bits: int  # width of a relative index (0: a dense layer, no index)
    layout: str  # sparse (relative index walking columns), rows (walking rows) or dense
    parameters: int
    nonzeros: int
    fillers: int
    weight_coding: str
    index_coding: str
    weight_group: int  # symbols a Huffman codeword codes (format 4; 1 otherwise)
    index_group: int
    weight_payload_bits: int  # payload bits of the weight-symbol stream
    weight_entropy_bits: float
    index_payload_bits: int  # payload bits of the index stream
    index_entropy_bits: float
    bytes: int  # streams + code tables + codebook

    @property
    def ratio_to_fp32(self) -> float:
        return 4 * self.parameters / self.bytes if self.bytes else float("inf")


@dataclass
class ContainerReport:
    layers: list[CodedLayerStats]
    raw_tensors: int
    raw_parameters: int
    breakdown: dict[str, int]

    def totals(self) -> dict[str, Any]:
        parameters = sum(layer.parameters for layer in self.layers) + self.raw_parameters
        file_bytes = self.breakdown["total"]
        return {
            "parameters": parameters,
            "nonzeros": sum(layer.nonzeros for layer in self.layers),
            "fillers": sum(layer.fillers for layer in self.layers),
            "file_bytes": file_bytes,
            "fp32_bytes": 4 * parameters,
            "ratio_to_fp32": 4 * parameters / file_bytes,
            "bits_per_parameter": 8 * file_bytes / parameters if parameters else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        layers = [{**asdict(layer), "ratio_to_fp32": layer.ratio_to_fp32} for layer in self.layers]
        return {"layers": layers, "breakdown": self.breakdown, "totals": self.totals()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        def per(value: float, count: int) -> str:
            return f"{value / count:.2f}" if count else "-"

        def coding(name: str, group: int) -> str:
            return f"{name} x{group}" if group > 1 else name

        rows = [
            [
                layer.name,
                layer.kind,
                {"sparse": "columns"}.get(layer.layout, layer.layout),
                f"{layer.parameters:,}",
                f"{layer.nonzeros:,}",
                f"{layer.fillers:,}",
                f"{'raw' if layer.bits == 0 else layer.bits}/{layer.index_bits}",
                f"{coding(layer.weight_coding, layer.weight_group)} / {coding(layer.index_coding, layer.index_group)}",
                f"{per(layer.weight_payload_bits, layer.nonzeros)} ({per(layer.weight_entropy_bits, layer.nonzeros)})",
                f"{per(layer.index_payload_bits, layer.nonzeros)} ({per(layer.index_entropy_bits, layer.nonzeros)})",
                f"{layer.bytes:,}",
                f"{layer.ratio_to_fp32:.1f}x",
            ]
            for layer in self.layers
        ]
        headers = [
            "layer", "kind", "layout", "parameters", "nonzeros", "fillers", "bits/index", "coding (weights / index)",
            "weight bits/nz (entropy)", "index bits/nz (entropy)", "bytes", "vs fp32",
        ]  # fmt: skip
        totals = self.totals()
        parts = markdown_table(["component", "bytes"], [[k, f"{v:,}"] for k, v in self.breakdown.items()])
        summary = (
            f"{totals['parameters']:,} parameters in {totals['file_bytes']:,} bytes: "
            f"{size_change(totals['fp32_bytes'], totals['file_bytes'])} fp32, "
            f"{totals['bits_per_parameter']:.3f} bits per parameter"
        )
        legend = (
            "layout: columns / rows (relative indices walking the weight by columns or rows) or dense (every "
            "symbol, zeros included); fillers: zeros stored where a gap between nonzeros is longer than the "
            "index width can count; bits/index: codebook width (raw: values as they are) / relative-index "
            "width; bits/nz: coded bits per nonzero, the entropy of the stream in brackets."
        )
        return "\n\n".join([markdown_table(headers, rows), legend, parts, summary])


def inspect_container(container: Container) -> ContainerReport:
    """Decode every stream of `container` to measure its entropy; nothing is written."""
    layers = []
    with safe_open(str(container.path), framework="pt") as handle:
        for entry in container.layers:
            data = handle.get_tensor(f"layers/{entry.name}").numpy().tobytes()
            symbols, codes = decode_streams(entry, data)
            # A raw layer (values stored as they are) has no codebook tensor.
            itemsize = handle.get_tensor(f"codebooks/{entry.name}").element_size() if entry.codebook_size else 0
            layers.append(
                CodedLayerStats(
                    name=entry.name,
                    shape=list(entry.shape),
                    kind=entry.kind,
                    bits=entry.bits,
                    index_bits=entry.index_bits,
                    layout=entry.layout.value,
                    parameters=entry.numel,
                    nonzeros=entry.nonzeros,
                    fillers=entry.fillers,
                    weight_coding=entry.weights.coding,
                    index_coding=entry.indices.coding,
                    weight_group=entry.weights.group,
                    index_group=entry.indices.group,
                    weight_payload_bits=entry.weights.bit_length,
                    weight_entropy_bits=entropy_bits(symbols),
                    index_payload_bits=entry.indices.bit_length,
                    index_entropy_bits=entropy_bits(codes),
                    bytes=entry.data_bytes + entry.codebook_size * itemsize,
                )
            )
        raw_parameters = sum(_numel(handle, name) for name in container.raw)
    return ContainerReport(layers, len(container.raw), raw_parameters, size_breakdown(container))


def _numel(handle: Any, name: str) -> int:
    count = 1
    for size in handle.get_slice(f"raw/{name}").get_shape():
        count *= size
    return count
