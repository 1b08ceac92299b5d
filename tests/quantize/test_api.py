import copy
import json

import pytest
import torch
from click.testing import CliRunner
from models import MODELS, R3D18Like, any_model_rules, mlp

from vidcompress.cli import main
from vidcompress.errors import ConfigError, InputError
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.layers import find_parameter
from vidcompress.metadata import read_stages
from vidcompress.prune import PruneConfig, Pruner, prune_
from vidcompress.quantize import QuantizeConfig, WeightSharing, finalize_, quantize_, share_weights


@pytest.mark.parametrize("name", sorted(MODELS))
def test_distinct_values_and_zeros_on_every_model(name: str) -> None:
    build, make_input = MODELS[name]
    model = build()
    prune_(model, PruneConfig(sparsity=any_model_rules("conv=0.5,fc=0.6,emb=0.5")))
    zeros = {n: (p == 0) for n, p in model.state_dict().items() if p.ndim >= 2}
    report = quantize_(model, QuantizeConfig(bits=any_model_rules("conv=4,fc=3,emb=4", "bits")))
    finalize_(model)
    state = model.state_dict()
    for layer in report.layers:
        weight = state[layer.name]
        assert torch.unique(weight).numel() <= 2**layer.bits
        assert torch.equal(weight == 0, zeros[layer.name])
        assert 0 not in layer.codebook[1:] and layer.codebook[0] == 0.0
    model.eval()(make_input())


def test_centroid_gradient_is_the_sum_of_member_gradients() -> None:
    weight = torch.tensor([[0.0, 0.1, 0.12], [0.5, 0.9, 1.0]])
    shared = share_weights(weight, bits=2)
    assert shared.symbols.tolist() == [[0, 1, 1], [2, 3, 3]]
    sharing = WeightSharing(shared)
    upstream = torch.tensor([[5.0, 1.0, 2.0], [3.0, 4.0, 7.0]])
    (sharing(weight) * upstream).sum().backward()
    # by hand: centroid 1 <- 1 + 2, centroid 2 <- 3, centroid 3 <- 4 + 7; the zero feeds nothing
    assert sharing.centroids.grad.tolist() == [3.0, 3.0, 11.0]

    mean = WeightSharing(shared, gradient="mean")
    (mean(weight) * upstream).sum().backward()
    assert mean.centroids.grad.tolist() == [1.5, 3.0, 5.5]


def test_centroid_gradients_are_the_same_every_run() -> None:
    # Plain indexing's backward adds in parallel in a varying order: 8 runs gave 8 different sums.
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(1000, 3000, generator=generator)
    sharing = WeightSharing(share_weights(weight, bits=5))
    upstream = torch.randn(1000, 3000, generator=generator)
    gradients = set()
    for _ in range(4):
        sharing.centroids.grad = None
        (sharing(weight) * upstream).sum().backward()
        gradients.add(sharing.centroids.grad.numpy().tobytes())
    assert len(gradients) == 1
    symbols = sharing.symbols.long().reshape(-1)
    expected = torch.bincount(symbols, weights=upstream.reshape(-1).double(), minlength=32)[1:]
    assert torch.allclose(sharing.centroids.grad.double(), expected, rtol=1e-4, atol=1e-3)


def test_fine_tuning_moves_centroids_keeps_symbols_and_zeros() -> None:
    model = mlp()
    pruner = Pruner(PruneConfig(sparsity="fc=0.7")).attach(model)
    pruner.step()
    quantize_(model, QuantizeConfig(bits="fc=4"))
    module, attribute = find_parameter(model, "0.weight")
    sharing = module.parametrizations[attribute][0]
    before_codebook = sharing.codebook().detach().clone()
    before_symbols = sharing.symbols.clone()
    zeros = getattr(module, attribute) == 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    for _ in range(20):
        loss = (model(torch.randn(16, 64)) - 1).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(sharing.codebook().detach(), before_codebook)
    assert torch.equal(sharing.symbols, before_symbols)
    weight = getattr(module, attribute)
    assert torch.equal(weight == 0, zeros)
    assert torch.unique(weight).numel() <= 16
    finalize_(model)
    assert not any("parametrizations" in k for k in model.state_dict())


