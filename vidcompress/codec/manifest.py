"""The container's manifest: its schema (one entry per coded layer, one record per stream) and its
validation. Writing and reading the file is `container.py`; coding the streams is `huffman.py`."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidcompress.errors import FormatError
from vidcompress.io import CONTAINER_FORMAT
from vidcompress.layers import LayerKind as Kind  # a coded layer keeps the kind it was compressed as

FORMAT_NAME = CONTAINER_FORMAT  # defined in io, which reads containers without importing codec
FORMAT_VERSION = 6
# version 3 added dense layers, aliases and source metadata; version 4 stores the manifest compressed;
# version 5 added the row walk (`Layout.ROWS`); version 6 raw tensors stored narrowed (`raw_dtypes`)
READABLE_VERSIONS = (2, 3, 4, 5, 6)
MAX_BITS = 16
MAX_INDEX_BITS = 16
MAX_ELEMENTS = 1 << 34  # per layer; a guard against a manifest declaring an absurd shape
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


class Coding(enum.StrEnum):
    """How a stream's symbols are stored."""

    CONSTANT = "constant"  # one distinct symbol: no bytes
    HUFFMAN = "huffman"  # canonical Huffman payload plus its code-length table
    PACKED = "packed"  # fixed ceil(log2 alphabet)-bit fields
    RAW = "raw"  # a layer's values themselves (pruned, not quantized): weight streams only


class Layout(enum.StrEnum):
    """How a layer's positions are stored."""

    SPARSE = "sparse"  # nonzero entries (plus fillers) with a relative index, walked column by column
    ROWS = "rows"  # the same, walked row by row (version 5)
    DENSE = "dense"  # one weight symbol per element, zeros as symbol 0, no index stream

    @property
    def indexed(self) -> bool:
        """Whether the layout stores a relative index (and fillers)."""
        return self != Layout.DENSE


@dataclass(frozen=True)
class StreamInfo:
    """One coded stream: its coding, how many symbols of which alphabet, its bit length, the bytes of
    its payload and code table, the symbol of a constant stream, the CRC32 of payload then table, and
    (Huffman, version 4) how many symbols each codeword codes."""

    coding: Coding
    count: int
    alphabet: int
    bit_length: int
    payload_bytes: int
    table_bytes: int
    constant: int
    crc32: int
    group: int = 1


@dataclass(frozen=True)
class LayerEntry:
    """The manifest entry of a coded layer.

    `layout`: sparse stores the nonzero entries (plus fillers) with a relative index of `index_bits` per
    entry, walking `W.reshape(out, -1)` column by column (CSC, Deep Compression's walk); rows walks it
    row by row, which codes smaller where whole input units are pruned away or an output unit's weights
    cluster (the encoder takes the smaller); dense stores one weight symbol per element and no index
    stream (`index_bits` 0): for a layer with few zeros that costs about the entropy of its zero/nonzero
    pattern, where an index would cost at least a bit a weight. `bits` 0 with a raw weight stream:
    values stored without a codebook.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: Kind
    bits: int
    index_bits: int
    nonzeros: int
    fillers: int
    codebook_size: int
    codebook_crc32: int
    weights: StreamInfo
    indices: StreamInfo
    layout: Layout = Layout.SPARSE

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def data_bytes(self) -> int:
        return sum(s.payload_bytes + s.table_bytes for s in (self.weights, self.indices))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return data


@dataclass(frozen=True)
class Manifest:
    """What a container holds: every tensor name in order, the coded layers, the tensors stored as they
    are (with their CRC32), the names of tied tensors stored once (alias -> stored name), and the
    original dtype of each raw tensor stored narrowed (name -> dtype)."""

    order: list[str]
    layers: list[LayerEntry]
    raw: list[str]
    raw_crc32: dict[str, int]
    aliases: dict[str, str]
    raw_dtypes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body, without the header fields (`format`, versions, time) that `encode` adds."""
        body: dict[str, Any] = {
            "order": self.order,
            "aliases": [[name, target] for name, target in self.aliases.items()],
            "raw_crc32": [self.raw_crc32[name] for name in self.raw],
            "layers": [entry.to_dict() for entry in self.layers],
        }
        if self.raw_dtypes:  # beside raw_crc32: a raw tensor's own dtype, or null where stored as it is
            body["raw_dtypes"] = [self.raw_dtypes.get(name) for name in self.raw]
        return body

    def version_needed(self) -> int:
        """The oldest format version that holds this manifest, so that older readers read what they
        can: 6 with narrowed raw tensors, 5 where a layer walks rows, else 4."""
        if self.raw_dtypes:
            return 6
        return 5 if any(entry.layout == Layout.ROWS for entry in self.layers) else 4


