"""Canonical, length-limited Huffman coding of symbol streams.

Only code lengths are stored: codes are assigned canonically (shorter codes first, then by symbol
value, as in DEFLATE), so lengths alone rebuild the code. Each stream is stored in the smallest of:
`constant` (one distinct symbol: no bytes), `huffman` (payload plus a table of code lengths), or
`packed` (fixed ceil(log2 alphabet)-bit fields).

A Huffman code spends at least one bit a symbol, which is far above the entropy of a skewed stream of
few symbols (2-4-bit weights, narrow index widths). So a Huffman stream may code `group` consecutive
symbols as one symbol of the alphabet `alphabet ** group` (first symbol most significant, the last group
padded with symbol 0), whenever that alphabet still has at most 256 symbols; the encoder takes the group
size that gives the fewest bytes, table included. The redundancy per symbol falls from under one bit
to under 1 / group bits, and grouped streams still decode through zlib.

Every Huffman code has one extra symbol, the end symbol (value = alphabet), that is never written:
it makes the code complete and, for alphabets of up to 256 symbols with lengths of at most 15 bits,
makes the payload exactly the body of a DEFLATE block with the end symbol as end-of-block. Decoding
then prepends the DEFLATE header that the code lengths describe and lets zlib's inflate (C, and free
of the GIL) do the bit work at a few nanoseconds a symbol. bitarray does the encoding, and the
decoding of larger alphabets.

Bit order, as in DEFLATE: a stream is a sequence of bits packed into bytes least significant bit
first; each code (and each packed field) is written into that sequence most significant bit first;
the last byte is zero-padded.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from bitarray import bitarray, decodetree
from bitarray.util import int2ba

from vidcompress.codec.manifest import Coding, StreamInfo
from vidcompress.errors import FormatError

DEFLATE_MAX_ALPHABET = 256  # literals 0..255; the end symbol becomes DEFLATE's end-of-block (256)
NIBBLE_LIMIT = 15  # code lengths stored in 4 bits
MAX_GROUP = 8  # symbols per codeword: 2 ** 8 = 256, the largest grouped alphabet
WIDE_LIMIT = 24  # for alphabets too large for 15-bit codes (bits 15 and 16)


@dataclass(frozen=True)
class CodedStream:
    """A coded stream: its coding, payload bytes, bit length and code lengths (huffman only)."""

    coding: Coding  # constant, huffman, packed (or raw for a layer's values, see layer.py)
    payload: bytes
    bit_length: int
    count: int
    alphabet: int
    constant: int = 0  # the symbol of a constant stream
    code_lengths: bytes = b""  # the stored table (see `table_bytes`), huffman only
    group: int = 1  # symbols per codeword (huffman only)

    @property
    def total_bytes(self) -> int:
        return len(self.payload) + len(self.code_lengths)

    @property
    def info(self) -> StreamInfo:
        """Its manifest record."""
        return StreamInfo(
            coding=self.coding,
            count=self.count,
            alphabet=self.alphabet,
            bit_length=self.bit_length,
            payload_bytes=len(self.payload),
            table_bytes=len(self.code_lengths),
            constant=self.constant,
            crc32=zlib.crc32(self.payload + self.code_lengths),
            group=self.group,
        )


def length_limit(alphabet: int) -> int:
    """The longest code allowed for an alphabet (the end symbol counted)."""
    return NIBBLE_LIMIT if alphabet + 1 <= 1 << NIBBLE_LIMIT else WIDE_LIMIT


def table_bytes(alphabet: int) -> int:
    """Bytes of the stored code-length table: `alphabet + 1` lengths, 4 bits each when they fit."""
    entries = alphabet + 1
    return (entries + 1) // 2 if length_limit(alphabet) == NIBBLE_LIMIT else entries


def code_lengths(frequencies: np.ndarray, limit: int) -> np.ndarray:
    """Optimal code lengths of at most `limit` bits (package-merge); 0 for unused symbols.

    Larmore and Hirschberg's package-merge: the cheapest 2n - 2 items of the list built by merging
    the symbols with packages of pairs, `limit - 1` times, give each symbol as many bits as the items
    it appears in. A merged list's first m items hold its first m - p symbols and first p packages,
    so only the package flags of each list are kept and the counts are read back from them.
    """
    used = np.flatnonzero(frequencies)
    lengths = np.zeros(frequencies.size, dtype=np.int64)
    if used.size <= 1:
        lengths[used] = 1
        return lengths
    if used.size > 1 << limit:
        raise ValueError(f"{used.size} symbols do not fit in codes of at most {limit} bits")
    order = used[np.argsort(frequencies[used], kind="stable")]
    leaves = frequencies[order].astype(np.int64)
    current, flags_per_level = leaves, []
    for _ in range(limit - 1):
        paired = current.size // 2 * 2
        packages = current[0:paired:2] + current[1:paired:2]
        merged = np.concatenate((leaves, packages))
        rank = np.argsort(merged, kind="stable")  # symbols before packages of equal weight
        current = merged[rank]
        flags_per_level.append(rank >= leaves.size)
    depth = np.zeros(leaves.size, dtype=np.int64)
    take = 2 * leaves.size - 2
    for flags in reversed(flags_per_level):
        packages_taken = int(np.count_nonzero(flags[:take]))
        depth[: take - packages_taken] += 1
        take = 2 * packages_taken
    depth[:take] += 1
    lengths[order] = depth
    return lengths


def huffman_lengths(symbols_or_frequencies: np.ndarray, alphabet: int, *, frequencies: bool = False) -> np.ndarray:
    """Code lengths of a stream's Huffman code: `alphabet + 1` entries, the end symbol last."""
    counts = symbols_or_frequencies if frequencies else np.bincount(symbols_or_frequencies, minlength=alphabet)
    with_end = np.append(counts.astype(np.int64), 1)
    return code_lengths(with_end, length_limit(alphabet))


