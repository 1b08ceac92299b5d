"""`vidcompress diff` and `diff_state_dicts`: per-layer error, SQNR, sparsity and bits of each side."""

import json
import math

import pytest
import torch
from click.testing import CliRunner
from models import R3D18Like

from vidcompress import prune_state_dict, quantize_state_dict
from vidcompress.cli import main
from vidcompress.codec import encode
from vidcompress.diff import diff_state_dicts
from vidcompress.errors import InputError
from vidcompress.io import save_state_dict


def test_error_sqnr_sparsity_and_bits_are_exact_on_a_known_change() -> None:
    a = {"fc.weight": torch.tensor([[3.0, 4.0], [0.0, 0.0]]), "fc.bias": torch.zeros(2)}
    b = {"fc.weight": torch.tensor([[3.0, 0.0], [0.0, 0.0]]), "fc.bias": torch.ones(2)}
    report = diff_state_dicts(a, b)
    (layer,) = report.layers
    assert layer.relative_error == pytest.approx(4 / 5)  # ||b - a|| = 4, ||a|| = 5
    assert layer.sqnr_db == pytest.approx(10 * math.log10(25 / 16))
    assert (layer.a.sparsity, layer.b.sparsity) == (0.5, 0.75)
    assert (layer.a.distinct, layer.a.bits, layer.b.distinct, layer.b.bits) == (2, 2, 1, 1)
    assert [change.name for change in report.other_changed] == ["fc.bias"]
    assert report.other_changed[0].relative_error == math.inf  # a zero bias made ones: no signal
    assert not report.only_in_a and not report.only_in_b
    assert math.isinf(diff_state_dicts(a, a).layers[0].sqnr_db)


def test_non_finite_values_are_counted_and_left_out_of_the_errors() -> None:
    a = {"fc.weight": torch.tensor([[3.0, 4.0], [1.0, 1.0]]), "fc.bias": torch.tensor([1.0, 2.0])}
    b = {"fc.weight": torch.tensor([[3.0, float("inf")], [float("nan"), 1.0]]), "fc.bias": torch.tensor([1.0, 2.5])}
    report = diff_state_dicts(a, b)
    (layer,) = report.layers
    assert layer.nonfinite == (0, 2) and layer.relative_error == 0.0 and math.isinf(layer.sqnr_db)
    (bias,) = report.other_changed
    assert bias.relative_error == pytest.approx(0.5 / math.sqrt(5))
    text = report.to_markdown()
    assert "fc.weight (A 0, B 2)" in text and "fc.bias (0.22)" in text
    json.dumps(report.to_dict(), allow_nan=False)  # plain JSON: no NaN or Infinity


def test_a_bias_stored_in_float16_is_reported_with_its_error(tmp_path) -> None:
    from vidcompress.codec import EncodeConfig, decode

    dense = R3D18Like().state_dict()
    quantized, _ = quantize_state_dict(dense, "conv=6,fc=4")
    encode(quantized, tmp_path / "half.vcz", EncodeConfig(raw_dtype="float16"))
    report = diff_state_dicts(quantized, decode(tmp_path / "half.vcz"))
    changed = {change.name: change for change in report.other_changed}
    assert "fc.bias" in changed and 0 < changed["fc.bias"].relative_error < 1e-3
    assert changed["fc.bias"].dtypes == ("float32", "float32")
    assert all(layer.relative_error == 0 for layer in report.layers)  # coded layers: exact
    assert "other tensors that differ (relative error)" in report.to_markdown()


def test_a_shape_change_is_an_error_naming_the_layer() -> None:
    with pytest.raises(InputError, match=r"fc\.weight: shape"):
        diff_state_dicts({"fc.weight": torch.ones(2, 2)}, {"fc.weight": torch.ones(2, 3)})


def test_cli_compares_a_file_with_its_container(tmp_path) -> None:
    dense = R3D18Like().state_dict()
    pruned, _ = prune_state_dict(dense, "conv=0.8,fc=0.9")
    quantized, _ = quantize_state_dict(pruned, "conv=6,fc=4")
    save_state_dict(dense, tmp_path / "dense.safetensors")
    encode(quantized, tmp_path / "small.vcz")
    result = CliRunner().invoke(
        main, ["diff", str(tmp_path / "dense.safetensors"), str(tmp_path / "small.vcz"), "--json"]
    )
    assert result.exit_code == 0, result.output
    layers = {layer["name"]: layer for layer in json.loads(result.output)["layers"]}
    assert layers["fc.weight"]["b"]["bits"] <= 4 and layers["fc.weight"]["b"]["sparsity"] == pytest.approx(
        0.9, abs=0.01
    )
    assert layers["conv1.weight"]["a"]["bits"] == 11  # 1,764 distinct random values
    assert layers["conv1.weight"]["b"]["bits"] <= 6 and 0 < layers["conv1.weight"]["relative_error"] < 1
    table = CliRunner().invoke(main, ["diff", str(tmp_path / "dense.safetensors"), str(tmp_path / "small.vcz")])
    assert "SQNR (dB)" in table.output and "| 11 -> 6 |" in table.output
    missing = CliRunner().invoke(main, ["diff", str(tmp_path / "dense.safetensors"), str(tmp_path / "none.vcz")])
    assert missing.exit_code == 2 and missing.output.startswith("error:")
