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


def _recurrent() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict(
        {"lstm": nn.LSTM(6, 5, num_layers=2, bidirectional=True, proj_size=3), "gru": nn.GRUCell(6, 4)}
    )


def test_recurrent_matrices_are_fc_in_modules_and_in_files() -> None:
    model = _recurrent()
    found = {layer.name: layer.kind for layer in module_layers(model)}
    lstm = [f"lstm.weight_{kind}_l{n}{rev}" for n in (0, 1) for rev in ("", "_reverse") for kind in ("ih", "hh", "hr")]
    assert found == {**dict.fromkeys(lstm, "fc"), "gru.weight_ih": "fc", "gru.weight_hh": "fc"}
    assert [layer.name for layer in state_dict_layers(model.state_dict())] == [
        layer.name for layer in module_layers(model)
    ]


def test_recurrent_layers_compute_with_their_masks_and_shared_values() -> None:
    """torch's RNNs read cached flat weights: the pruned and shared weights must be what forward uses,
    before finalize_, and the centroids must get gradients through them."""
    from vidcompress import finalize_, prune_, quantize_
    from vidcompress.quantize import WeightSharing

    model = _recurrent()
    # (a hidden state for the cell, or weight_hh's gradient is zero)
    x, h, state = torch.randn(7, 2, 6), torch.randn(2, 6), torch.randn(2, 4)
    prune_(model, "fc=0.6")
    quantize_(model, "fc=4")
    plain = _recurrent()
    with torch.no_grad():
        for name, value in plain.named_parameters():
            module, _, attribute = name.rpartition(".")
            value.copy_(getattr(model[module], attribute))  # masked and shared, as computed
    weight = model["lstm"].weight_ih_l1_reverse
    assert float((weight == 0).float().mean()) >= 0.55 and torch.unique(weight).numel() <= 16
    assert torch.equal(model["lstm"](x)[0], plain["lstm"](x)[0])
    assert torch.equal(model["gru"](h, state), plain["gru"](h, state))
    (model["lstm"](x)[0].sum() + model["gru"](h, state).sum()).backward()
    sharing = [m for m in model.modules() if isinstance(m, WeightSharing)]
    assert len(sharing) == 14 and all(
        m.centroids.grad is not None and m.centroids.grad.abs().sum() > 0 for m in sharing
    )
    order = list(plain.state_dict())
    finalize_(model)
    assert list(model.state_dict()) == order  # the module's own order comes back (weights before biases)
    assert torch.equal(model["lstm"](x)[0], plain["lstm"](x)[0])


def test_load_sparse_says_why_recurrent_layers_stay_dense(tmp_path) -> None:
    from vidcompress import encode, finalize_, load_sparse, prune_, quantize_

    model = _recurrent()
    prune_(model, "fc=0.5")
    quantize_(model, "fc=5")
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    report = load_sparse(tmp_path / "m.vcz", _recurrent(), mode="sparse").sparse_report_
    reasons = {choice.name: (choice.mode, choice.reason) for choice in report}
    assert reasons["lstm.weight_hr_l1_reverse"] == ("dense", "recurrent layer (LSTM): runs dense")
    assert reasons["gru.weight_hh"] == ("dense", "recurrent layer (GRUCell): runs dense")


class _OwnLinear(nn.Module):
    """A user's own layer: vidcompress does not know its type."""

    def __init__(self, features_in: int, features_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features_out, features_in))
        self.bias = nn.Parameter(torch.zeros(features_out))
        self.scale = nn.Parameter(torch.ones(features_out, 1))  # 2-D, but not a weight by its name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.scale, self.bias)


def test_unknown_modules_are_judged_as_in_a_file_so_both_give_the_same_layers(tmp_path) -> None:
    from vidcompress import encode, finalize_, load_compressed, prune_, quantize_

    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(_OwnLinear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    model = build()
    layers = module_layers(model)
    assert [(layer.name, layer.kind) for layer in layers] == [("0.weight", "fc"), ("2.weight", "fc")]
    assert [layer.name for layer in state_dict_layers(model.state_dict())] == ["0.weight", "2.weight"]
    prune_(model, "fc=0.5")  # the user's layer is pruned too, not skipped without a word
    quantize_(model, "fc=4")
    finalize_(model)
    assert float((model[0].weight == 0).float().mean()) == 0.5
    assert torch.equal(model[0].scale, torch.ones(8, 1))
    encode(model, tmp_path / "own.vcz")
    decoded = load_compressed(tmp_path / "own.vcz", build())
    x = torch.randn(4, 6)
    assert torch.equal(decoded(x), model(x))


def test_a_lazy_module_that_has_not_run_is_an_error_naming_it() -> None:
    from vidcompress import prune_
    from vidcompress.errors import ConfigError

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ConfigError, match=r"^2\.weight \(LazyLinear\): not initialized yet .* run the model once"):
        prune_(model, "conv=0.5,fc=0.5")
    assert float((model[0].weight == 0).float().mean()) == 0.0  # nothing was changed
    model(torch.randn(1, 3, 6, 6))  # after one forward pass it has its shape
    assert prune_(model, "conv=0.5,fc=0.5") == {"0.weight": 0.5, "2.weight": 0.5}
