import numpy as np
import pytest

from vidcompress.codec import (
    encode_stream,
    entropy_bits,
)
from vidcompress.codec.huffman import (
    code_lengths,
    decode_stream,
    huffman_lengths,
)


def test_code_lengths_respect_the_limit_and_stay_optimal() -> None:
    # Frequencies 2^19, 2^18, ..., 1 make unlimited Huffman codes 20 bits long.
    symbols = np.repeat(np.arange(20), 1 << np.arange(19, -1, -1))
    assert code_lengths(np.bincount(symbols), 40).max() == 19
    lengths = huffman_lengths(symbols, 20)
    assert lengths.max() == 15 and lengths[20] > 0
    assert sum(2.0 ** -int(length) for length in lengths if length) == 1.0
    stream = encode_stream(symbols, 20)
    assert stream.coding == "huffman"
    assert np.array_equal(decode_stream(stream.info, stream.payload, stream.code_lengths), symbols)
    # Where the limit does not bind, package-merge costs exactly what unlimited Huffman costs.
    frequencies = np.random.default_rng(1).integers(1, 1000, 50)
    assert (frequencies * code_lengths(frequencies, 15)).sum() == (frequencies * code_lengths(frequencies, 40)).sum()


@pytest.mark.parametrize("alphabet", [3, 5, 256, 257, 1 << 12, 1 << 16])
def test_streams_decode_on_both_paths(alphabet: int) -> None:
    # Up to 256 symbols zlib's inflate decodes; above, bitarray. Both must agree with the input.
    rng = np.random.default_rng(alphabet)
    symbols = np.minimum(rng.geometric(0.05, 200_000) - 1, alphabet - 1)
    stream = encode_stream(symbols, alphabet)
    assert stream.coding == "huffman"
    out = decode_stream(stream.info, stream.payload, stream.code_lengths)
    assert np.array_equal(out, symbols)


def test_streams_are_close_to_their_entropy() -> None:
    rng = np.random.default_rng(0)
    for alphabet, probabilities in ((256, rng.dirichlet(np.ones(255) * 0.8)), (32, rng.dirichlet(np.ones(32)))):
        symbols = rng.choice(probabilities.size, size=200_000, p=probabilities)
        stream = encode_stream(symbols, alphabet)
        assert stream.coding == "huffman"
        assert stream.bit_length <= entropy_bits(symbols) * 1.01 + 64
        assert np.array_equal(
            decode_stream(stream.info, stream.payload, stream.code_lengths),
            symbols,
        )
