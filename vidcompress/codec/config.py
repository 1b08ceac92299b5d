"""`EncodeConfig`: which layers `encode` codes, with how many codebook and index bits, and how."""

from __future__ import annotations

from dataclasses import dataclass

from vidcompress.config import Config
from vidcompress.errors import ConfigError
from vidcompress.rules import ENCODE_BITS, INDEX_BITS, LayerRules, RulesSource

DEFAULT_INDEX_BITS = "conv=8,fc=5,emb=5"  # the paper's widths (Deep Compression's conv 8 / fc 5)
RAW_DTYPES = (None, "float16", "bfloat16")  # what tensors stored as they are may be narrowed to


@dataclass(frozen=True, init=False)
class EncodeConfig(Config):
    """How `encode` writes a container.

    Args:
        bits: which layers to encode and their codebook capacity (2^b values, zero included), or `raw`
            to store a pruned layer's nonzero values as they are (no codebook). None (the default): the
            bits recorded by `vidcompress quantize` in the input's metadata, else for each compressible
            layer the smallest width that holds its distinct values (`raw` for a pruned layer with more
            than 2^16 - 1; stored as it is when unpruned too, or when a codebook would not pay).
        index_bits: relative-index width per layer (`conv=8,fc=5`, or `auto` for the smallest).
        huffman: False stores every stream packed (or constant): the size before Huffman coding.
        row_walk: False walks every sparse layer column by column, as Deep Compression does (a file
            that version-4 readers read); True (the default) also weighs the row walk per layer and
            keeps whichever codes smaller.
        raw_dtype: `float16` or `bfloat16` stores the floating-point tensors that are not layer
            weights (biases, norms, buffers) in that dtype, half their bytes; decoding gives them back
            in their own dtype, rounded. A layer weight stored whole keeps its bits. None (the default)
            stores everything as it is, bit for bit.
    """

    bits: LayerRules | None
    index_bits: LayerRules
    huffman: bool
    row_walk: bool
    raw_dtype: str | None

    def __init__(
        self,
        *,
        bits: RulesSource | None = None,
        index_bits: RulesSource | None = None,
        huffman: bool = True,
        row_walk: bool = True,
        raw_dtype: str | None = None,
    ) -> None:
        for name, value in (("huffman", huffman), ("row_walk", row_walk)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} {value!r}: must be true or false")
        if raw_dtype not in RAW_DTYPES:
            raise ConfigError(f"raw_dtype {raw_dtype!r}: expected float16, bfloat16 or none (as stored)")
        if index_bits is None:
            index_rules = LayerRules.parse(DEFAULT_INDEX_BITS, INDEX_BITS, default=True)
        else:
            index_rules = LayerRules.parse(index_bits, INDEX_BITS)
        self._set(
            bits=None if bits is None else LayerRules.parse(bits, ENCODE_BITS),
            index_bits=index_rules,
            huffman=huffman,
            row_walk=row_walk,
            raw_dtype=raw_dtype,
        )
