import pytest
import torch
from models import MODELS, EmbeddingClassifier, R3D18Like, mlp
from torch import nn

from vidcompress.layers import LayerKind, module_layers, state_dict_layers
from vidcompress.prune import PruneConfig, Pruner


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_compressible_layers_and_no_1d(name: str) -> None:
    model = MODELS[name][0]()
    layers = module_layers(model)
    assert layers
    params = dict(model.named_parameters())
    for layer in layers:
        assert params[layer.name].ndim >= 2
        owner = model.get_submodule(layer.name.rpartition(".")[0])
        expected = LayerKind.EMB if isinstance(owner, nn.Embedding) else LayerKind.FC
        assert layer.kind == (LayerKind.CONV if params[layer.name].ndim >= 3 else expected)
    names = {layer.name for layer in layers}
    assert not any(n.endswith("bias") for n in names)
    assert [layer.name for layer in state_dict_layers(model.state_dict())] == [layer.name for layer in layers]


def test_embedding_is_emb_and_conv1d_is_conv() -> None:
    kinds = {layer.name: layer.kind for layer in module_layers(EmbeddingClassifier())}
    assert kinds == {"embedding.weight": "emb", "conv.weight": "conv", "head.weight": "fc"}
    tensors = EmbeddingClassifier().state_dict()
    assert {layer.name: layer.kind for layer in state_dict_layers(tensors)} == kinds


def test_buffers_are_never_compressible() -> None:
    model = mlp()
    model.register_buffer("table", torch.ones(3, 3))
    assert "table" not in {layer.name for layer in module_layers(model)}


def test_tied_weights_are_listed_once() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    assert [layer.name for layer in module_layers(model)] == ["0.weight"]


def test_parametrized_layers_keep_plain_names() -> None:
    model = R3D18Like()
    before = [layer.name for layer in module_layers(model)]
    Pruner(PruneConfig(sparsity="conv=0.5,fc=0.5")).attach(model).step()
    assert [layer.name for layer in module_layers(model)] == before
