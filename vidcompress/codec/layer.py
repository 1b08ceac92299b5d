"""One layer through the codec: weight symbols, relative indices, two coded streams, and back."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from vidcompress.codec.huffman import (
    CodedStream,
    decode_stream,
    encode_stream,
    huffman_bits,
    huffman_lengths,
    packed_width,
    stream_bytes,
    table_bytes,
)
from vidcompress.codec.manifest import Coding, Kind, LayerEntry, Layout
from vidcompress.codec.relative_index import (
    RelativeIndex,
    column_major,
    relative_index_encode,
    relative_index_positions,
    row_major_index,
    walk,
)
from vidcompress.errors import ConfigError, FormatError, InputError
from vidcompress.gather import gather

# Bit patterns are compared as integers so that decoding is exact to the bit (-0.0 included).
_INT_OF = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}
DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in _INT_OF}
_NUMPY_INT = {"float32": np.int32, "float16": np.int16, "bfloat16": np.int16, "float64": np.int64}
AUTO_INDEX_BITS = range(1, 13)
SYMBOL_CHUNK = 1 << 20


def layer_codebook(tensor: torch.Tensor, bits: int, name: str) -> tuple[torch.Tensor, np.ndarray]:
    """The codebook (entry 0 is +0.0, then the distinct nonzero values in increasing order) and the
    symbol of every element, row-major."""
    patterns = bit_patterns(tensor, name)
    distinct = np.unique(patterns[patterns != 0])
    levels = (1 << bits) - 1
    if distinct.size > levels:
        raise ConfigError(
            f"{name}: {distinct.size} distinct nonzero values, more than 2^{bits} - 1 = {levels}; "
            "quantize it first (vidcompress quantize) or give it more bits"
        )
    as_float = torch.from_numpy(distinct.copy()).view(tensor.dtype).double().numpy()
    distinct = distinct[np.argsort(as_float, kind="stable")]
    table = np.concatenate(([0], distinct)).astype(patterns.dtype)
    order = np.argsort(table, kind="stable")
    narrow = np.uint8 if table.size <= 1 << 8 else np.uint16 if table.size <= 1 << 16 else np.int64
    symbols = np.empty(patterns.size, dtype=narrow)  # 1-2 bytes a weight; int64 only a chunk at a time
    for start in range(0, patterns.size, SYMBOL_CHUNK):
        chunk = patterns[start : start + SYMBOL_CHUNK]
        symbols[start : start + chunk.size] = order[np.searchsorted(table, chunk, sorter=order)]
    codebook = torch.from_numpy(table).view(tensor.dtype)
    return codebook, symbols


def coded_bytes(symbols: np.ndarray, alphabet: int) -> int:
    """What `encode_stream` would store, without building the payload (for choosing index bits and
    layouts, and the size model of budgets): exact to the byte."""
    return stream_bytes(symbols, alphabet)


def frequency_bytes(frequencies: np.ndarray, alphabet: int) -> int:
    """What `encode_stream` would store for a stream with these symbol frequencies if it coded one
    symbol a codeword: an upper bound on `coded_bytes` (grouping symbols can only make it smaller),
    cheaper to evaluate (no symbol order needed)."""
    frequencies = np.asarray(frequencies, dtype=np.int64)
    if np.count_nonzero(frequencies) <= 1:
        return 0
    lengths = huffman_lengths(frequencies, alphabet, frequencies=True)
    huffman = (huffman_bits(frequencies, lengths) + 7) // 8 + table_bytes(alphabet)
    return min(huffman, (int(frequencies.sum()) * packed_width(alphabet) + 7) // 8)


def sparse_size(
    flat: np.ndarray, index_bits: int, alphabet: int, huffman: bool = True, value_bytes: int = 0
) -> tuple[int, RelativeIndex]:
    """Bytes of a sparse layout's two streams for a walk of symbols, and its entries: the weight
    symbols (or, for a raw layer, `value_bytes` a stored entry, fillers included) and the index codes."""
    entries = relative_index_encode(flat, index_bits)
    values = entries.entries * value_bytes if value_bytes else stream_bytes(entries.symbols, alphabet, huffman)
    return values + stream_bytes(entries.codes, 1 << index_bits, huffman), entries


def choose_index_bits(flat: np.ndarray, alphabet: int, huffman: bool = True, value_bytes: int = 0) -> int:
    """The index width that gives the smallest coded layer (the narrowest on a tie)."""
    return min(AUTO_INDEX_BITS, key=lambda bits: sparse_size(flat, bits, alphabet, huffman, value_bytes)[0])


def bit_patterns(tensor: torch.Tensor, name: str) -> np.ndarray:
    """A layer's elements as integers of the same width, row-major (so -0.0 and 0.0 differ); a dtype
    the container cannot hold, NaN or inf is an InputError naming the layer."""
    if tensor.dtype not in _INT_OF:
        raise InputError(f"{name}: dtype {tensor.dtype} is not supported (float32, float16, bfloat16, float64)")
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name}: weights contain NaN or inf")
    return tensor.detach().cpu().contiguous().view(_INT_OF[tensor.dtype]).reshape(-1).numpy()


def encode_layer(
    name: str,
    tensor: torch.Tensor,
    kind: str,
    bits: int | str,
    index_bits: int | str,
    huffman: bool = True,
    row_walk: bool = True,
) -> tuple[LayerEntry, bytes, torch.Tensor]:
    """Encode one layer: its manifest entry, its data bytes and its codebook tensor.

    `bits="raw"` stores the nonzero values themselves (pruned, not quantized: no codebook). A layer
    takes whichever layout codes smallest: the relative index walking columns (the paper's) or rows,
    each at its own index width when `index_bits` is `auto` (`row_walk=False`: columns only), or
    (quantized layers) dense, no index.
    """
    raw = bits == "raw"
    if raw:
        codebook, patterns = torch.empty(0, dtype=tensor.dtype), bit_patterns(tensor, name)
        symbols = (patterns != 0).astype(np.uint8)
    else:
        codebook, symbols = layer_codebook(tensor, int(bits), name)
    alphabet = max(codebook.numel(), 2)
    shape = tuple(tensor.shape)
    value_bytes = patterns.itemsize if raw else 0
    options: list[tuple[int, Layout, int, RelativeIndex]] = []  # (bytes, walk, index width, entries)
    for layout in (Layout.SPARSE, Layout.ROWS) if row_walk else (Layout.SPARSE,):
        flat = walk(symbols, shape, by_rows=layout == Layout.ROWS)
        width = int(index_bits) if index_bits != "auto" else choose_index_bits(flat, alphabet, huffman, value_bytes)
        cost, entries = sparse_size(flat, width, alphabet, huffman, value_bytes)
        options.append((cost, layout, width, entries))
    cost, layout, width, entries = min(options, key=lambda option: option[0])  # a tie keeps columns
    by_columns = column_major(symbols, shape)  # the dense layout's walk
    if not raw and symbols.size and stream_bytes(by_columns, alphabet, huffman) < cost:
        layout = Layout.DENSE
    if raw:
        values = np.zeros(entries.entries, dtype=patterns.dtype)
        walked = walk(patterns, shape, by_rows=layout == Layout.ROWS)
        values[entries.symbols != 0] = walked[walked != 0]
        payload = values.astype(values.dtype.newbyteorder("<")).tobytes()
        weights = CodedStream(Coding.RAW, payload, 8 * len(payload), entries.entries, 0)
        indices = encode_stream(entries.codes, 1 << width, huffman)
    elif layout == Layout.DENSE:
        weights = encode_stream(by_columns, codebook.numel(), huffman)
        indices = encode_stream(np.zeros(0, dtype=np.int64), 1, huffman)
    else:
        weights = encode_stream(entries.symbols, codebook.numel(), huffman)
        indices = encode_stream(entries.codes, 1 << width, huffman)
    entry = LayerEntry(
        name=name,
        shape=shape,
        dtype=str(tensor.dtype).removeprefix("torch."),
        kind=Kind(kind),
        bits=0 if raw else int(bits),
        index_bits=width if layout.indexed else 0,
        nonzeros=int(np.count_nonzero(symbols)),
        fillers=entries.fillers if layout.indexed else 0,
        codebook_size=codebook.numel(),
        codebook_crc32=zlib.crc32(codebook.view(torch.uint8).numpy().tobytes()),
        weights=weights.info,
        indices=indices.info,
        layout=layout,
    )
    data = weights.payload + weights.code_lengths + indices.payload + indices.code_lengths
    return entry, data, codebook


def decode_layer(entry: LayerEntry, data: bytes | memoryview, codebook: torch.Tensor) -> torch.Tensor:
    """Rebuild a layer from its entry, data and codebook; any inconsistency is a FormatError."""
    check_codebook(entry, codebook)
    positions, symbols = decode_positions(entry, data)
    patterns = codebook.contiguous().view(_INT_OF[codebook.dtype]).numpy()
    values = np.zeros(entry.numel, dtype=patterns.dtype)  # zero pages: only touched where written
    values[positions] = symbols if entry.weights.coding == Coding.RAW else gather(patterns, symbols)
    return torch.from_numpy(values).view(codebook.dtype).reshape(entry.shape)


def check_codebook(entry: LayerEntry, codebook: torch.Tensor) -> None:
    """The codebook read beside a layer matches its manifest entry (size, dtype, CRC32)."""
    if codebook.numel() != entry.codebook_size or str(codebook.dtype).removeprefix("torch.") != entry.dtype:
        raise FormatError(f"{entry.name}: codebook does not match the manifest")
    if zlib.crc32(codebook.contiguous().view(torch.uint8).numpy().tobytes()) != entry.codebook_crc32:
        raise FormatError(f"{entry.name}: CRC32 mismatch in the codebook")


def decode_positions(entry: LayerEntry, data: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
    """The row-major flat positions of a layer's nonzero weights and their symbols (codebook indices;
    bit patterns for a raw layer), without building the layer: what a sparse layout is made of."""
    name = entry.name
    if len(data) != entry.data_bytes:
        raise FormatError(f"{name}: data holds {len(data)} bytes, the manifest declares {entry.data_bytes}")
    symbols, codes = decode_streams(entry, data)
    if entry.layout == Layout.DENSE:
        if symbols.size != entry.numel or codes.size:
            raise FormatError(f"{name}: a dense layer needs {entry.numel} weight symbols and no index")
        positions = np.arange(entry.numel, dtype=np.int64)
    else:
        if symbols.size != codes.size:
            raise FormatError(f"{name}: {symbols.size} weight symbols but {codes.size} indices")
        positions = relative_index_positions(codes, entry.numel, entry.index_bits, name)
    real = symbols != 0
    stored = int(np.count_nonzero(real))
    if stored != entry.nonzeros or (entry.layout.indexed and symbols.size - stored != entry.fillers):
        raise FormatError(f"{name}: decoded counts differ from the manifest")
    if entry.fillers or entry.layout == Layout.DENSE:
        positions, symbols = positions[real], symbols[real]
    return row_major_index(positions, entry.shape, by_rows=entry.layout == Layout.ROWS), symbols


def decode_streams(entry: LayerEntry, data: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
    """The weight-symbol and index-code streams of a layer, CRC-checked and decoded."""
    name, view = entry.name, memoryview(data)
    offset, streams = 0, []
    for label, info, alphabet in (
        ("weights", entry.weights, entry.codebook_size),
        ("indices", entry.indices, 1 << entry.index_bits),  # dense: index_bits 0, an empty stream
    ):
        payload = view[offset : offset + info.payload_bytes]
        table = view[offset + info.payload_bytes : offset + info.payload_bytes + info.table_bytes]
        offset += info.payload_bytes + info.table_bytes
        if zlib.crc32(table, zlib.crc32(payload)) != info.crc32:
            raise FormatError(f"{name}: CRC32 mismatch in the {label} stream")
        if info.coding == Coding.RAW and label == "weights":
            streams.append(_raw_stream(entry, payload))
            continue
        if info.alphabet != alphabet:
            raise FormatError(f"{name}: {label} alphabet {info.alphabet}, expected {alphabet}")
        streams.append(decode_stream(info, payload, table, f"{name} {label}"))
    return streams[0], streams[1]


def _raw_stream(entry: LayerEntry, payload: bytes | memoryview) -> np.ndarray:
    """The bit patterns of a raw weight stream (values of the stored entries, fillers 0)."""
    if entry.bits != 0 or entry.codebook_size != 0:
        raise FormatError(f"{entry.name}: a raw weight stream needs bits 0 and no codebook")
    dtype = np.dtype(_NUMPY_INT[entry.dtype])
    if len(payload) != entry.weights.count * dtype.itemsize:
        raise FormatError(
            f"{entry.name}: raw weight stream holds {len(payload)} bytes for {entry.weights.count} values"
        )
    return np.frombuffer(payload, dtype=dtype.newbyteorder("<")).astype(dtype)


def entropy_bits(symbols: np.ndarray) -> float:
    """Order-0 empirical entropy of a stream, in bits for the whole stream."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    return float(-(p * np.log2(p)).sum() * symbols.size)
