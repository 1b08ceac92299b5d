import re
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from vidcompress.codec import (
    EncodeConfig,
    encode,
)
from vidcompress.codec.huffman import (
    canonical_code,
    decode_stream,
    huffman_lengths,
    huffman_payload,
    pack_table,
)
from vidcompress.codec.manifest import Coding, StreamInfo

DOCS = Path(__file__).parents[2] / "docs" / "format.md"


def test_worked_example_of_the_format_doc(tmp_path) -> None:
    text = DOCS.read_text()
    block = text.split("<!-- worked-example -->", 1)[1].split("```")[1]
    expected = {
        name: bytes.fromhex(hexes.replace(" ", ""))
        for name, hexes in re.findall(r"^(\S+):\s+([0-9a-f ]+)$", block, flags=re.MULTILINE)
    }
    weight = torch.tensor([[0, 0.5, 0, 0, 0], [0, 0, 0, -0.25, 0.5]])
    container = encode(
        {"w.weight": weight}, tmp_path / "example.vcz", EncodeConfig(bits="w.weight=2", index_bits="w.weight=2")
    )
    with safe_open(str(tmp_path / "example.vcz"), framework="pt") as handle:
        assert handle.get_tensor("layers/w.weight").numpy().tobytes() == expected["layers/w.weight"]
        assert handle.get_tensor("codebooks/w.weight").numpy().tobytes() == expected["codebooks/w.weight"]
    entry = container.layers[0]
    assert (entry.nonzeros, entry.fillers, entry.weights.coding, entry.indices.coding) == (3, 1, "packed", "packed")
    assert "symbol 1 -> `0`, symbol 0 -> `10`" in text
    code = canonical_code(np.array([2, 1, 3, 3]))
    assert {s: c.to01() for s, c in code.items()} == {1: "0", 0: "10", 2: "110", 3: "111"}


def test_huffman_example_of_the_format_doc() -> None:
    block = DOCS.read_text().split("<!-- huffman-example -->", 1)[1].split("```")[1]
    expected = {
        name: bytes.fromhex(hexes.replace(" ", ""))
        for name, hexes in re.findall(r"^(\S+):\s+([0-9a-f ]+)$", block, flags=re.MULTILINE)
    }
    symbols = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    lengths = huffman_lengths(symbols, 4)
    assert lengths.tolist() == [1, 2, 3, 0, 3]
    payload, bit_length = huffman_payload(symbols, lengths)
    assert (payload, bit_length) == (expected["payload"], 12)
    assert pack_table(lengths, 4) == expected["table"]
    assert np.array_equal(
        decode_stream(
            StreamInfo(Coding.HUFFMAN, 8, 4, 12, len(payload), len(expected["table"]), 0, 0), payload, expected["table"]
        ),
        symbols,
    )
