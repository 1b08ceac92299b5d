import json

import pytest

from vidcompress.errors import ConfigError
from vidcompress.layers import LayerInfo, LayerKind
from vidcompress.rules import BITS, INDEX_BITS, SPARSITY, LayerRules

LAYERS = [
    LayerInfo("conv1.weight", LayerKind.CONV, (8, 3, 3, 3)),
    LayerInfo("layer4.0.conv1.weight", LayerKind.CONV, (8, 8, 3, 3)),
    LayerInfo("fc.weight", LayerKind.FC, (10, 8)),
]


def test_kinds_globs_and_later_rules_win() -> None:
    rules = LayerRules.parse("conv=0.9,fc=0.95,layer4.*=0.8,fc.weight=0", SPARSITY)
    assert rules.resolve(LAYERS) == {"conv1.weight": 0.9, "layer4.0.conv1.weight": 0.8}


def test_off_leaves_a_layer_out_and_order_matters() -> None:
    rules = LayerRules.parse("conv1.*=off,conv=8", BITS)
    assert rules.resolve(LAYERS) == {"conv1.weight": 8, "layer4.0.conv1.weight": 8}
    rules = LayerRules.parse("conv=8,conv1.*=off", BITS)
    assert rules.resolve(LAYERS) == {"layer4.0.conv1.weight": 8}


def test_rules_that_can_do_nothing_are_errors_except_in_defaults() -> None:
    fc_only = [LAYERS[2]]
    with pytest.raises(ConfigError, match=r"sparsity rule conv=0.9: the model has no conv layer \(it has 0 conv, 1 fc"):
        LayerRules.parse("conv=0.9,fc=0.5", SPARSITY).resolve(fc_only)
    assert LayerRules.parse("conv=0.9,fc=0.5", SPARSITY, default=True).resolve(fc_only) == {"fc.weight": 0.5}
    assert LayerRules.parse("0.5", SPARSITY).resolve(fc_only) == {"fc.weight": 0.5}  # a bare value: every kind
    assert LayerRules.parse("conv=off,fc=0.5", SPARSITY).resolve(LAYERS) == {"fc.weight": 0.5}
    with pytest.raises(ConfigError, match=r"'layer9\.\*' matches no compressible parameter"):
        LayerRules.parse("layer9.*=0.5", SPARSITY).resolve(LAYERS)


def test_a_kind_with_a_question_mark_may_find_no_layer_and_round_trips() -> None:
    fc_only = [LAYERS[2]]
    assert LayerRules.parse("conv?=0.9,fc=0.5", SPARSITY).resolve(fc_only) == {"fc.weight": 0.5}
    for rules in (LayerRules.parse("conv=0.9,fc=0.5", SPARSITY, default=True), LayerRules.parse("0.5", SPARSITY)):
        again = LayerRules.parse(rules.to_dict(), SPARSITY)
        assert again == rules and again.resolve(fc_only) == rules.resolve(fc_only)
    assert LayerRules.parse("0.5", SPARSITY).to_dict() == {"conv?": 0.5, "fc?": 0.5, "emb?": 0.5}


def test_a_selected_refused_layer_is_an_error_naming_it() -> None:
    layers = [*LAYERS, LayerInfo("norm.weight", LayerKind.FC, (4, 4), refused="parametrized by _SpectralNorm")]
    with pytest.raises(ConfigError, match=r"norm\.weight: parametrized by _SpectralNorm; .*'norm\.weight=off'"):
        LayerRules.parse("fc=0.5", SPARSITY).resolve(layers)
    assert "norm.weight" not in LayerRules.parse("fc=0.5,norm.weight=off", SPARSITY).resolve(layers)


@pytest.mark.parametrize(
    ("text", "spec", "message"),
    [
        ("conv", SPARSITY, "expected a value or PATTERN=VALUE"),
        ("conv=", SPARSITY, "expected a value or PATTERN=VALUE"),
        ("=0.5", SPARSITY, "expected a value or PATTERN=VALUE"),
        ("conv=x", SPARSITY, "expected a number"),
        ("conv=1.0", SPARSITY, r"must be in \[0, 1\)"),
        ("conv=-0.1", SPARSITY, r"must be in \[0, 1\)"),
        ("conv=0", BITS, "must be from 1 to 16"),
        ("conv=17", BITS, "must be from 1 to 16"),
        ("conv=x", BITS, "expected an integer"),
        ("conv=auto", BITS, "expected an integer"),
        ("", SPARSITY, "no rule given"),
    ],
)
def test_malformed_rules_are_config_errors(text: str, spec, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LayerRules.parse(text, spec)


def test_index_bits_accept_auto() -> None:
    assert LayerRules.parse("conv=auto,fc=5", INDEX_BITS).resolve(LAYERS)["conv1.weight"] == "auto"


def test_a_bare_value_applies_to_every_layer() -> None:
    assert set(LayerRules.parse("auto", INDEX_BITS).resolve(LAYERS).values()) == {"auto"}
    assert LayerRules.parse("0.5,fc=off", SPARSITY).resolve(LAYERS) == {
        "conv1.weight": 0.5,
        "layer4.0.conv1.weight": 0.5,
    }


def test_json_and_toml_files_and_round_trip(tmp_path) -> None:
    text = "conv=0.9,fc=0.95,layer4.*=0.8,fc.weight=off"
    rules = LayerRules.parse(text, SPARSITY)
    assert str(rules) == text
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps(rules.to_dict()))
    assert LayerRules.parse(str(json_file), SPARSITY) == rules
    toml_file = tmp_path / "rules.toml"
    toml_file.write_text('conv = 0.9\nfc = 0.95\n"layer4.*" = 0.8\n"fc.weight" = "off"\n')
    assert LayerRules.parse(str(toml_file), SPARSITY) == rules


def test_bad_rule_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="rule file not found"):
        LayerRules.parse(str(tmp_path / "missing.json"), SPARSITY)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid rule file"):
        LayerRules.parse(str(broken), SPARSITY)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="non-empty object"):
        LayerRules.parse(str(listed), SPARSITY)
