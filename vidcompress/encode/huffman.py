"""Canonical Huffman coding of symbol streams; bitarray does the bit work in C.

Only code lengths are stored: codes are assigned canonically (shorter codes first, then by symbol
value, as in DEFLATE), so lengths alone rebuild the code. Each stream is stored in the smallest of:
`constant` (one distinct symbol: no bytes), `huffman` (payload plus one length byte per alphabet
symbol), or `packed` (fixed ceil(log2 alphabet)-bit fields). Bits are MSB-first; the last byte is
zero-padded.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
from bitarray import bitarray, decodetree
from bitarray.util import int2ba

from vidcompress.errors import FormatError

MAX_CODE_LENGTH = 63  # no stream shorter than 2^63 symbols can need more


@dataclass(frozen=True)
class CodedStream:
    """A coded stream: its coding, payload bytes, bit length and code lengths (huffman only)."""

    coding: str  # "constant", "huffman", "packed" (or "raw" for a layer's values, see layer.py)
    payload: bytes
    bit_length: int
    count: int
    alphabet: int
    constant: int = 0  # the symbol of a constant stream
    code_lengths: bytes = b""  # one byte per alphabet symbol (0 = unused), huffman only

    @property
    def total_bytes(self) -> int:
        return len(self.payload) + len(self.code_lengths)


def code_lengths(frequencies: np.ndarray) -> np.ndarray:
    """Huffman code lengths for the given symbol frequencies (0 for unused symbols)."""
    used = np.flatnonzero(frequencies)
    lengths = np.zeros(frequencies.size, dtype=np.int64)
    if used.size == 1:
        lengths[used[0]] = 1
        return lengths
    # Heap items: (weight, tie-breaker, symbols of the subtree); ties resolved by symbol order.
    heap = [(int(frequencies[s]), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        w1, t1, s1 = heapq.heappop(heap)
        w2, t2, s2 = heapq.heappop(heap)
        lengths[s1] += 1
        lengths[s2] += 1
        heapq.heappush(heap, (w1 + w2, min(t1, t2), s1 + s2))
    return lengths


def canonical_code(lengths: np.ndarray, name: str = "stream") -> dict[int, bitarray]:
    """The canonical code of each used symbol; rejects lengths that violate Kraft's inequality."""
    used = [(int(length), int(symbol)) for symbol, length in enumerate(lengths) if length > 0]
    if not used:
        raise FormatError(f"{name}: Huffman table has no symbols")
    if max(length for length, _ in used) > MAX_CODE_LENGTH:
        raise FormatError(f"{name}: Huffman code length above {MAX_CODE_LENGTH}")
    if sum(2.0**-length for length, _ in used) > 1.0 + 1e-12:
        raise FormatError(f"{name}: Huffman code lengths are not a prefix code")
    used.sort()
    code, previous, table = 0, used[0][0], {}
    for length, symbol in used:
        code <<= length - previous
        table[symbol] = int2ba(code, length, endian="big")
        code += 1
        previous = length
    return table


def packed_width(alphabet: int) -> int:
    return max(1, math.ceil(math.log2(alphabet))) if alphabet > 1 else 1


def encode_stream(symbols: np.ndarray, alphabet: int, huffman: bool = True) -> CodedStream:
    """Code a stream of ints in [0, alphabet) in the smallest of constant, huffman and packed
    (`huffman=False` leaves Huffman out: the quantized-but-not-entropy-coded size)."""
    count = int(symbols.size)
    frequencies = np.bincount(symbols, minlength=alphabet) if count else np.zeros(alphabet, np.int64)
    used = np.flatnonzero(frequencies)
    if used.size <= 1:
        return CodedStream("constant", b"", 0, count, alphabet, int(used[0]) if used.size else 0)
    lengths = code_lengths(frequencies)
    huffman_bits = int((frequencies * lengths).sum())
    width = packed_width(alphabet)
    if huffman and (huffman_bits + 7) // 8 + alphabet < (count * width + 7) // 8:
        bits = bitarray(endian="big")
        bits.encode(canonical_code(lengths), symbols.tolist())
        return CodedStream("huffman", bits.tobytes(), len(bits), count, alphabet, 0, lengths.astype(np.uint8).tobytes())
    return CodedStream("packed", _pack(symbols, width), count * width, count, alphabet)


def decode_stream(
    coding: str,
    payload: bytes,
    bit_length: int,
    count: int,
    alphabet: int,
    constant: int = 0,
    lengths: bytes = b"",
    name: str = "stream",
) -> np.ndarray:
    """Inverse of `encode_stream`; every inconsistency is a FormatError naming the stream."""
    if not 0 <= bit_length <= len(payload) * 8 or len(payload) != (bit_length + 7) // 8:
        raise FormatError(f"{name}: declares {bit_length} bits in {len(payload)} bytes")
    if coding == "constant":
        if not 0 <= constant < max(alphabet, 1):
            raise FormatError(f"{name}: constant symbol {constant} outside the alphabet of {alphabet}")
        return np.full(count, constant, dtype=np.int64)
    if coding == "packed":
        width = packed_width(alphabet)
        if bit_length != count * width:
            raise FormatError(f"{name}: {count} symbols of {width} bits do not fill {bit_length} bits")
        values = _unpack(payload, width, count)
        if values.size and values.max() >= alphabet:
            raise FormatError(f"{name}: packed symbol outside the alphabet of {alphabet}")
        return values
    if coding == "huffman":
        if len(lengths) != alphabet:
            raise FormatError(f"{name}: Huffman table has {len(lengths)} entries, expected {alphabet}")
        if count > bit_length:  # every code is at least one bit long
            raise FormatError(f"{name}: {count} symbols cannot fit in {bit_length} bits")
        table = canonical_code(np.frombuffer(lengths, dtype=np.uint8), name)
        bits = bitarray(endian="big")
        bits.frombytes(payload)
        del bits[bit_length:]
        try:
            values = np.fromiter(bits.decode(decodetree(table)), dtype=np.int64, count=count)
        except ValueError as error:
            raise FormatError(f"{name}: Huffman payload does not decode ({error})") from None
        return values
    raise FormatError(f"{name}: unknown coding {coding!r}")


def _pack(symbols: np.ndarray, width: int) -> bytes:
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((symbols[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def _unpack(payload: bytes, width: int, count: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: count * width]
    weights = 1 << np.arange(width - 1, -1, -1, dtype=np.int64)
    return bits.reshape(count, width).astype(np.int64) @ weights