def check_lengths(lengths: np.ndarray, limit: int, name: str = "stream") -> None:
    """Reject a table that is not a complete prefix code of at least two symbols within the limit."""
    used = lengths[lengths > 0]
    if used.size < 2:
        raise FormatError(f"{name}: Huffman table has fewer than two symbols")
    if int(used.max()) > limit:
        raise FormatError(f"{name}: Huffman code length above {limit}")
    if int(np.sum(np.left_shift(1, limit - used))) != 1 << limit:
        raise FormatError(f"{name}: Huffman code lengths do not form a complete prefix code")


def canonical_code(lengths: np.ndarray, name: str = "stream", limit: int = WIDE_LIMIT) -> dict[int, bitarray]:
    """The canonical code of each used symbol; rejects tables that are not a complete prefix code."""
    check_lengths(np.asarray(lengths, dtype=np.int64), limit, name)
    used = sorted((int(length), int(symbol)) for symbol, length in enumerate(lengths) if length > 0)
    code, previous, table = 0, used[0][0], {}
    for length, symbol in used:
        code <<= length - previous
        table[symbol] = int2ba(code, length, endian="big")
        code += 1
        previous = length
    return table


def pack_table(lengths: np.ndarray, alphabet: int) -> bytes:
    """The stored code-length table: two lengths a byte (first in the high nibble), or one a byte."""
    values = lengths.astype(np.uint8)
    if length_limit(alphabet) != NIBBLE_LIMIT:
        return values.tobytes()
    if values.size % 2:
        values = np.append(values, np.uint8(0))
    return ((values[0::2] << 4) | values[1::2]).astype(np.uint8).tobytes()


def unpack_table(table: bytes | memoryview, alphabet: int, name: str = "stream") -> np.ndarray:
    """Inverse of `pack_table`: `alphabet + 1` code lengths."""
    if len(table) != table_bytes(alphabet):
        raise FormatError(f"{name}: Huffman table has {len(table)} bytes, expected {table_bytes(alphabet)}")
    raw = np.frombuffer(table, dtype=np.uint8)
    if length_limit(alphabet) != NIBBLE_LIMIT:
        return raw.astype(np.int64)
    nibbles = np.empty(raw.size * 2, dtype=np.int64)
    nibbles[0::2], nibbles[1::2] = raw >> 4, raw & 15
    if nibbles.size > alphabet + 1 and nibbles[-1] != 0:
        raise FormatError(f"{name}: Huffman table padding is not zero")
    return nibbles[: alphabet + 1]


