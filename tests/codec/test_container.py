import json
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import R3D18Like

from vidcompress.cli import main
from vidcompress.codec import (
    EncodeConfig,
    decode,
    encode,
    inspect_container,
    load_compressed,
    read_container,
    size_breakdown,
)
from vidcompress.codec.container import manifest_text
from vidcompress.errors import ConfigError, FormatError, InputError
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.layers import state_dict_layers
from vidcompress.prune import prune_
from vidcompress.quantize import finalize_, quantize_
from vidcompress.testing import bits_equal


def _quantized_layer(shape, sparsity, levels, dtype, seed) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(levels, generator=generator).to(dtype)
    values = values[values != 0] if (values != 0).any() else torch.ones(1, dtype=dtype)
    picks = torch.randint(0, values.numel(), shape, generator=generator)
    weight = values[picks]
    keep = torch.rand(shape, generator=generator) >= sparsity
    return torch.where(keep, weight, torch.zeros((), dtype=dtype))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.sampled_from([(1, 1), (3, 1), (1, 7), (5, 4), (8, 3, 3), (4, 2, 3, 3, 3), (0, 4), (16, 40)]),
    sparsity=st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
    bits=st.integers(1, 8),
    index_bits=st.one_of(st.integers(1, 8), st.just("auto")),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    seed=st.integers(0, 1000),
)
def test_decode_encode_is_bit_exact(tmp_path, shape, sparsity, bits, index_bits, dtype, seed) -> None:
    weight = _quantized_layer(shape, sparsity, (1 << bits) - 1, dtype, seed)
    state = {"layer.weight": weight, "layer.bias": torch.randn(shape[0]).to(dtype)}
    path = tmp_path / f"c{seed}.vcz"
    encode(state, path, EncodeConfig(bits=f"*.weight={bits}", index_bits=f"*.weight={index_bits}"))
    out = decode(path)
    assert list(out) == list(state)
    assert all(bits_equal(out[k], state[k]) for k in state)
    path.unlink()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.sampled_from([(1, 1), (5, 4), (8, 3, 3), (0, 3), (16, 40)]),
    sparsity=st.sampled_from([0.0, 0.5, 0.95, 1.0]),
    index_bits=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    huffman=st.booleans(),
)
def test_raw_layers_are_bit_exact(tmp_path, shape, sparsity, index_bits, dtype, huffman) -> None:
    weight = torch.randn(shape).to(dtype)
    weight = torch.where(torch.rand(shape) < sparsity, torch.zeros((), dtype=dtype), weight)
    path = tmp_path / "raw.vcz"
    config = EncodeConfig(bits="w.weight=raw", index_bits=f"w.weight={index_bits}", huffman=huffman)
    container = encode({"w.weight": weight}, path, config)
    assert container.layers[0].weights.coding == "raw" and container.layers[0].bits == 0
    assert bits_equal(decode(path)["w.weight"], weight)
    path.unlink()


def test_without_huffman_streams_are_packed(quantized, tmp_path) -> None:
    plain = encode(quantized, tmp_path / "plain.vcz", EncodeConfig(huffman=False))
    coded = encode(quantized, tmp_path / "coded.vcz")
    assert {e.weights.coding for e in plain.layers} <= {"packed", "constant", "raw"}  # raw: a small layer's values
    assert coded.file_bytes < plain.file_bytes
    decoded = decode(tmp_path / "plain.vcz")
    assert all(bits_equal(decoded[k], quantized[k]) for k in quantized)