def parse_manifest(manifest: Any, path: Path) -> Manifest:
    """Validate a decoded manifest; anything malformed or inconsistent is a FormatError naming `path`."""

    def fail(message: str) -> FormatError:
        return FormatError(f"{path}: manifest {message}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise fail("is not a vidcompress manifest")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise fail(f"has format version {version!r}, expected one of {READABLE_VERSIONS}")
    order: Any = manifest.get("order")
    layers: Any = manifest.get("layers")
    crcs: Any = manifest.get("raw_crc32")
    if not _is_list_of(order, str) or not isinstance(layers, list) or not isinstance(crcs, list):
        raise fail("lacks its order, layers or raw_crc32 lists")
    pairs: Any = manifest.get("aliases", [])
    if not isinstance(pairs, list) or not all(_is_list_of(p, str) and len(p) == 2 for p in pairs):
        raise fail("has malformed aliases")
    aliases = dict(pairs)
    entries = [_layer_entry(item, fail, version) for item in layers]
    encoded = {entry.name for entry in entries}
    if len(set(order)) != len(order) or len(encoded) != len(entries) or not encoded <= set(order):
        raise fail("names of layers and order disagree")
    if len(aliases) != len(pairs) or not set(aliases) <= set(order) - encoded:
        raise fail("has aliases that are not plain names of its order")
    if any(target not in order or target in aliases for target in aliases.values()):
        raise fail("has an alias of a name it does not store")
    raw = [name for name in order if name not in encoded and name not in aliases]  # stored as they are
    if len(crcs) != len(raw) or not all(isinstance(v, int) and not isinstance(v, bool) for v in crcs):
        raise fail(f"has {len(crcs)} raw CRC32 values for {len(raw)} raw tensors")
    narrowed: Any = manifest.get("raw_dtypes")
    if narrowed is not None and version < 6:
        raise fail(f"has raw_dtypes, which format version {version} does not have")
    if narrowed is not None and (not isinstance(narrowed, list) or len(narrowed) != len(raw)):
        raise fail(f"has raw_dtypes that are not a list of {len(raw)}, one a raw tensor")
    raw_dtypes = {name: dtype for name, dtype in zip(raw, narrowed or [], strict=False) if dtype is not None}
    if not set(raw_dtypes.values()) <= set(DTYPE_NAMES):
        raise fail(f"has a raw dtype outside {', '.join(DTYPE_NAMES)}")
    return Manifest(list(order), entries, raw, dict(zip(raw, crcs, strict=True)), aliases, raw_dtypes)


def _enum(kind: type[enum.StrEnum], value: Any, what: str, name: str, fail: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise fail(f"entry of {name!r} has unknown {what} {value!r}") from None


def _stream(item: Any, name: str, fail: Any) -> StreamInfo:
    if not isinstance(item, dict):
        raise TypeError
    fields = dict(item)
    fields["coding"] = _enum(Coding, fields.get("coding"), "coding", name, fail)
    return StreamInfo(**fields)


def _layer_entry(item: Any, fail: Any, version: int) -> LayerEntry:
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
        streams: dict[str, Any] = {key: _stream(item[key], name, fail) for key in ("weights", "indices")}
        kind = _enum(Kind, item["kind"], "kind", name, fail)
        layout = _enum(Layout, item["layout"], "layout", name, fail) if version >= 3 else Layout.SPARSE
        if layout == Layout.ROWS and version < 5:
            raise fail(f"entry of {name!r} has layout {layout.value!r}, which format version {version} does not have")
        entry = LayerEntry(name=name, shape=shape, dtype=item["dtype"], kind=kind, **ints, **streams, layout=layout)
    except (KeyError, TypeError):
        raise fail(f"entry of {name!r} is incomplete or malformed") from None
    numbers = [*shape, *ints.values()]
    for info in streams.values():
        numbers += [info.count, info.alphabet, info.bit_length, info.payload_bytes, info.table_bytes, info.constant]
        numbers += [info.crc32, info.group]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise fail(f"entry of {name!r} has a negative or non-integer number")
    if entry.dtype not in DTYPE_NAMES:
        raise fail(f"entry of {name!r} has unknown dtype {entry.dtype!r}")
    dense = entry.layout == Layout.DENSE
    index_ok = entry.index_bits == 0 if dense else 1 <= entry.index_bits <= MAX_INDEX_BITS
    if not 0 <= entry.bits <= MAX_BITS or not index_ok:
        raise fail(f"entry of {name!r} has bits or index bits out of range")
    for info in streams.values():  # checked before anything raises the alphabet to the group's power
        if info.group != 1 and (info.coding != Coding.HUFFMAN or not 2 <= info.group <= 8 or info.alphabet < 2):
            raise fail(f"entry of {name!r} has a group of {info.group} symbols for a {info.coding} stream")
        if info.group != 1 and info.alphabet**info.group > 256:
            raise fail(f"entry of {name!r} groups {info.group} symbols of an alphabet of {info.alphabet}")
    if entry.indices.coding == Coding.RAW or (entry.bits == 0) != (entry.weights.coding == Coding.RAW):
        raise fail(f"entry of {name!r}: raw weights go with bits 0, and only weights can be raw")
    low = 0 if entry.bits == 0 else 1
    if not low <= entry.codebook_size <= (1 << entry.bits) or (entry.bits == 0 and entry.codebook_size):
        raise fail(f"entry of {name!r} has a codebook of {entry.codebook_size} for {entry.bits} bits")
    numel = math.prod(shape)
    if numel > MAX_ELEMENTS:
        raise fail(f"entry of {name!r} declares {numel} elements")
    if dense:
        if entry.bits == 0 or entry.fillers or entry.weights.count != numel or entry.indices.count:
            raise fail(f"entry of {name!r}: a dense layer has one symbol per element, no fillers and no index")
        if entry.nonzeros > numel:
            raise fail(f"entry of {name!r} declares {entry.nonzeros} nonzeros in {numel} elements")
    else:
        stored = entry.nonzeros + entry.fillers
        if entry.weights.count != stored or entry.indices.count != stored:
            raise fail(f"entry of {name!r} has stream counts that disagree with its entries")
        if stored > numel or numel > (stored + 1) << entry.index_bits:
            raise fail(f"entry of {name!r} declares {numel} elements for {stored} stored entries")
    limit = np.iinfo(np.int64).max
    if any(info.bit_length > limit for info in streams.values()):
        raise fail(f"entry of {name!r} declares an impossible stream length")
    return entry


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(item, kind) for item in value)
