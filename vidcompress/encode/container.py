"""The container: a safetensors envelope holding the coded layers, codebooks, raw tensors and a manifest.

Tensors: `layers/<name>` (uint8: weight stream, its code lengths, index stream, its code lengths),
`codebooks/<name>` (the codebook in the layer's dtype), `raw/<name>` (tensors stored as they are).
Metadata: `format` = "vidcompress.container", `format_version`, `manifest` (JSON), and the earlier
stages' record under `vidcompress`. docs/format.md specifies it to the bit.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.nn.utils import parametrize

from vidcompress._version import __version__
from vidcompress.encode.layer import DTYPES, LayerEntry, StreamInfo, decode_layer, encode_layer
from vidcompress.errors import ConfigError, FormatError, InputError
from vidcompress.io import StateDict, safetensors_bytes, write_atomic
from vidcompress.layers import state_dict_layers
from vidcompress.metadata import METADATA_KEY, read_stages
from vidcompress.rules import ENCODE_BITS, INDEX_BITS, LayerRules

FORMAT_NAME = "vidcompress.container"
FORMAT_VERSION = 2
DEFAULT_INDEX_BITS = "conv=8,fc=5"
MAX_INDEX_BITS = 16
MAX_ELEMENTS = 1 << 34  # per layer; a guard against a manifest declaring an absurd shape
# Decoded bytes may exceed the file's size by at most this factor (plus a floor for tiny files), so
# a hostile manifest cannot make a small file allocate unbounded memory. Deep Compression reaches
# 30-50x; an all-zero layer legitimately more, hence the wide margin.
MAX_EXPANSION = 4096
EXPANSION_FLOOR = 1 << 26
DECODE_THREADS = os.cpu_count() or 1


@dataclass
class Container:
    """A container read back: its manifest entries, raw tensors' names, order and metadata."""

    path: Path
    layers: list[LayerEntry]
    raw: list[str]
    order: list[str]
    metadata: dict[str, str]
    file_bytes: int
    raw_crc32: dict[str, int] = field(default_factory=dict)


def encode(
    source: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    bits: str | LayerRules | Mapping[str, Any] | None = None,
    index_bits: str | LayerRules | Mapping[str, Any] = DEFAULT_INDEX_BITS,
    metadata: Mapping[str, str] | None = None,
    huffman: bool = True,
) -> Container:
    """Write a model or state dict as a container; returns what was written.

    Args:
        source: a module (its state dict is used) or a state dict of quantized weights.
        bits: which layers to encode and their codebook capacity (2^b values, zero included), or
            `raw` to store a pruned layer's nonzero values as they are (no codebook).
            Default: the bits recorded by `vidcompress quantize` in `metadata`, else `conv=8,fc=5`.
        index_bits: relative-index width per layer (`conv=8,fc=5`, or `auto` for the smallest).
        metadata: the input file's metadata; its stage record is carried over.
        huffman: False stores every stream packed (or constant): the size before Huffman coding.

    Raises:
        ConfigError: a selected layer has more distinct values than its bits allow.
    """
    if isinstance(source, nn.Module) and any(parametrize.is_parametrized(m) for m in source.modules()):
        raise ConfigError("the model still has pruning masks or weight sharing attached: call finalize_(model) first")
    tensors = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    metadata = dict(metadata or {})
    layers = state_dict_layers(tensors)
    stages = read_stages(metadata)
    if bits is None and "quantize" in stages:
        recorded = stages["quantize"].get("layers", {})
        plan_bits = {layer.name: int(recorded[layer.name]["bits"]) for layer in layers if layer.name in recorded}
    else:
        plan_bits = LayerRules.parse(bits or "conv=8,fc=5", ENCODE_BITS).resolve(layers)  # type: ignore[arg-type]
    plan_index = LayerRules.parse(index_bits, INDEX_BITS).resolve(layers)  # type: ignore[arg-type]
    kinds = {layer.name: layer.kind.value for layer in layers}
    envelope: StateDict = {}
    entries: list[LayerEntry] = []
    raw: list[str] = []
    for name, tensor in tensors.items():
        if name in plan_bits:
            if name not in plan_index:
                raise ConfigError(f"{name}: index bits are off for a layer selected for encoding")
            entry, data, codebook = encode_layer(name, tensor, kinds[name], plan_bits[name], plan_index[name], huffman)
            entries.append(entry)
            envelope[f"layers/{name}"] = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
            envelope[f"codebooks/{name}"] = codebook
        else:
            raw.append(name)
            envelope[f"raw/{name}"] = tensor
    raw_crc32 = {name: _tensor_crc32(envelope[f"raw/{name}"]) for name in raw}
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "vidcompress_version": __version__,
        "created": _created(),
        "order": list(tensors),
        "raw_crc32": [raw_crc32[name] for name in raw],
        "layers": [entry.to_dict() for entry in entries],
    }
    compact = json.dumps(manifest, separators=(",", ":"))
    file_metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "manifest": compact,
        "manifest_crc32": str(zlib.crc32(compact.encode())),
    }
    if METADATA_KEY in metadata:
        file_metadata[METADATA_KEY] = metadata[METADATA_KEY]
    data = safetensors_bytes(envelope, file_metadata)

    def write(temporary: Path) -> None:
        temporary.write_bytes(data)

    write_atomic(path, write)
    return Container(Path(path), entries, raw, list(tensors), file_metadata, len(data), raw_crc32)


