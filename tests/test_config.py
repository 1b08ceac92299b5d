"""The configs: one tagged dict form, keyword-only construction, one error type, files for the CLI."""

import json

import pytest
import torch
from click.testing import CliRunner
from models import R3D18Like

from vidcompress import DSDConfig, PruneConfig, QuantizeConfig, StepSchedule
from vidcompress.budget import BudgetConfig
from vidcompress.cli import main
from vidcompress.codec import EncodeConfig, read_container
from vidcompress.errors import ConfigError
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.metadata import read_stages
from vidcompress.rules import SPARSITY, LayerRules

CONFIGS = [
    PruneConfig(sparsity="conv=0.9,fc=0.95,layer4.*=off", schedule=StepSchedule(0.1)),
    QuantizeConfig(bits="conv=8,fc=5", init="density", gradient="mean", seed=3),
    DSDConfig(sparse_sparsity="fc=0.5", final_sparsity="fc=0.8", schedule="agp:4", dense_epochs=2),
    EncodeConfig(bits="conv=8,fc=raw", index_bits="conv=auto,fc=5", huffman=False),
    EncodeConfig(),
    QuantizeConfig(bits="conv=6,fc=5", method="ecsq", lagrangian=0.02),
    BudgetConfig(sparsities=(0.5, 0.9), bits=(3, 4), method="ecsq", lagrangian=0.02, index_bits="auto"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_tagged_round_trip(config) -> None:
    data = config.to_dict()
    assert data["_type"] == type(config).__name__ and data["_version"] == type(config).VERSION
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert type(config).from_dict(data) == config
    assert type(config).from_json(config.to_json()) == config


def test_text_and_parsed_fields_build_equal_configs() -> None:
    rules = LayerRules.parse("conv=0.9,fc=0.95", SPARSITY)
    assert PruneConfig(sparsity="conv=0.9,fc=0.95") == PruneConfig(sparsity=rules)
    assert PruneConfig(sparsity={"conv": 0.9, "fc": 0.95}).sparsity == rules
    assert isinstance(QuantizeConfig(bits="fc=4").bits, LayerRules)


@pytest.mark.parametrize("kind", [PruneConfig, QuantizeConfig, DSDConfig, EncodeConfig])
def test_every_config_refuses_the_same_way(kind) -> None:
    with pytest.raises(TypeError):
        kind("conv=0.5")  # keyword-only
    with pytest.raises(ConfigError, match="unknown field"):
        kind.from_dict({"colour": "blue"})
    with pytest.raises(ConfigError, match="where a"):
        kind.from_dict({"_type": "SomethingElse"})
    with pytest.raises(ConfigError, match="version"):
        kind.from_dict({"_version": 99})
    with pytest.raises(ConfigError, match="not valid JSON"):
        kind.from_json("{")


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_iter"):
        QuantizeConfig(max_iter=0)
    with pytest.raises(ConfigError, match="sparse_epochs"):
        DSDConfig(sparse_epochs=-1)
    with pytest.raises(ConfigError, match="dense_lr_factor"):
        DSDConfig(dense_lr_factor=2.0)
    with pytest.raises(ConfigError, match="huffman"):
        EncodeConfig(huffman="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sparsity"):
        PruneConfig.from_dict({"sparsity": {"conv": 1.5}})


def test_config_files_of_each_format(tmp_path) -> None:
    config = QuantizeConfig(bits="conv=6,fc=4", init="density")
    (tmp_path / "q.json").write_text(config.to_json())
    (tmp_path / "q.toml").write_text('_type = "QuantizeConfig"\ninit = "density"\n[bits]\nconv = 6\nfc = 4\n')
    assert QuantizeConfig.from_file(tmp_path / "q.json") == config
    assert QuantizeConfig.from_file(tmp_path / "q.toml") == config
    (tmp_path / "p.json").write_text(PruneConfig().to_json())
    with pytest.raises(ConfigError, match=r"p\.json: a PruneConfig config where a QuantizeConfig"):
        QuantizeConfig.from_file(tmp_path / "p.json")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture()
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    save_state_dict(R3D18Like().state_dict(), path)
    return path


def test_cli_stages_read_config_files_and_options_override_them(weights, tmp_path) -> None:
    prune_file, quantize_file, encode_file = tmp_path / "p.json", tmp_path / "q.toml", tmp_path / "e.json"
    prune_file.write_text(PruneConfig(sparsity="conv=0.8,fc=0.9").to_json())
    quantize_file.write_text('_type = "QuantizeConfig"\nmax_iter = 50\n[bits]\nconv = 5\nfc = 4\n')
    encode_file.write_text(EncodeConfig(index_bits="conv=6,fc=4").to_json())

    pruned, quantized, coded = tmp_path / "p.safetensors", tmp_path / "q.safetensors", tmp_path / "m.vcz"
    assert run("prune", weights, "-o", pruned, "--config", prune_file, "--sparsity", "conv=0.7,fc=0.9").exit_code == 0
    tensors, metadata = load_state_dict(pruned)
    assert read_stages(metadata)["prune"]["sparsity"]["conv1.weight"] == 0.7  # the option wins
    assert read_stages(metadata)["prune"]["config"]["_type"] == "PruneConfig"

    result = run("quantize", pruned, "-o", quantized, "--config", quantize_file)
    assert result.exit_code == 0, result.output
    tensors, metadata = load_state_dict(quantized)
    assert torch.unique(tensors["fc.weight"]).numel() <= 16
    assert read_stages(metadata)["quantize"]["config"]["max_iter"] == 50

    result = run("encode", quantized, "-o", coded, "--config", encode_file)
    assert result.exit_code == 0, result.output
    entries = {entry.name: entry for entry in read_container(coded).layers}
    assert entries["conv1.weight"].index_bits == 6 and entries["fc.weight"].index_bits == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_type": "QuantizeConfig"}', "a QuantizeConfig config where a PruneConfig is expected"),
        ('{"sparsity": {"conv": 2}}', "sparsity"),
        ("{", "not a valid JSON config"),
        ('{"speed": 1}', "unknown field"),
    ],
)
def test_cli_bad_config_files_are_one_line_errors(weights, tmp_path, content, message) -> None:
    config = tmp_path / "bad.json"
    config.write_text(content)
    out = tmp_path / "out.safetensors"
    result = run("prune", weights, "-o", out, "--config", config)
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.count("\n") == 1 and not out.exists()


def test_a_version_1_quantize_config_still_reads() -> None:
    from vidcompress.quantize import QuantizeConfig

    old = {"_type": "QuantizeConfig", "_version": 1, "bits": "conv=8,fc=5", "init": "linear", "max_iter": 300,
           "gradient": "sum", "seed": 0}  # fmt: skip
    config = QuantizeConfig.from_dict(old)
    assert (config.method, config.lagrangian) == ("kmeans", 0.0)
    with pytest.raises(ConfigError, match="ECSQ"):
        QuantizeConfig(method="kmeans", lagrangian=0.1)
    with pytest.raises(ConfigError, match="method"):
        QuantizeConfig(method="lloyd")
