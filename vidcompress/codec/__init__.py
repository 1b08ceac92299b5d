"""Relative-index CSC with filler zeros, canonical Huffman coding, and the container file."""

from vidcompress.codec.config import DEFAULT_INDEX_BITS, EncodeConfig
from vidcompress.codec.container import (
    FORMAT_NAME,
    Container,
    decode,
    decode_with_metadata,
    encode,
    is_container,
    load_compressed,
    read_container,
    size_breakdown,
)
from vidcompress.codec.huffman import CodedStream, decode_stream, encode_stream
from vidcompress.codec.layer import decode_layer, encode_layer, entropy_bits
from vidcompress.codec.manifest import (
    FORMAT_VERSION,
    Coding,
    Kind,
    LayerEntry,
    Layout,
    Manifest,
    StreamInfo,
    parse_manifest,
)
from vidcompress.codec.relative_index import RelativeIndex, relative_index_decode, relative_index_encode
from vidcompress.codec.report import ContainerReport, inspect_container

__all__ = [
    "DEFAULT_INDEX_BITS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CodedStream",
    "Coding",
    "Container",
    "ContainerReport",
    "EncodeConfig",
    "Kind",
    "LayerEntry",
    "Layout",
    "Manifest",
    "RelativeIndex",
    "StreamInfo",
    "decode",
    "decode_layer",
    "decode_stream",
    "decode_with_metadata",
    "encode",
    "encode_layer",
    "encode_stream",
    "entropy_bits",
    "inspect_container",
    "is_container",
    "load_compressed",
    "parse_manifest",
    "read_container",
    "relative_index_decode",
    "relative_index_encode",
    "size_breakdown",
]
