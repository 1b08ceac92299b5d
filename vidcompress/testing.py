"""Helpers for testing code that writes or reads vidcompress files (as `numpy.testing` is for arrays):
bit-exact comparison, consistent forgeries of a container's manifest, and byte-level mutations. The
package's tests and the fuzz benchmark share them."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import torch

from vidcompress.codec.container import manifest_text, pack_manifest

MUTATIONS = ("flip", "truncate", "append", "overwrite")


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bit pattern (so -0.0 differs from 0.0, and NaNs compare by payload)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    as_bytes = [t.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for t in (a, b)]
    return torch.equal(*as_bytes)


def state_dicts_bits_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """The same names in the same order, each tensor equal bit for bit."""
    return list(a) == list(b) and all(bits_equal(a[name], b[name]) for name in a)


def edit_header(container: bytes, edit: Callable[[dict[str, str]], None]) -> bytes:
    """The container with its safetensors metadata changed by `edit` (in place on the dict)."""
    header_length = int.from_bytes(container[:8], "little")
    header = json.loads(container[8 : 8 + header_length])
    edit(header["__metadata__"])
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + container[8 + header_length :]


def edit_manifest(container: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """A consistent forgery: the manifest changed by `edit`, with its CRC32 recomputed, so that only
    the reader's validation of the contents can catch it."""

    def rewrite(metadata: dict[str, str]) -> None:
        manifest = json.loads(manifest_text(metadata, "<container>"))
        edit(manifest)
        text = json.dumps(manifest)
        metadata["manifest"] = text if metadata.get("format_version") in ("2", "3") else pack_manifest(text)
        metadata["manifest_crc32"] = str(zlib.crc32(text.encode()))

    return edit_header(container, rewrite)


def mutate(container: bytes, kind: str, integer: Callable[[int, int], int], binary: Callable[[int], bytes]) -> bytes:
    """One byte-level mutation of `MUTATIONS`, its choices drawn from `integer(low, high)` (inclusive)
    and `binary(max_size)` (1 to max_size bytes): a hypothesis strategy or a seeded generator."""
    data = bytearray(container)
    if kind == "flip":
        for _ in range(integer(1, 8)):
            position = integer(0, len(data) - 1)
            data[position] ^= 1 << integer(0, 7)
    elif kind == "truncate":
        data = data[: integer(0, len(data) - 1)]
    elif kind == "append":
        data += binary(256)
    elif kind == "overwrite":
        position = integer(0, len(data) - 1)
        chunk = binary(32)
        data[position : position + len(chunk)] = chunk
    else:
        raise ValueError(f"mutation {kind!r}: expected one of {', '.join(MUTATIONS)}")
    return bytes(data)
