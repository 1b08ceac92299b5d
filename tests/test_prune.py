import copy
import itertools

import pytest
import torch
from models import MODELS, R3D18Like, any_model_rules, mlp
from torch import nn

from vidcompress.errors import ConfigError
from vidcompress.layers import module_layers
from vidcompress.prune import (
    AGPSchedule,
    ConstantSchedule,
    PruneConfig,
    Pruner,
    Schedule,
    StepSchedule,
    get_mask,
    layer_sparsity,
    magnitude_mask,
    parse_schedule,
    prune_,
    prune_state_dict,
    pruned_count,
)


@pytest.mark.parametrize("numel", [1, 7, 100, 1001])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.85, 0.9, 0.95])
def test_magnitude_mask_has_exact_sparsity(numel: int, sparsity: float) -> None:
    weight = torch.randn(numel)
    keep = magnitude_mask(weight, sparsity)
    assert int((~keep).sum()) == pruned_count(numel, sparsity)
    if (~keep).any() and keep.any():
        assert weight[~keep].abs().max() <= weight[keep].abs().min()


def test_ties_are_broken_deterministically_by_index() -> None:
    weight = torch.tensor([1.0, -1.0, 1.0, 2.0, 1.0])
    assert magnitude_mask(weight, 0.4).tolist() == [False, False, True, True, True]


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


def test_masks_hold_under_sgd_momentum_and_weight_decay() -> None:
    model = mlp()
    pruner = Pruner(PruneConfig(sparsity="fc=0.8")).attach(model)
    pruner.step()
    before = {n: getattr(*_owner(model, n)).detach().clone() for n in pruner.targets_}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for _ in range(50):
        loss = model(torch.randn(16, 64)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name in pruner.targets_:
        module, attribute = _owner(model, name)
        weight = getattr(module, attribute)
        keep = get_mask(module, attribute).mask
        assert torch.all(weight[~keep] == 0)
        assert torch.all(weight[keep] != before[name][keep])
    assert pruner.sparsity() == pytest.approx({n: 0.8 for n in pruner.targets_}, abs=1e-2)


def test_masks_survive_state_dict_deepcopy_and_finalize(tmp_path) -> None:
    model = R3D18Like()
    pruner = Pruner(PruneConfig(sparsity="conv=0.7,fc=0.5")).attach(model)
    pruner.step()
    clone = copy.deepcopy(model)
    x = torch.randn(1, 3, 4, 16, 16)
    model.eval(), clone.eval()
    assert torch.equal(model(x), clone(x))
    assert get_mask(*_owner(clone, "fc.weight")) is not None

    other = R3D18Like()
    Pruner(PruneConfig(sparsity="conv=0.7,fc=0.5")).attach(other).step()  # same structure, other masks
    other.load_state_dict(model.state_dict())
    other.eval()
    assert torch.equal(other(x), model(x))

    pruner.finalize()
    plain = R3D18Like().eval()
    plain.load_state_dict(model.state_dict())  # plain names again
    assert torch.equal(plain(x), model(x))
    assert layer_sparsity(plain)["fc.weight"] == pytest.approx(0.5, abs=0.05)


def test_step_schedule_matches_the_paper() -> None:
    schedule = StepSchedule()
    assert [schedule.sparsity_at(0.8, s) for s in range(10)] == [
        0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8
    ]  # fmt: skip
    assert schedule.steps_to_reach(0.8) == 8
    assert schedule.steps_to_reach(0.85) == 9
    assert schedule.sparsity_at(0.85, 9) == 0.85
    assert schedule.steps_to_reach(0.95) == 10


def test_agp_and_constant_schedules() -> None:
    agp = AGPSchedule(steps=10)
    values = [agp.sparsity_at(0.9, s) for s in range(12)]
    assert values[0] == 0.0 and values[10] == values[11] == 0.9
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[1] - values[0] > values[10] - values[9]  # fast first, slow at the end
    assert values[5] == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert ConstantSchedule().sparsity_at(0.9, 1) == 0.9


@pytest.mark.parametrize("schedule", [ConstantSchedule(), StepSchedule(0.05), AGPSchedule(7, 2)])
def test_configs_round_trip_through_json(schedule: Schedule) -> None:
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    config = PruneConfig(sparsity="conv=0.9,fc=0.95,layer4.*=0.8", schedule=schedule)
    assert PruneConfig.from_json(config.to_json()) == config


def test_parse_schedule_errors() -> None:
    assert parse_schedule("step:0.2") == StepSchedule(0.2)
    assert parse_schedule("agp:5") == AGPSchedule(5)
    with pytest.raises(ConfigError, match="schedule 'cubic'"):
        parse_schedule("cubic")
    with pytest.raises(ConfigError, match="increment"):
        StepSchedule(0.0)


def test_progressive_pruning_is_monotone() -> None:
    model = mlp()
    pruner = Pruner(PruneConfig(sparsity="fc=0.5", schedule=StepSchedule(0.1))).attach(model)
    previous = None
    for _ in range(6):
        pruner.step()
        keep = get_mask(*_owner(model, "0.weight")).mask.clone()
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
    assert get_mask(*_owner(model, "0.weight")) is None
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


def _owner(model: nn.Module, name: str):
    from vidcompress.layers import find_parameter

    return find_parameter(model, name)