def test_two_encodes_of_one_input_are_byte_identical(quantized, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    encode(quantized, tmp_path / "a.vcz")
    time.sleep(1.1)  # a time of writing, if one were recorded, would now differ
    encode(quantized, tmp_path / "b.vcz")
    assert (tmp_path / "a.vcz").read_bytes() == (tmp_path / "b.vcz").read_bytes()
    assert "created" not in json.loads(manifest_text(read_container(tmp_path / "a.vcz").metadata, "a.vcz"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_raw_tensors_stored_narrowed_come_back_in_their_dtype(quantized, tmp_path, dtype: str) -> None:
    state = {**quantized, "norm.weight": torch.randn(64), "norm.running_var": torch.rand(64) + 0.5,
             "norm.num_batches_tracked": torch.tensor(7), "half.bias": torch.randn(8).half()}  # fmt: skip
    wide = encode(state, tmp_path / "wide.vcz")
    narrow = encode(state, tmp_path / "narrow.vcz", EncodeConfig(raw_dtype=dtype))
    assert narrow.raw == wide.raw and "norm.weight" in narrow.raw
    weights = {layer.name for layer in state_dict_layers(state)}  # layer weights stored whole keep their bits
    assert set(narrow.raw_dtypes) == {n for n in narrow.raw if state[n].dtype == torch.float32 and n not in weights}
    saved = sum(state[name].numel() * 2 for name in narrow.raw_dtypes)
    assert wide.file_bytes - narrow.file_bytes >= saved - 128  # the manifest grows by a list of dtypes
    decoded = decode(tmp_path / "narrow.vcz")
    for name, tensor in state.items():
        assert decoded[name].dtype == tensor.dtype
        if name in narrow.raw_dtypes:
            assert torch.equal(decoded[name], tensor.to(getattr(torch, dtype)).to(tensor.dtype))
        else:  # encoded layers, integer buffers and tensors already 16-bit: exact
            assert bits_equal(decoded[name], tensor)
    assert read_container(tmp_path / "narrow.vcz").metadata["format_version"] == "6"
    assert read_container(tmp_path / "wide.vcz").metadata["format_version"] in ("4", "5")


def test_a_raw_tensor_beyond_float16s_range_is_refused_by_name(quantized, tmp_path) -> None:
    state = {**quantized, "scale.bias": torch.tensor([1.0, 1e6])}
    with pytest.raises(InputError, match=r"scale\.bias: holds values up to 1e\+06, beyond float16's range"):
        encode(state, tmp_path / "a.vcz", EncodeConfig(raw_dtype="float16"))
    assert not (tmp_path / "a.vcz").exists()
    encode(state, tmp_path / "a.vcz", EncodeConfig(raw_dtype="bfloat16"))  # bfloat16 has float32's range
    with pytest.raises(ConfigError, match="raw_dtype 'int8'"):
        EncodeConfig(raw_dtype="int8")


def test_source_date_epoch_makes_containers_reproducible(quantized, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    encode(quantized, tmp_path / "a.vcz")
    encode(quantized, tmp_path / "b.vcz")
    assert (tmp_path / "a.vcz").read_bytes() == (tmp_path / "b.vcz").read_bytes()
    metadata = read_container(tmp_path / "a.vcz").metadata
    assert json.loads(manifest_text(metadata, "a.vcz"))["created"] == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        encode(quantized, tmp_path / "c.vcz")
    assert not (tmp_path / "c.vcz").exists()


def test_negative_zero_survives(tmp_path) -> None:
    weight = torch.tensor([[0.0, -0.0, 1.5], [-0.0, 0.0, 1.5]])
    encode({"w.weight": weight}, tmp_path / "c.vcz", EncodeConfig(bits="w.weight=2"))
    assert bits_equal(decode(tmp_path / "c.vcz")["w.weight"], weight)


@pytest.fixture(scope="module")
def quantized():
    torch.manual_seed(0)
    model = R3D18Like(width=8)
    prune_(model, "conv=0.9,fc=0.95")
    quantize_(model, "conv=8,fc=5")
    finalize_(model)
    return model.state_dict()


def test_container_size_accounting_adds_up(quantized, tmp_path) -> None:
    path = tmp_path / "model.vcz"
    container = encode(quantized, path)
    parts = size_breakdown(read_container(path))
    assert parts["total"] == path.stat().st_size == container.file_bytes
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"]
    assert min(parts.values()) >= 0
    report = inspect_container(read_container(path))
    layer = next(layer for layer in report.layers if layer.name == "layers.3.conv2.weight")
    assert layer.weight_payload_bits <= layer.weight_entropy_bits * 1.01 + 8 * 300
    assert report.totals()["ratio_to_fp32"] > 5


def test_load_compressed_gives_the_same_outputs(quantized, tmp_path) -> None:
    encode(quantized, tmp_path / "model.vcz")
    model = load_compressed(tmp_path / "model.vcz", R3D18Like(width=8)).eval()
    reference = R3D18Like(width=8).eval()
    reference.load_state_dict(quantized)
    x = torch.randn(1, 3, 4, 16, 16)
    assert torch.equal(model(x), reference(x))


def test_a_model_with_parametrizations_must_be_finalized_first(tmp_path) -> None:
    model = R3D18Like(width=4)
    quantize_(model, "conv=4,fc=4")
    with pytest.raises(ConfigError, match="finalize_"):
        encode(model, tmp_path / "x.vcz")
    finalize_(model)
    encode(model, tmp_path / "x.vcz", EncodeConfig(bits="conv=4,fc=4"))
    assert (tmp_path / "x.vcz").exists()


def test_unquantized_layer_is_an_error_naming_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"fc\.weight: .* distinct nonzero values.*vidcompress quantize"):
        encode(R3D18Like(width=4).state_dict(), tmp_path / "x.vcz", EncodeConfig(bits="fc=5"))
    assert not (tmp_path / "x.vcz").exists()


def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    start, stop = header[name]["data_offsets"]
    return 8 + header_length + start, 8 + header_length + stop


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ("layers/fc.weight", "fc.weight: CRC32 mismatch in the (weights|indices) stream"),
        ("codebooks/conv1.weight", "conv1.weight: CRC32 mismatch in the codebook"),
        ("raw/bn1.running_var", "bn1.running_var: CRC32 mismatch in the raw tensor"),
    ],
)
def test_corruption_is_a_format_error_naming_the_layer(quantized, tmp_path, tensor: str, message: str) -> None:
    path = tmp_path / "model.vcz"
    encode(quantized, path)
    start, stop = _tensor_span(path, tensor)
    data = bytearray(path.read_bytes())
    data[(start + stop) // 2] ^= 0x5A
    (tmp_path / "bad.vcz").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=message):
        decode(tmp_path / "bad.vcz")


def test_truncation_is_a_format_error(quantized, tmp_path) -> None:
    path = tmp_path / "model.vcz"
    encode(quantized, path)
    for keep in (0, 7, 100, path.stat().st_size - 50):
        (tmp_path / "short.vcz").write_bytes(path.read_bytes()[:keep])
        with pytest.raises(FormatError):
            decode(tmp_path / "short.vcz")


def test_cli_encode_decode_inspect(quantized, tmp_path) -> None:
    source = tmp_path / "q.safetensors"
    save_state_dict(quantized, source)
    runner = CliRunner()
    result = runner.invoke(
        main, ["encode", str(source), "-o", str(tmp_path / "m.vcz"), "--index-bits", "conv=auto,fc=5"]
    )
    assert result.exit_code == 0, result.output
    columns = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "c.vcz"), "--columns-only"])
    assert columns.exit_code == 0, columns.output
    written = read_container(tmp_path / "c.vcz")
    assert written.metadata["format_version"] == "4" and all(e.layout != "rows" for e in written.layers)
    result = runner.invoke(main, ["decode", str(tmp_path / "m.vcz"), "-o", str(tmp_path / "d.safetensors")])
    assert result.exit_code == 0, result.output
    decoded, _ = load_state_dict(tmp_path / "d.safetensors")
    assert all(bits_equal(decoded[k], quantized[k]) for k in quantized)
    shown = runner.invoke(main, ["inspect", str(tmp_path / "m.vcz")])
    assert shown.exit_code == 0 and "weight bits/nz (entropy)" in shown.output and "envelope_header" in shown.output
    as_json = runner.invoke(main, ["inspect", str(tmp_path / "m.vcz"), "--json"])
    assert as_json.exit_code == 0 and '"bits_per_parameter"' in as_json.output
    dense = tmp_path / "dense.safetensors"
    save_state_dict(R3D18Like(width=4).state_dict(), dense)
    stored = runner.invoke(main, ["encode", str(dense), "-o", str(tmp_path / "x.vcz")])  # bits from the weights
    assert stored.exit_code == 0 and "0 layers encoded" in stored.output and "quantize" in stored.output
    error = runner.invoke(main, ["encode", str(dense), "-o", str(tmp_path / "z.vcz"), "--bits", "conv=8"])
    assert error.exit_code == 2 and "quantize" in error.output and not (tmp_path / "z.vcz").exists()
    bad = runner.invoke(main, ["decode", str(dense), "-o", str(tmp_path / "y.safetensors")])
    assert bad.exit_code == 2 and "not a vidcompress container" in bad.output


