import pytest
import torch
from models import MODELS, R3D18Like, any_model_rules, mlp
from torch import nn

from vidcompress.errors import ConfigError
from vidcompress.layers import find_parameter, module_layers
from vidcompress.prune import (
    PruneConfig,
    Pruner,
    StepSchedule,
    get_mask,
    layer_sparsity,
    prune_,
    prune_state_dict,
    pruned_count,
)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_prune_gives_exact_sparsity_on_every_model(name: str) -> None:
    build, make_input = MODELS[name]
    model = build()
    targets = prune_(model, PruneConfig(sparsity=any_model_rules("conv=0.9,fc=0.95,emb=0.5")))
    measured = layer_sparsity(model)
    for layer in module_layers(model):
        expected = pruned_count(layer.numel, targets[layer.name]) / layer.numel
        assert measured[layer.name] == pytest.approx(expected, abs=1e-12)
    assert not any("parametrizations" in key for key in model.state_dict())
    model.eval()(make_input())


def test_progressive_pruning_is_monotone() -> None:
    model = mlp()
    pruner = Pruner(PruneConfig(sparsity="fc=0.5", schedule=StepSchedule(0.1))).attach(model)
    previous = None
    for _ in range(6):
        pruner.step()
        keep = get_mask(*find_parameter(model, "0.weight")).mask.clone()
        if previous is not None:
            assert not torch.any(keep & ~previous)  # nothing once pruned comes back
        previous = keep
    assert pruner.sparsity()["0.weight"] == pytest.approx(0.5)


def test_release_restarts_pruned_weights_from_zero() -> None:
    model = mlp()
    pruner = Pruner(PruneConfig(sparsity="fc=0.5")).attach(model)
    pruner.step()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 64)).sum().backward()
        optimizer.step()
    pruner.release()
    assert get_mask(*find_parameter(model, "0.weight")) is None
    assert layer_sparsity(model)["0.weight"] == pytest.approx(0.5)
    assert isinstance(model[0].weight, nn.Parameter)


def test_prune_state_dict_leaves_other_tensors() -> None:
    state = R3D18Like().state_dict()
    pruned, targets = prune_state_dict(state, "conv=0.9,fc.weight=off")
    assert "fc.weight" not in targets and torch.equal(pruned["fc.weight"], state["fc.weight"])
    assert torch.equal(pruned["bn1.running_mean"], state["bn1.running_mean"])
    assert float((pruned["conv1.weight"] == 0).float().mean()) == pytest.approx(0.9, abs=1e-3)
    assert not torch.signbit(pruned["conv1.weight"][pruned["conv1.weight"] == 0]).any()


def test_pruner_must_be_attached() -> None:
    with pytest.raises(ConfigError, match="attach"):
        Pruner().step()