def packed_width(alphabet: int) -> int:
    return max(1, math.ceil(math.log2(alphabet))) if alphabet > 1 else 1


def symbol_dtype(alphabet: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every symbol of an alphabet."""
    return np.dtype(np.uint8 if alphabet <= 1 << 8 else np.uint16 if alphabet <= 1 << 16 else np.int64)


def huffman_bits(frequencies: np.ndarray, lengths: np.ndarray) -> int:
    return int((frequencies * lengths[: frequencies.size]).sum())


def huffman_payload(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """The coded bytes of a stream under the canonical code of `lengths`, and their bit length."""
    coded = bitarray(endian="little")
    code = canonical_code(lengths)
    for start in range(0, symbols.size, ENCODE_CHUNK):  # Python ints a chunk at a time, not the whole stream
        coded.encode(code, symbols[start : start + ENCODE_CHUNK].tolist())
    return coded.tobytes(), len(coded)


ENCODE_CHUNK = 1 << 20


def groups_for(alphabet: int) -> range:
    """The group sizes a stream of this alphabet may use: 1, and those whose grouped alphabet has at
    most 256 symbols (none for an alphabet of fewer than two, which is never Huffman-coded)."""
    largest = 1
    while alphabet >= 2 and largest < MAX_GROUP and alphabet ** (largest + 1) <= DEFLATE_MAX_ALPHABET:
        largest += 1
    return range(1, largest + 1)


def group_symbols(symbols: np.ndarray, alphabet: int, group: int) -> np.ndarray:
    """Each run of `group` symbols as one symbol of `alphabet ** group`, the first most significant;
    the last run padded with symbol 0."""
    if group == 1:
        return symbols
    padded = np.zeros(-(-symbols.size // group) * group, dtype=np.int64)
    padded[: symbols.size] = symbols
    runs = padded.reshape(-1, group)
    grouped = runs[:, 0].copy()
    for column in range(1, group):
        grouped = grouped * alphabet + runs[:, column]
    return grouped


def ungroup_symbols(grouped: np.ndarray, alphabet: int, group: int, count: int, name: str = "stream") -> np.ndarray:
    """Inverse of `group_symbols`: `count` symbols; padding that is not symbol 0 is a FormatError."""
    if group == 1:
        return grouped
    digits = np.empty((grouped.size, group), dtype=np.int64)
    rest = grouped.astype(np.int64)
    for column in range(group - 1, -1, -1):
        rest, digits[:, column] = np.divmod(rest, alphabet)
    flat = digits.reshape(-1)
    if np.any(flat[count:]):
        raise FormatError(f"{name}: the padding of its last group is not symbol 0")
    return flat[:count]


def _huffman_plan(symbols: np.ndarray, alphabet: int, frequencies: np.ndarray) -> tuple[int, int, np.ndarray]:
    """The Huffman coding with the fewest bytes over the allowed group sizes: (bytes, group, lengths).
    `frequencies`: the symbols' own counts (those of group size 1)."""
    best: tuple[int, int, np.ndarray] | None = None
    for group in groups_for(alphabet):
        size = alphabet**group
        counts = frequencies if group == 1 else np.bincount(group_symbols(symbols, alphabet, group), minlength=size)
        lengths = huffman_lengths(counts, size, frequencies=True)
        total = (huffman_bits(counts, lengths) + 7) // 8 + table_bytes(size)
        if best is None or total < best[0]:
            best = (total, group, lengths)
    assert best is not None
    return best


def stream_bytes(symbols: np.ndarray, alphabet: int, huffman: bool = True) -> int:
    """What `encode_stream` stores (payload and tables) for these symbols, without building the
    payload: the size model of index widths and budgets, exact to the byte."""
    count = int(symbols.size)
    frequencies = np.bincount(symbols, minlength=alphabet) if count else np.zeros(alphabet, np.int64)
    if np.count_nonzero(frequencies) <= 1:  # constant
        return 0
    packed = (count * packed_width(alphabet) + 7) // 8
    return min(packed, _huffman_plan(symbols, alphabet, frequencies)[0]) if huffman else packed


def encode_stream(symbols: np.ndarray, alphabet: int, huffman: bool = True) -> CodedStream:
    """Code a stream of ints in [0, alphabet) in the smallest of constant, huffman (with the best group
    size) and packed (`huffman=False` leaves Huffman out: the quantized-but-not-entropy-coded size)."""
    count = int(symbols.size)
    frequencies = np.bincount(symbols, minlength=alphabet) if count else np.zeros(alphabet, np.int64)
    used = np.flatnonzero(frequencies)
    if used.size <= 1:
        return CodedStream(Coding.CONSTANT, b"", 0, count, alphabet, int(used[0]) if used.size else 0)
    width = packed_width(alphabet)
    if huffman:
        total, group, lengths = _huffman_plan(symbols, alphabet, frequencies)
        if total < (count * width + 7) // 8:
            size = alphabet**group
            payload, bit_length = huffman_payload(group_symbols(symbols, alphabet, group), lengths)
            table = pack_table(lengths, size)
            return CodedStream(Coding.HUFFMAN, payload, bit_length, count, alphabet, 0, table, group)
    return CodedStream(Coding.PACKED, _pack(symbols, width), count * width, count, alphabet)


def decode_stream(
    info: StreamInfo, payload: bytes | memoryview, table: bytes | memoryview = b"", name: str = "stream"
) -> np.ndarray:
    """Inverse of `encode_stream`, as an array of `symbol_dtype(alphabet)`; every inconsistency is a
    FormatError naming the stream. `table`: the stored code lengths of a Huffman stream."""
    coding, bit_length, count, alphabet = info.coding, info.bit_length, info.count, info.alphabet
    if len(payload) != info.payload_bytes or len(table) != info.table_bytes:
        raise FormatError(
            f"{name}: {len(payload)} + {len(table)} bytes where the manifest declares "
            f"{info.payload_bytes} + {info.table_bytes}"
        )
    if not 0 <= bit_length <= len(payload) * 8 or len(payload) != (bit_length + 7) // 8:
        raise FormatError(f"{name}: declares {bit_length} bits in {len(payload)} bytes")
    dtype = symbol_dtype(alphabet)
    if coding == Coding.CONSTANT:
        if not 0 <= info.constant < max(alphabet, 1):
            raise FormatError(f"{name}: constant symbol {info.constant} outside the alphabet of {alphabet}")
        return np.full(count, info.constant, dtype=dtype)
    if coding == Coding.PACKED:
        width = packed_width(alphabet)
        if bit_length != count * width:
            raise FormatError(f"{name}: {count} symbols of {width} bits do not fill {bit_length} bits")
        values = _unpack(payload, width, count)
        if values.size and values.max() >= alphabet:
            raise FormatError(f"{name}: packed symbol outside the alphabet of {alphabet}")
        return values.astype(dtype)
    if coding == Coding.HUFFMAN:
        group = info.group
        if group not in groups_for(alphabet):
            raise FormatError(f"{name}: group of {group} symbols for an alphabet of {alphabet}")
        size, codes = alphabet**group, -(-count // group)  # the grouped alphabet and codeword count
        if codes > bit_length:  # every code is at least one bit long
            raise FormatError(f"{name}: {count} symbols cannot fit in {bit_length} bits")
        lengths = unpack_table(table, size, name)
        check_lengths(lengths, length_limit(size), name)
        if lengths[size] == 0:
            raise FormatError(f"{name}: Huffman table has no end symbol")
        if size <= DEFLATE_MAX_ALPHABET:
            values = _inflate(payload, codes, lengths, name)
        else:
            code = canonical_code(lengths, name, length_limit(size))
            values = _bitarray_decode(payload, bit_length, codes, code, name)
        if values.size and int(values.max()) >= size:
            raise FormatError(f"{name}: Huffman payload contains the end symbol")
        used_bits = huffman_bits(np.bincount(values, minlength=size), lengths)
        if used_bits != bit_length:
            raise FormatError(f"{name}: {count} symbols take {used_bits} bits, the stream declares {bit_length}")
        return ungroup_symbols(values, alphabet, group, count, name).astype(dtype, copy=False)
    raise FormatError(f"{name}: unknown coding {coding!r}")


def _inflate(payload: bytes | memoryview, count: int, lengths: np.ndarray, name: str) -> np.ndarray:
    """Decode with zlib: the payload is the body of a DEFLATE block whose header the lengths give."""
    literal = np.zeros(DEFLATE_MAX_ALPHABET + 1, dtype=np.int64)
    literal[: lengths.size - 1] = lengths[:-1]
    literal[DEFLATE_MAX_ALPHABET] = lengths[-1]  # the end symbol is DEFLATE's end-of-block
    inflater = zlib.decompressobj(wbits=-15)
    try:
        inflater.decompress(_deflate_header(literal.astype(np.uint8).tobytes()))
        out = inflater.decompress(payload, count) if count else b""
    except zlib.error as error:
        raise FormatError(f"{name}: Huffman payload does not decode ({error})") from None
    if len(out) != count:
        raise FormatError(f"{name}: Huffman payload ends after {len(out)} of {count} symbols")
    return np.frombuffer(out, dtype=np.uint8)


@lru_cache(maxsize=256)
def _deflate_header(literal_lengths: bytes) -> bytes:
    """A byte-aligned DEFLATE prefix ending where a dynamic block's Huffman-coded data begins.

    Three empty fixed-Huffman blocks (10 bits each) pad the dynamic block's 1,106-bit header to a
    whole number of bytes, so the payload follows without any bit shifting. The header: BFINAL 1,
    BTYPE 2, HLIT 0 (257 literal/length codes), HDIST 0 (one distance code), HCLEN 15 (all 19
    code-length codes); the code-length code gives symbols 0-15 four bits each (so each length is
    written as itself), then the 257 literal lengths and a length of 1 for the one distance code.
    """
    bits = bitarray(endian="little")

    def field(value: int, width: int) -> None:  # DEFLATE's header fields are LSB first
        bits.extend(int2ba(value, width, endian="little"))

    for _ in range(3):  # not final, fixed Huffman, end-of-block (code 0000000)
        for value, width in ((0, 1), (1, 2), (0, 7)):
            field(value, width)
    for value, width in ((1, 1), (2, 2), (0, 5), (0, 5), (15, 4)):
        field(value, width)
    for symbol in (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15):
        field(0 if symbol >= 16 else 4, 3)
    for length in [*literal_lengths, 1]:
        bits.extend(int2ba(length, 4, endian="big"))  # a Huffman code: most significant bit first
    assert len(bits) % 8 == 0
    return bits.tobytes()


def _bitarray_decode(
    payload: bytes | memoryview, bit_length: int, count: int, code: dict[int, bitarray], name: str
) -> np.ndarray:
    bits = bitarray(endian="little")
    bits.frombytes(bytes(payload))
    del bits[bit_length:]
    try:
        return np.fromiter(bits.decode(decodetree(code)), dtype=np.int64, count=count)
    except ValueError as error:
        raise FormatError(f"{name}: Huffman payload does not decode ({error})") from None


def _pack(symbols: np.ndarray, width: int) -> bytes:
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((symbols.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def _unpack(payload: bytes | memoryview, width: int, count: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), bitorder="little")[: count * width]
    weights = 1 << np.arange(width - 1, -1, -1, dtype=np.int64)
    return bits.reshape(count, width).astype(np.int64) @ weights
