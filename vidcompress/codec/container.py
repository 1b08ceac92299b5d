"""The container: a safetensors envelope holding the coded layers, codebooks, raw tensors and a manifest.

Tensors: `layers/<name>` (uint8: weight stream, its code lengths, index stream, its code lengths),
`codebooks/<name>` (the codebook in the layer's dtype), `raw/<name>` (tensors stored as they are).
Metadata: `format` = "vidcompress.container", `format_version`, `manifest` (JSON; from version 4
zlib-compressed in Base85), the earlier stages'
record under `vidcompress` (provenance), and the input file's other metadata under `source_metadata`
(JSON; `decode` gives it back). Tied tensors are stored once, the other names listed as aliases.
docs/format.md specifies it to the bit.
"""

from __future__ import annotations

import base64
import json
import math
import os
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.nn.utils import parametrize

from vidcompress._version import __version__
from vidcompress.attach import own_items
from vidcompress.codec.config import EncodeConfig
from vidcompress.codec.layer import DTYPES, decode_layer, encode_layer
from vidcompress.codec.manifest import (
    FORMAT_NAME,
    READABLE_VERSIONS,
    LayerEntry,
    Manifest,
    parse_manifest,
)
from vidcompress.errors import ConfigError, FormatError, InputError, check_module, check_path, check_weights
from vidcompress.io import StateDict, safetensors_header, strip_wrapper_prefixes, write_atomic, write_safetensors
from vidcompress.layers import state_dict_layers
from vidcompress.metadata import METADATA_KEY, read_stages
from vidcompress.progress import progress as progress_lines

SOURCE_METADATA_KEY = "source_metadata"
MAX_INFERRED_BITS = 16
# Decoded bytes may exceed the file's size by at most this factor (plus a floor for tiny files), so
# a hostile manifest cannot make a small file allocate unbounded memory. Deep Compression reaches
# 30-50x; an all-zero layer legitimately more, hence the wide margin.
MAX_EXPANSION = 4096
EXPANSION_FLOOR = 1 << 26
MAX_MANIFEST_BYTES = 1 << 26  # inflated; about 500 bytes a layer
ModuleT = TypeVar("ModuleT", bound=nn.Module)
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
    aliases: dict[str, str] = field(default_factory=dict)  # a tied tensor's other name -> the stored one
    raw_dtypes: dict[str, str] = field(default_factory=dict)  # a raw tensor stored narrowed -> its own dtype


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DataParallel, DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def infer_bits(tensor: torch.Tensor) -> int | str | None:
    """The smallest codebook width that holds a layer's distinct values; "raw" for a pruned layer with
    too many; None (store it as it is) for an unpruned one with too many."""
    patterns = tensor.detach().reshape(-1)
    patterns = patterns.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[patterns.element_size()])
    nonzero = patterns[patterns != 0]
    distinct = int(torch.unique(nonzero).numel())
    if distinct < 1 << MAX_INFERRED_BITS:
        return max(1, math.ceil(math.log2(distinct + 1)))
    return "raw" if nonzero.numel() < patterns.numel() else None


