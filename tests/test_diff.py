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
    assert report.other_changed == ["fc.bias"] and not report.only_in_a and not report.only_in_b
    assert math.isinf(diff_state_dicts(a, a).layers[0].sqnr_db)


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
