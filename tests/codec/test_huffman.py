import dataclasses

import numpy as np
import pytest

from vidcompress.codec import (
    encode_stream,
    entropy_bits,
)
from vidcompress.codec.huffman import (
    code_lengths,
    decode_stream,
    group_symbols,
    huffman_lengths,
    stream_bytes,
    ungroup_symbols,
)
from vidcompress.errors import FormatError


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


@pytest.mark.parametrize(("alphabet", "count"), [(2, 100_001), (3, 50_002), (4, 20_003), (6, 9_999), (16, 40_001)])
def test_skewed_streams_of_few_symbols_group_symbols_and_decode_exactly(alphabet: int, count: int) -> None:
    """One bit a symbol is Huffman's floor; a stream far below it codes several symbols a codeword.
    Counts that are not a multiple of the group leave a padded last group."""
    rng = np.random.default_rng(alphabet)
    probabilities = np.r_[0.9, np.full(alphabet - 1, 0.1 / (alphabet - 1))]
    symbols = rng.choice(alphabet, size=count, p=probabilities)
    stream = encode_stream(symbols, alphabet)
    assert stream.coding == "huffman" and stream.group > 1
    assert alphabet**stream.group <= 256
    assert np.array_equal(decode_stream(stream.info, stream.payload, stream.code_lengths), symbols)
    # Huffman's bound, less than a bit a codeword above the entropy, is now a bit per `group` symbols,
    # and the payload at least 10% under the one-symbol-a-codeword code's.
    codewords = -(-count // stream.group)
    assert stream.bit_length < entropy_bits(symbols) + codewords
    frequencies = np.bincount(symbols, minlength=alphabet)
    one_a_codeword = int((frequencies * huffman_lengths(frequencies, alphabet, frequencies=True)[:alphabet]).sum())
    assert stream.bit_length < 0.9 * one_a_codeword
    assert stream.total_bytes == stream_bytes(symbols, alphabet)


def test_the_size_model_is_exact_for_every_coding() -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        alphabet = int(rng.choice([2, 3, 5, 16, 17, 32, 300]))
        size = int(rng.integers(0, 3000))
        skew = rng.uniform(0.05, 3.0)
        probabilities = rng.dirichlet(np.full(alphabet, skew))
        symbols = rng.choice(alphabet, size=size, p=probabilities)
        for huffman in (True, False):
            stream = encode_stream(symbols, alphabet, huffman)
            assert stream.total_bytes == stream_bytes(symbols, alphabet, huffman), (trial, alphabet, size, huffman)
            assert np.array_equal(decode_stream(stream.info, stream.payload, stream.code_lengths), symbols)


def test_group_symbols_round_trip_and_refuse_bad_padding() -> None:
    symbols = np.array([2, 0, 1, 2, 2, 1, 0])
    grouped = group_symbols(symbols, 3, 3)
    assert grouped.tolist() == [2 * 9 + 0 + 1 * 1, 2 * 9 + 2 * 3 + 1, 0]
    assert ungroup_symbols(grouped, 3, 3, symbols.size).tolist() == symbols.tolist()
    with pytest.raises(FormatError, match="padding of its last group"):
        ungroup_symbols(np.array([0, 0, 1]), 3, 3, symbols.size)


@pytest.mark.parametrize(("group", "message"), [(3, "group of 3 symbols"), (9, "group of 9 symbols")])
def test_a_group_the_alphabet_does_not_allow_is_a_format_error(group: int, message: str) -> None:
    symbols = np.random.default_rng(0).choice(16, size=5000, p=np.r_[0.85, np.full(15, 0.01)])
    stream = encode_stream(symbols, 16)
    assert stream.group == 2
    forged = dataclasses.replace(stream.info, group=group)
    with pytest.raises(FormatError, match=message):
        decode_stream(forged, stream.payload, stream.code_lengths)