def tied_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Names whose tensor is the very same view as an earlier name's (tied weights): name -> earlier."""
    seen: dict[tuple[Any, ...], str] = {}
    aliases = {}
    for name, tensor in tensors.items():
        if tensor.numel() == 0:
            continue
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride(), tensor.device)
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def encode(
    source: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    config: EncodeConfig | None = None,
    *,
    metadata: Mapping[str, str] | None = None,
    progress: bool = False,
) -> Container:
    """Write a model or state dict as a container; returns what was written.

    Args:
        source: a module (its state dict is used; DataParallel, DDP and torch.compile wrappers are
            looked through) or a state dict of quantized weights. Tied tensors are stored once.
        config: bits, index bits and coding (see `EncodeConfig`; default: bits as recorded or inferred).
        metadata: the input file's metadata; the stage record and the other keys are carried over.
        progress: a progress bar on stderr, one step a layer.

    Raises:
        ConfigError: a selected layer has more distinct values than its bits allow.
    """
    check_weights(source, "source")
    check_path(path, "path")
    config = config or EncodeConfig()
    bits = config.bits
    if isinstance(source, nn.Module):
        source = unwrap_model(source)
        if any(own_items(module, attribute) for module in source.modules() for attribute in _parametrized(module)):
            raise ConfigError(
                "the model still has pruning masks or weight sharing attached: call finalize_(model) first"
            )
    tensors = source.state_dict(keep_vars=False) if isinstance(source, nn.Module) else dict(source)
    aliases = tied_names(tensors)
    stored = {name: tensor for name, tensor in tensors.items() if name not in aliases}
    metadata = dict(metadata or {})
    layers = state_dict_layers(stored)
    stages = read_stages(metadata)
    plan_bits: dict[str, int | str]
    recorded: dict[str, Any] = {}
    if bits is None and "quantize" in stages:
        recorded = stages["quantize"].get("layers", {})
        plan_bits = {layer.name: int(recorded[layer.name]["bits"]) for layer in layers if layer.name in recorded}
    elif bits is None:
        inferred = {layer.name: infer_bits(stored[layer.name]) for layer in layers}
        plan_bits = {name: value for name, value in inferred.items() if value is not None}
    else:
        plan_bits = bits.resolve(layers)
    plan_index = config.index_bits.resolve(layers)
    kinds = {layer.name: layer.kind.value for layer in layers}
    envelope: StateDict = {}
    entries: list[LayerEntry] = []
    raw: list[str] = []
    for name, tensor in progress_lines(stored.items(), "encode", "tensor", progress):
        if name in plan_bits:
            if name not in plan_index:
                raise ConfigError(f"{name}: index bits are off for a layer selected for encoding")
            entry, data, codebook = encode_layer(
                name, tensor, kinds[name], plan_bits[name], plan_index[name], config.huffman, config.row_walk
            )
            coded = len(data) + codebook.numel() * codebook.element_size()
            if codebook.numel() and codebook.numel() * codebook.element_size() > len(data) // 4:
                # A small layer whose codebook and code tables outweigh what they save (a depthwise 3x3
                # of a few hundred weights): its values stored as they are, indexed, may code smaller.
                raw_values = encode_layer(name, tensor, kinds[name], "raw", plan_index[name], config.huffman,
                                          config.row_walk)  # fmt: skip
                if len(raw_values[1]) < coded:
                    entry, data, codebook = raw_values
                    coded = len(data)
            if bits is None and name not in recorded and coded >= tensor.numel() * tensor.element_size():
                raw.append(name)  # bits inferred, and a codebook would not pay: stored as it is
                continue
            entries.append(entry)
            envelope[f"layers/{name}"] = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
            if codebook.numel():
                envelope[f"codebooks/{name}"] = codebook
        else:
            raw.append(name)
    raw_dtypes: dict[str, str] = {}
    weights = {layer.name for layer in layers}  # a compressible weight stored whole keeps its bits
    for name in raw:
        envelope[f"raw/{name}"] = stored[name] if name in weights else _narrowed(name, stored[name], config.raw_dtype)
        if envelope[f"raw/{name}"].dtype != stored[name].dtype:
            raw_dtypes[name] = str(stored[name].dtype).removeprefix("torch.")
    raw_crc32 = {name: _tensor_crc32(envelope[f"raw/{name}"]) for name in raw}
    body = Manifest(list(tensors), entries, raw, raw_crc32, aliases, raw_dtypes)
    version = body.version_needed()
    # No time of writing unless SOURCE_DATE_EPOCH asks for one: the same input gives the same bytes.
    created = _created()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": version,
        "vidcompress_version": __version__,
        **({"created": created} if created else {}),
        **body.to_dict(),
    }
    compact = json.dumps(manifest, separators=(",", ":"))
    file_metadata = {
        "format": FORMAT_NAME,
        "format_version": str(version),
        "manifest": pack_manifest(compact),
        "manifest_crc32": str(zlib.crc32(compact.encode())),
    }
    if METADATA_KEY in metadata:
        file_metadata[METADATA_KEY] = metadata[METADATA_KEY]
    source_metadata = {k: v for k, v in metadata.items() if k not in (METADATA_KEY, "format")}
    if source_metadata:
        file_metadata[SOURCE_METADATA_KEY] = json.dumps(source_metadata, sort_keys=True, separators=(",", ":"))
    header = safetensors_header(envelope, file_metadata)
    write_atomic(path, lambda temporary: write_safetensors(temporary, header, envelope))
    file_bytes = len(header) + sum(t.numel() * t.element_size() for t in envelope.values())
    return Container(Path(path), entries, raw, list(tensors), file_metadata, file_bytes, raw_crc32, aliases, raw_dtypes)