def test_quantized_model_survives_deepcopy_and_state_dict() -> None:
    model = R3D18Like()
    quantize_(model)
    clone = copy.deepcopy(model)
    x = torch.randn(1, 3, 4, 16, 16)
    model.eval(), clone.eval()
    assert torch.equal(model(x), clone(x))


def test_compression_rate_matches_the_paper_formula() -> None:
    report = quantize_(mlp((64, 32)), "fc=5")
    layer = report.layers[0]
    n = 64 * 32
    assert layer.compression_rate == pytest.approx(n * 32 / (n * 5 + 32 * 32))


def test_nan_weights_are_refused() -> None:
    model = mlp()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(InputError, match=r"0\.weight: weights contain NaN"):
        quantize_(model)


def test_config_round_trip_and_errors() -> None:
    config = QuantizeConfig(bits="conv=8,fc=5,fc.weight=off", init="density", gradient="mean")
    assert QuantizeConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="init 'best'"):
        QuantizeConfig(init="best")


@pytest.fixture()
def files(tmp_path):
    dense = tmp_path / "dense.safetensors"
    save_state_dict(R3D18Like().state_dict(), dense)
    pruned = tmp_path / "pruned.safetensors"
    assert CliRunner().invoke(main, ["prune", str(dense), "-o", str(pruned)]).exit_code == 0
    return dense, pruned


@pytest.mark.parametrize("which", [0, 1])
def test_cli_quantize_on_dense_and_pruned_files(files, tmp_path, which: int) -> None:
    source = files[which]
    out = tmp_path / "q.safetensors"
    result = CliRunner().invoke(
        main,
        ["quantize", str(source), "-o", str(out), "--bits", "conv=6,fc=4"],
    )
    assert result.exit_code == 0, result.output
    tensors, metadata = load_state_dict(out)
    original, _ = load_state_dict(source)
    layers = read_stages(metadata)["quantize"]["layers"]
    assert layers["fc.weight"]["bits"] == 4 and "codebook" not in layers["fc.weight"]  # the values are the codebook
    for name, info in layers.items():
        assert torch.unique(tensors[name]).numel() <= 2 ** info["bits"]
        assert torch.equal(tensors[name] == 0, original[name] == 0)
    assert ("prune" in read_stages(metadata)) == (which == 1)
    R3D18Like().load_state_dict(tensors)
    shown = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    assert shown.exit_code == 0
    listed = {layer["name"]: layer for layer in json.loads(shown.output)["layers"]}
    values = sorted(set(tensors["fc.weight"].reshape(-1).tolist()) - {0.0})
    assert listed["fc.weight"]["bits"] == 4 and listed["fc.weight"]["codebook"] == pytest.approx([0.0, *values])
    text = CliRunner().invoke(main, ["inspect", str(out), "--codebooks"]).output
    assert "fc.weight (4 bits): 0, " in text


def test_cli_quantize_plots_a_histogram_per_layer(files, tmp_path) -> None:
    out = tmp_path / "q.safetensors"
    args = ["quantize", str(files[1]), "-o", str(out), "--bits", "fc=4", "--plots", str(tmp_path / "p")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["fc.weight.png"]
    assert (tmp_path / "p" / "fc.weight.png").stat().st_size > 1000


@pytest.mark.parametrize("bits", ["conv=0", "conv=17", "conv=x"])
def test_cli_bad_bits(files, tmp_path, bits: str) -> None:
    result = CliRunner().invoke(
        main, ["quantize", str(files[0]), "-o", str(tmp_path / "q.safetensors"), "--bits", bits]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: bits") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "q.safetensors").exists()