def test_a_two_bit_pruned_layer_is_coded_in_groups_and_inspect_says_so(tmp_path) -> None:
    """90% zeros and three levels: one symbol a codeword would cost at least a bit an element."""
    generator = torch.Generator().manual_seed(3)
    levels = torch.tensor([-0.5, 0.25, 0.75])
    weight = levels[torch.randint(0, 3, (64, 256), generator=generator)]
    weight[torch.rand(64, 256, generator=generator) < 0.9] = 0.0
    container = encode({"fc.weight": weight}, tmp_path / "g.vcz", EncodeConfig(bits="fc.weight=2"))
    (entry,) = container.layers
    grouped = max(entry.weights.group, entry.indices.group)
    assert grouped > 1
    assert bits_equal(decode(tmp_path / "g.vcz")["fc.weight"], weight)
    assert 8 * entry.data_bytes < 0.75 * weight.numel()  # under the one-bit-an-element floor
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "g.vcz")])
    assert result.exit_code == 0 and f"huffman x{grouped}" in result.output


def _dead_units(rows: int, columns: int, seed: int, *, inputs: bool) -> torch.Tensor:
    """90% of the weights kept where both units live; the second half of the input units (`inputs`, as
    MNIST's border pixels in a first layer) or of the output units pruned away whole. Which walk codes
    such a layer smaller depends on how the fillers and the index widths fall: the test takes cases
    where the row walk wins."""
    generator = torch.Generator().manual_seed(seed)
    levels = torch.tensor([-0.5, -0.125, 0.25, 0.75])
    weight = levels[torch.randint(0, 4, (rows, columns), generator=generator)]
    weight[torch.rand(rows, columns, generator=generator) >= 0.9] = 0.0
    if inputs:
        weight[:, columns // 2 :] = 0.0
    else:
        weight[rows // 2 :] = 0.0
    return weight


@pytest.mark.parametrize(("bits", "shape", "inputs"), [("3", (8, 512), False), ("raw", (4096, 8), True)])
def test_the_row_walk_is_taken_where_it_codes_smaller_and_decodes_exactly(tmp_path, bits, shape, inputs) -> None:
    from vidcompress.codec.container import read_layers
    from vidcompress.codec.layer import coded_bytes, layer_codebook
    from vidcompress.codec.relative_index import column_major, relative_index_encode
    from vidcompress.kernels.layout import SparseLayout

    weight = _dead_units(*shape, seed=1, inputs=inputs)
    path = tmp_path / "rows.vcz"
    container = encode({"fc.weight": weight}, path, EncodeConfig(bits=f"fc.weight={bits}", index_bits="fc=auto"))
    (entry,) = container.layers
    assert entry.layout == "rows" and entry.nonzeros == int((weight != 0).sum())
    assert bits_equal(decode(path)["fc.weight"], weight)
    ((read_entry, data, codebook),) = read_layers(read_container(path))
    assert torch.equal(SparseLayout.from_container(read_entry, data, codebook).to_dense(), weight)
    shown = CliRunner().invoke(main, ["inspect", str(path)])
    assert shown.exit_code == 0 and "| fc.weight | fc | rows |" in shown.output
    if bits == "3":  # smaller than the column walk at its best width
        symbols = column_major(layer_codebook(weight, 3, "fc.weight")[1], shape)
        columns = min(
            coded_bytes(entries.symbols, 5) + coded_bytes(entries.codes, 1 << width)
            for width in range(1, 13)
            for entries in [relative_index_encode(symbols, width)]
        )
        assert entry.data_bytes < columns


def test_a_small_layer_whose_codebook_does_not_pay_stores_its_values(tmp_path) -> None:
    # 48 distinct values in 64 weights: a 49-entry fp32 codebook costs more than the values themselves.
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(8, 8, generator=generator)
    small[small.abs() < 0.3] = 0
    big = torch.randn(64, 64, generator=generator).round(decimals=1)  # few distinct values: a codebook pays
    state = {"small.weight": small, "big.weight": big}
    container = encode(state, tmp_path / "m.vcz", EncodeConfig(bits="8"))
    coding = {entry.name: entry for entry in container.layers}
    assert coding["small.weight"].bits == 0 and coding["small.weight"].weights.coding == "raw"
    assert coding["big.weight"].bits == 8 and coding["big.weight"].codebook_size > 1
    decoded = decode(tmp_path / "m.vcz")
    assert all(bits_equal(decoded[name], tensor) for name, tensor in state.items())