def is_container(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a safetensors file whose metadata names the container format."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT_NAME
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False


def read_container(path: str | os.PathLike[str]) -> Container:
    """Read and validate a container's manifest (no layer is decoded)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            keys = set(handle.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise FormatError(f"{path}: not a readable container ({error})") from None
    if metadata.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a vidcompress container (no format={FORMAT_NAME!r} in its metadata)")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise FormatError(
            f"{path}: container format version {metadata.get('format_version')!r}; "
            f"this vidcompress reads version {FORMAT_VERSION}"
        )
    text = metadata.get("manifest", "")
    if metadata.get("manifest_crc32") != str(zlib.crc32(text.encode())):
        raise FormatError(f"{path}: CRC32 mismatch in the manifest")
    try:
        manifest = json.loads(text)
    except ValueError:
        raise FormatError(f"{path}: manifest is not valid JSON") from None
    layers, raw, order, raw_crc32 = _validate_manifest(manifest, path)
    file_bytes = path.stat().st_size
    itemsize = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in DTYPES.items()}
    decoded = sum(entry.numel * itemsize[entry.dtype] for entry in layers)
    if decoded > MAX_EXPANSION * file_bytes + EXPANSION_FLOOR:
        raise FormatError(
            f"{path}: manifest declares {decoded:,} decoded bytes for a {file_bytes:,}-byte file "
            f"(more than {MAX_EXPANSION}x); refusing to allocate"
        )
    expected = {f"layers/{e.name}" for e in layers} | {f"codebooks/{e.name}" for e in layers}
    expected |= {f"raw/{name}" for name in raw}
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        raise FormatError(f"{path}: tensors do not match the manifest (missing {missing[:3]}, unexpected {extra[:3]})")
    return Container(path, layers, raw, order, metadata, file_bytes, raw_crc32)


def decode(path: str | os.PathLike[str], threads: int | None = None) -> StateDict:
    """Decode a container to the state dict it was made from, bit for bit.

    Layers are decoded by `threads` threads (default: one per CPU core).
    """
    return decode_with_metadata(path, threads)[0]


def decode_with_metadata(path: str | os.PathLike[str], threads: int | None = None) -> tuple[StateDict, dict[str, str]]:
    """Decode a container; also return the stage metadata it carries (for `vidcompress decode`)."""
    container = read_container(path)
    decoded: StateDict = {}
    try:
        with safe_open(str(container.path), framework="pt") as handle:
            inputs = []
            for entry in container.layers:
                data = handle.get_tensor(f"layers/{entry.name}")
                codebook = handle.get_tensor(f"codebooks/{entry.name}")
                if data.dtype != torch.uint8 or data.ndim != 1:
                    raise FormatError(f"{entry.name}: layer data is not a 1-D uint8 tensor")
                inputs.append((entry, data.numpy(), codebook.reshape(-1)))
            for name in container.raw:
                decoded[name] = handle.get_tensor(f"raw/{name}")
                if _tensor_crc32(decoded[name]) != container.raw_crc32[name]:
                    raise FormatError(f"{name}: CRC32 mismatch in the raw tensor")
    except (SafetensorError, OSError, RuntimeError) as error:
        raise FormatError(f"{container.path}: cannot read a tensor ({error})") from None
    # Layers decode in threads: zlib's inflate and numpy's large-array work release the GIL.
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    with ThreadPoolExecutor(max_workers=min(threads or DECODE_THREADS, max(len(inputs), 1))) as pool:
        for entry, tensor in zip(container.layers, pool.map(lambda item: decode_layer(*item), inputs), strict=True):
            decoded[entry.name] = tensor
    state = {name: decoded[name] for name in container.order}
    kept = {k: v for k, v in container.metadata.items() if k == METADATA_KEY}
    return state, kept


def load_compressed(path: str | os.PathLike[str], model: nn.Module, strict: bool = True) -> nn.Module:
    """Decode a container into `model` (its original architecture) and return the model."""
    state = decode(path)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise InputError(f"{path}: does not fit the model ({str(error).splitlines()[0]})") from None
    return model


def size_breakdown(container: Container) -> dict[str, int]:
    """Every byte of the file, attributed; the parts add up to the file size exactly."""
    weights = sum(e.weights.payload_bytes for e in container.layers)
    indices = sum(e.indices.payload_bytes for e in container.layers)
    tables = sum(e.weights.table_bytes + e.indices.table_bytes for e in container.layers)
    itemsize = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in DTYPES.items()}
    codebooks = sum(e.codebook_size * itemsize[e.dtype] for e in container.layers)
    with open(container.path, "rb") as stream:
        header_length = struct.unpack("<Q", stream.read(8))[0]
    raw = container.file_bytes - 8 - header_length - weights - indices - tables - codebooks
    manifest = len(json.dumps({"__metadata__": container.metadata}, separators=(",", ":"))) - 1
    return {
        "weight_streams": weights,
        "index_streams": indices,
        "code_tables": tables,
        "codebooks": codebooks,
        "raw_tensors": raw,
        "manifest": manifest,
        "envelope_header": 8 + header_length - manifest,
        "total": container.file_bytes,
    }


def _created() -> str:
    """The UTC time of writing, or SOURCE_DATE_EPOCH's where set: the same weights then give the same bytes
    (the reproducible-builds convention)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        if not epoch.isdigit():
            raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _tensor_crc32(tensor: torch.Tensor) -> int:
    return zlib.crc32(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _validate_manifest(manifest: Any, path: Path) -> tuple[list[LayerEntry], list[str], list[str], dict[str, int]]:
    def fail(message: str) -> FormatError:
        return FormatError(f"{path}: manifest {message}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise fail("is not a vidcompress manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise fail(f"has format version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    order: Any = manifest.get("order")
    layers: Any = manifest.get("layers")
    crcs: Any = manifest.get("raw_crc32")
    if not _is_list_of(order, str) or not isinstance(layers, list) or not isinstance(crcs, list):
        raise fail("lacks its order, layers or raw_crc32 lists")
    entries = [_layer_entry(item, fail) for item in layers]
    encoded = {entry.name for entry in entries}
    if len(set(order)) != len(order) or len(encoded) != len(entries) or not encoded <= set(order):
        raise fail("names of layers and order disagree")
    raw = [name for name in order if name not in encoded]  # the rest is stored as it is, in this order
    if len(crcs) != len(raw) or not all(isinstance(v, int) and not isinstance(v, bool) for v in crcs):
        raise fail(f"has {len(crcs)} raw CRC32 values for {len(raw)} raw tensors")
    return entries, raw, list(order), dict(zip(raw, crcs, strict=True))


def _layer_entry(item: Any, fail: Any) -> LayerEntry:
    if not isinstance(item, dict):
        raise fail("has a layer that is not an object")
    name = item.get("name")
    if not isinstance(name, str):
        raise fail("has a layer without a name")
    try:
        shape = tuple(item["shape"])
        ints: dict[str, Any] = {
            key: item[key] for key in ("bits", "index_bits", "nonzeros", "fillers", "codebook_size", "codebook_crc32")
        }
        streams: dict[str, Any] = {key: StreamInfo(**item[key]) for key in ("weights", "indices")}
        entry = LayerEntry(name=name, shape=shape, dtype=item["dtype"], kind=item["kind"], **ints, **streams)
    except (KeyError, TypeError):
        raise fail(f"entry of {name!r} is incomplete or malformed") from None
    numbers = [*shape, *ints.values()]
    for info in streams.values():
        numbers += [info.count, info.alphabet, info.bit_length, info.payload_bytes, info.table_bytes, info.constant]
        numbers.append(info.crc32)
        if info.coding not in ("constant", "huffman", "packed", "raw"):
            raise fail(f"entry of {name!r} has unknown coding {info.coding!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise fail(f"entry of {name!r} has a negative or non-integer number")
    if entry.dtype not in DTYPES or entry.kind not in ("conv", "fc"):
        raise fail(f"entry of {name!r} has dtype {entry.dtype!r} or kind {entry.kind!r} unknown")
    if not 0 <= entry.bits <= 16 or not 1 <= entry.index_bits <= MAX_INDEX_BITS:
        raise fail(f"entry of {name!r} has bits or index bits out of range")
    if entry.indices.coding == "raw" or (entry.bits == 0) != (entry.weights.coding == "raw"):
        raise fail(f"entry of {name!r}: raw weights go with bits 0, and only weights can be raw")
    low = 0 if entry.bits == 0 else 1
    if not low <= entry.codebook_size <= (1 << entry.bits) or (entry.bits == 0 and entry.codebook_size):
        raise fail(f"entry of {name!r} has a codebook of {entry.codebook_size} for {entry.bits} bits")
    stored = entry.nonzeros + entry.fillers
    if entry.weights.count != stored or entry.indices.count != stored:
        raise fail(f"entry of {name!r} has stream counts that disagree with its entries")
    numel = math.prod(shape)
    if numel > MAX_ELEMENTS or stored > numel or numel > (stored + 1) << entry.index_bits:
        raise fail(f"entry of {name!r} declares {numel} elements for {stored} stored entries")
    limit = np.iinfo(np.int64).max
    if any(info.bit_length > limit for info in streams.values()):
        raise fail(f"entry of {name!r} declares an impossible stream length")
    return entry


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(item, kind) for item in value)