def _narrowed(name: str, tensor: torch.Tensor, dtype_name: str | None) -> torch.Tensor:
    """A raw tensor as stored: in `dtype_name` where that is narrower than its own floating dtype (a
    value beyond the narrow dtype's range is an InputError naming the tensor), else as it is."""
    if dtype_name is None or not tensor.is_floating_point():
        return tensor
    dtype = DTYPES[dtype_name]
    if tensor.element_size() <= torch.empty(0, dtype=dtype).element_size():
        return tensor
    finite = tensor[torch.isfinite(tensor)]
    largest = float(finite.abs().max()) if finite.numel() else 0.0
    if largest > torch.finfo(dtype).max:
        raise InputError(
            f"{name}: holds values up to {largest:.3g}, beyond {dtype_name}'s range; store raw tensors in "
            "bfloat16 or as they are"
        )
    return tensor.to(dtype)


def _parametrized(module: nn.Module) -> list[str]:
    return list(module.parametrizations) if parametrize.is_parametrized(module) else []  # type: ignore[union-attr,arg-type]


def is_container(path: str | os.PathLike[str]) -> bool:
    """True when `path` is a safetensors file whose metadata names the container format."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT_NAME
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False


def read_container(path: str | os.PathLike[str]) -> Container:
    """Read and validate a container's manifest (no layer is decoded)."""
    check_path(path, "path")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a container (.vcz)")
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
    if metadata.get("format_version") not in {str(v) for v in READABLE_VERSIONS}:
        raise FormatError(
            f"{path}: container format version {metadata.get('format_version')!r}; "
            f"this vidcompress reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    text = manifest_text(metadata, path)
    if metadata.get("manifest_crc32") != str(zlib.crc32(text.encode())):
        raise FormatError(f"{path}: CRC32 mismatch in the manifest")
    try:
        manifest = json.loads(text)
    except ValueError:
        raise FormatError(f"{path}: manifest is not valid JSON") from None
    parsed = parse_manifest(manifest, path)
    layers = parsed.layers
    file_bytes = path.stat().st_size
    itemsize = {name: torch.empty(0, dtype=dtype).element_size() for name, dtype in DTYPES.items()}
    decoded = sum(entry.numel * itemsize[entry.dtype] for entry in layers)
    if decoded > MAX_EXPANSION * file_bytes + EXPANSION_FLOOR:
        raise FormatError(
            f"{path}: manifest declares {decoded:,} decoded bytes for a {file_bytes:,}-byte file "
            f"(more than {MAX_EXPANSION}x); refusing to allocate"
        )
    expected = {f"layers/{e.name}" for e in layers} | {f"codebooks/{e.name}" for e in layers if e.codebook_size}
    expected |= {f"raw/{name}" for name in parsed.raw}
    empty = {f"codebooks/{e.name}" for e in layers if not e.codebook_size}  # version 2 stored them
    if keys - empty != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        raise FormatError(f"{path}: tensors do not match the manifest (missing {missing[:3]}, unexpected {extra[:3]})")
    return Container(
        path, layers, parsed.raw, parsed.order, metadata, file_bytes, parsed.raw_crc32, parsed.aliases,
        parsed.raw_dtypes,
    )  # fmt: skip


def decode(path: str | os.PathLike[str], threads: int | None = None) -> StateDict:
    """Decode a container to the state dict it was made from, bit for bit.

    Layers are decoded by `threads` threads (default: one per CPU core).
    """
    return decode_with_metadata(path, threads)[0]


def decode_with_metadata(path: str | os.PathLike[str], threads: int | None = None) -> tuple[StateDict, dict[str, str]]:
    """Decode a container; also return the stage metadata it carries (for `vidcompress decode`)."""
    container = read_container(path)
    decoded: StateDict = {}
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    inputs = list(read_layers(container))
    try:
        with safe_open(str(container.path), framework="pt") as handle:
            for name in container.raw:
                decoded[name] = handle.get_tensor(f"raw/{name}")
                if _tensor_crc32(decoded[name]) != container.raw_crc32[name]:
                    raise FormatError(f"{name}: CRC32 mismatch in the raw tensor")
                if name in container.raw_dtypes:  # stored narrowed: back to its own dtype
                    decoded[name] = decoded[name].to(DTYPES[container.raw_dtypes[name]])
    except (SafetensorError, OSError, RuntimeError) as error:
        raise FormatError(f"{container.path}: cannot read a tensor ({error})") from None
    # Layers decode in threads: zlib's inflate and numpy's large-array work release the GIL.
    with ThreadPoolExecutor(max_workers=min(threads or DECODE_THREADS, max(len(inputs), 1))) as pool:
        for entry, tensor in zip(container.layers, pool.map(lambda item: decode_layer(*item), inputs), strict=True):
            decoded[entry.name] = tensor
    for name, target in container.aliases.items():
        decoded[name] = decoded[target]  # tied: the same tensor under both names
    state = {name: decoded[name] for name in container.order}
    kept = {k: v for k, v in container.metadata.items() if k == METADATA_KEY}
    if SOURCE_METADATA_KEY in container.metadata:
        try:
            source = json.loads(container.metadata[SOURCE_METADATA_KEY])
        except ValueError:
            raise FormatError(f"{container.path}: {SOURCE_METADATA_KEY} is not valid JSON") from None
        if not isinstance(source, dict) or not all(isinstance(v, str) for v in source.values()):
            raise FormatError(f"{container.path}: {SOURCE_METADATA_KEY} is not an object of strings")
        kept = {**source, **kept}
    return state, kept


def read_layers(container: Container) -> Iterator[tuple[LayerEntry, memoryview, torch.Tensor]]:
    """Each coded layer's entry, data bytes and codebook, read from the file one layer at a time."""
    try:
        with safe_open(str(container.path), framework="pt") as handle:
            for entry in container.layers:
                data = handle.get_tensor(f"layers/{entry.name}")
                if data.dtype != torch.uint8 or data.ndim != 1:
                    raise FormatError(f"{entry.name}: layer data is not a 1-D uint8 tensor")
                if entry.codebook_size:
                    codebook = handle.get_tensor(f"codebooks/{entry.name}").reshape(-1)
                else:
                    codebook = torch.empty(0, dtype=DTYPES[entry.dtype])
                yield entry, memoryview(data.numpy()), codebook
    except (SafetensorError, OSError, RuntimeError) as error:
        raise FormatError(f"{container.path}: cannot read a tensor ({error})") from None


def load_compressed(path: str | os.PathLike[str], model: ModuleT, strict: bool = True) -> ModuleT:
    """Decode a container into `model` (its original architecture; wrappers looked through) and return
    the model. A mismatch lists the missing and unexpected keys."""
    check_path(path, "path")
    check_module(model, "model")
    state = strip_wrapper_prefixes(decode(path))
    target = unwrap_model(model)
    expected = set(target.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if strict and (missing or unexpected):
        raise InputError(
            f"{path}: does not fit the model: missing {_listing(missing)}; unexpected {_listing(unexpected)}"
        )
    try:
        target.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise InputError(f"{path}: does not fit the model ({'; '.join(lines[:3]) or error})") from None
    return model


def _listing(names: list[str], limit: int = 5) -> str:
    if not names:
        return "none"
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
    metadata = len(json.dumps({"__metadata__": container.metadata}, separators=(",", ":"))) - 1
    provenance = {k: v for k, v in container.metadata.items() if k in (METADATA_KEY, SOURCE_METADATA_KEY)}
    provenance_bytes = len(json.dumps(provenance, separators=(",", ":"))) - 2 + (1 if provenance else 0)
    return {
        "weight_streams": weights,
        "index_streams": indices,
        "code_tables": tables,
        "codebooks": codebooks,
        "raw_tensors": raw,
        "manifest": metadata - provenance_bytes,
        "provenance": provenance_bytes,
        "envelope_header": 8 + header_length - metadata,
        "total": container.file_bytes,
    }


def pack_manifest(text: str) -> str:
    """The manifest as version 4 stores it: zlib-compressed, then Base85 (whose alphabet has no quote
    or backslash, so the header's JSON holds it unescaped). Plain JSON inside the header's JSON string
    costs a backslash before every quote; compressed, a small model's manifest takes about a third of
    the bytes, which is several percent of a LeNet-sized file."""
    return base64.b85encode(zlib.compress(text.encode(), 9)).decode("ascii")


def manifest_text(metadata: Mapping[str, str], path: str | os.PathLike[str]) -> str:
    """The manifest's JSON text from a container's metadata, whatever its version (2 and 3: plain JSON;
    4: `pack_manifest`'s). Inflating stops at MAX_MANIFEST_BYTES: a forged header cannot make it allocate
    more."""
    stored = metadata.get("manifest", "")
    if metadata.get("format_version") in ("2", "3"):
        return stored
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.b85decode(stored), MAX_MANIFEST_BYTES)
    except (ValueError, zlib.error):
        raise FormatError(f"{path}: manifest is not zlib data in Base85") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise FormatError(f"{path}: manifest is truncated or inflates to more than {MAX_MANIFEST_BYTES:,} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise FormatError(f"{path}: manifest is not UTF-8") from None


def _created() -> str | None:
    """The time SOURCE_DATE_EPOCH gives, in UTC (the reproducible-builds convention), or None where it
    is not set: a container records no time of its own, so the same input gives the same bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return None
    if not epoch.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def _tensor_crc32(tensor: torch.Tensor) -> int:
    return zlib.crc32(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
