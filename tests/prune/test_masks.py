import copy

import pytest
import torch
from models import R3D18Like, mlp

from vidcompress.layers import find_parameter
from vidcompress.prune import (
    PruneConfig,
    Pruner,
    get_mask,
    layer_sparsity,
)


def test_masks_hold_under_sgd_momentum_and_weight_decay() -> None:
    model = mlp()
    pruner = Pruner(PruneConfig(sparsity="fc=0.8")).attach(model)
    pruner.step()
    before = {n: getattr(*find_parameter(model, n)).detach().clone() for n in pruner.targets_}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for _ in range(50):
        loss = model(torch.randn(16, 64)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name in pruner.targets_:
        module, attribute = find_parameter(model, name)
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
    assert get_mask(*find_parameter(clone, "fc.weight")) is not None

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
