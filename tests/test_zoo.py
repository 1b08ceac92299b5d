"""The architectures people compress, end to end: prune -> quantize -> one fine-tuning step -> finalize ->
encode -> decode -> load, and load_sparse. Built from `transformers` configurations with random
weights (nothing is downloaded) and from torch's own modules.

Each case asserts: only the selected weights changed (every other tensor is bit-identical), the
model's output equals that of a fresh model holding the decoded weights, tied tensors stay tied, and
load_sparse gives the dense output within 1e-5.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from vidcompress import PruneConfig, QuantizeConfig, finalize_, prune_, quantize_
from vidcompress.codec import decode, encode, load_compressed, read_container
from vidcompress.codec.container import unwrap_model
from vidcompress.errors import ConfigError
from vidcompress.kernels import load_sparse
from vidcompress.quantize import WeightSharing

transformers = pytest.importorskip("transformers")


def bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=97,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=40,
        attn_implementation="eager",
    )
    return transformers.BertModel(config)


def gpt2() -> nn.Module:
    config = transformers.GPT2Config(vocab_size=97, n_positions=40, n_embd=32, n_layer=2, n_head=2)
    config._attn_implementation = "eager"
    return transformers.GPT2LMHeadModel(config)


def vit() -> nn.Module:
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        num_labels=5,
    )
    config._attn_implementation = "eager"
    return transformers.ViTForImageClassification(config)


def separable_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16),  # depthwise, dilated
        nn.Conv2d(16, 24, 1),  # pointwise
        nn.BatchNorm2d(24),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 7),
    )


class AttentionModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(24, 3, batch_first=True)
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attention(x, x, x, need_weights=False)
        return self.head(out.mean(1))


class VideoLSTM(nn.Module):
    """A CNN-LSTM action model (LRCN's shape): a small CNN per frame, a two-layer bidirectional LSTM with
    a projection over the frames, a GRU cell on its last state, a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.lstm = nn.LSTM(32, 24, num_layers=2, bidirectional=True, proj_size=12, batch_first=True)
        self.cell = nn.GRUCell(24, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C, H, W)
        n, t = x.shape[:2]
        features, _ = self.lstm(self.frames(x.flatten(0, 1)).view(n, t, -1))
        return self.head(self.cell(features[:, -1]))


def _mlp_with(wrap: Callable[[nn.Linear], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), wrap(nn.Linear(30, 30)), nn.ReLU(), nn.Linear(30, 6))

    return build


@dataclass
class Case:
    build: Callable[[], nn.Module]
    make_input: Callable[[], object]
    sparsity: str
    bits: str
    output: Callable[[object], torch.Tensor] = lambda out: out  # type: ignore[assignment,return-value]


def _ids() -> torch.Tensor:
    return torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(1))


CASES = {
    "bert": Case(bert, _ids, "fc=0.5", "fc=6", lambda out: out.last_hidden_state),
    "gpt2": Case(gpt2, _ids, "fc=0.5,emb=0.3", "fc=6,emb=8", lambda out: out.logits),
    "vit": Case(vit, lambda: torch.randn(2, 3, 16, 16), "conv=0.5,fc=0.5", "conv=6,fc=6", lambda out: out.logits),
    "separable_cnn": Case(separable_cnn, lambda: torch.randn(2, 3, 12, 12), "conv=0.5,fc=0.5", "conv=6,fc=6"),
    "attention": Case(AttentionModel, lambda: torch.randn(2, 9, 24), "fc=0.5", "fc=6"),
    "video_lstm": Case(VideoLSTM, lambda: torch.randn(2, 4, 3, 8, 8), "conv=0.5,fc=0.5", "conv=6,fc=6"),
    "weight_norm_old": Case(
        _mlp_with(nn.utils.weight_norm), lambda: torch.randn(4, 20), "fc=0.5,2.weight=off", "fc=6,2.weight=off"
    ),
    "weight_norm_new": Case(
        _mlp_with(parametrizations.weight_norm), lambda: torch.randn(4, 20), "fc=0.5,2.weight=off", "fc=6,2.weight=off"
    ),
    "spectral_norm": Case(
        _mlp_with(parametrizations.spectral_norm),
        lambda: torch.randn(4, 20),
        "fc=0.5,2.weight=off",
        "fc=6,2.weight=off",
    ),
    "orthogonal": Case(
        _mlp_with(parametrizations.orthogonal), lambda: torch.randn(4, 20), "fc=0.5,2.weight=off", "fc=6,2.weight=off"
    ),
}


def _run(model: nn.Module, case: Case, x: object) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(x) if not isinstance(x, torch.Tensor) or x.dtype != torch.long else model(input_ids=x)
    return case.output(out)


def _fine_tune_centroids(model: nn.Module, case: Case, x: object) -> None:
    """One SGD step on the centroids only, so that every other tensor must stay bit-identical."""
    centroids = [m.centroids for m in model.modules() if isinstance(m, WeightSharing)]
    assert centroids
    optimizer = torch.optim.SGD(centroids, lr=1e-2)
    model.eval()  # no running statistics, power iterations or dropout: nothing but the centroids may move
    out = model(x) if not isinstance(x, torch.Tensor) or x.dtype != torch.long else model(input_ids=x)
    case.output(out).float().pow(2).mean().backward()
    optimizer.step()


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> bool:
    scale = max(float(expected.abs().max()), 1e-12)
    return float((actual - expected).abs().max()) <= rel * scale


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_end_to_end(name: str, tmp_path) -> None:
    case = CASES[name]
    torch.manual_seed(0)
    model = case.build().eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    x = case.make_input()
    targets = prune_(model, PruneConfig(sparsity=case.sparsity))
    report = quantize_(model, QuantizeConfig(bits=case.bits))
    quantized = {layer.name for layer in report.layers}
    assert set(targets) == quantized
    _fine_tune_centroids(model, case, x)
    finalize_(model)
    after = model.state_dict()
    assert set(after) == set(original)  # no key gained or lost: foreign parametrizations kept
    tied = {"lm_head.weight"} if name == "gpt2" else set()  # the embedding's other name
    for key, value in after.items():
        if key not in quantized | tied:
            assert torch.equal(value, original[key]), f"{key} changed but was not selected"
        else:
            assert not torch.equal(value, original[key])
            distinct = torch.unique(value[value != 0]).numel()
            assert distinct <= (255 if key.endswith(("wte.weight", "wpe.weight", "lm_head.weight")) else 63)
    expected = _run(model, case, x)

    path = tmp_path / "model.vcz"
    encode(model, path)
    decoded = decode(path)
    fresh = case.build()
    load_compressed(path, fresh)
    assert _close(_run(fresh, case, x), expected, rel=0)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, after[key]), key
    if name == "gpt2":
        assert fresh.lm_head.weight is fresh.transformer.wte.weight  # still tied after loading
        assert model.lm_head.weight is model.transformer.wte.weight
        assert sum("wte" in k or "lm_head" in k for k in decoded) == 2  # both names come back ...
        assert "lm_head.weight" not in {entry.name for entry in read_container(path).layers}  # stored once

    sparse = load_sparse(path, case.build())
    assert _close(_run(sparse, case, x), expected)
    choices = sparse.sparse_report_
    assert {choice.name for choice in choices} >= quantized - {"transformer.wte.weight"}
    # Every layer that can run sparse does (the default's probe decides by timing, which varies), and
    # code that reads a swapped layer's weight (ViT reads its patch projection's dtype) still works.
    forced = load_sparse(path, case.build(), mode="sparse")
    assert _close(_run(forced, case, x), expected)
    inner = unwrap_model(forced)
    for choice in forced.sparse_report_:
        if choice.mode == "sparse":
            assert torch.equal(inner.get_submodule(choice.name.rpartition(".")[0]).weight, decoded[choice.name])


@pytest.mark.parametrize("name", ["weight_norm_old", "weight_norm_new", "spectral_norm", "orthogonal"])
def test_selecting_a_foreign_parametrization_is_an_error_naming_the_layer(name: str) -> None:
    model = CASES[name].build()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match=r"2\.weight: (parametrized by|has torch\.nn\.utils\.weight_norm)"):
        prune_(model, "fc=0.5")
    with pytest.raises(ConfigError, match=r"2\.weight"):
        quantize_(model, "fc=6")
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("wrapper", ["data_parallel", "compile"])
def test_wrapped_models_encode_and_load_both_ways(wrapper: str, tmp_path) -> None:
    def wrap(model: nn.Module) -> nn.Module:
        return nn.DataParallel(model) if wrapper == "data_parallel" else torch.compile(model, backend="eager")

    torch.manual_seed(0)
    plain = _mlp_with(lambda linear: linear)()
    model = wrap(plain)
    prune_(model, "fc=0.5")
    quantize_(model, "fc=5")
    finalize_(model)
    encode(model, tmp_path / "m.vcz")
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in decode(tmp_path / "m.vcz"))
    x = torch.randn(3, 20)
    bare = load_compressed(tmp_path / "m.vcz", _mlp_with(lambda linear: linear)())
    assert torch.equal(bare(x), plain(x))
    rewrapped = load_compressed(tmp_path / "m.vcz", wrap(_mlp_with(lambda linear: linear)()))
    assert torch.equal(rewrapped(x), plain(x))


def test_tied_weights_share_one_mask_and_one_codebook() -> None:
    model = gpt2().eval()
    head, embedding = model.lm_head, model.transformer.wte
    prune_(model, "emb=0.5,fc=off")
    assert head.weight is embedding.weight
    assert float((head.weight == 0).float().mean()) == pytest.approx(0.5, abs=1e-3)

    from vidcompress.prune import PruneConfig, Pruner

    pruner = Pruner(PruneConfig(sparsity="emb=0.7,fc=off")).attach(model)
    pruner.step()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):  # gradients through the head must not revive the embedding's pruned weights
        model(input_ids=_ids()).logits.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(head.weight == 0, embedding.weight == 0)
    assert float((embedding.weight == 0).float().mean()) == pytest.approx(0.7, abs=1e-3)
    pruner.finalize()
    quantize_(model, "emb=4,fc=off")
    assert torch.equal(head.weight, embedding.weight)  # the head sees the shared values
    before = model(input_ids=_ids()).logits
    finalize_(model)
    assert head.weight is embedding.weight
    assert torch.equal(model(input_ids=_ids()).logits, before)  # nothing jumps at finalize_


def test_finalize_on_one_copy_leaves_a_deepcopy_working() -> None:
    model = _mlp_with(lambda linear: linear)()
    from vidcompress.prune import Pruner

    pruner = Pruner(PruneConfig(sparsity="fc=0.5")).attach(model)
    pruner.step()
    twin = copy.deepcopy(model)
    pruner.finalize()
    x = torch.randn(2, 20)
    assert torch.equal(twin(x), model(x))  # the copy still has its masks and still runs
    finalize_(twin)
    assert torch.equal(twin(x), model(x))
    quantize_(model, "fc=5")
    twin = copy.deepcopy(model)
    finalize_(model)
    assert torch.equal(twin(x), model(x))
    finalize_(twin)
    assert torch.equal(twin(x), model(x))


# Calibrated compression over the zoo: the layers its hooks can see (Linear, Conv1D, ConvNd) take the
# calibrated solver; attention and recurrent weights take the data-free method, which calibrate_ runs too.
CALIBRATION_RULES = {"gpt2": ("fc=0.5", "fc=6")}  # the embedding (tied to lm_head) is not a hooked layer
DATA_FREE = {"video_lstm": "lstm.weight_ih_l0"}  # recurrent matrices: refused, or data-free when asked


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_calibrate_encode_load(name: str, tmp_path) -> None:
    from vidcompress.calibrate import CalibrateConfig, calibrate_

    case = CASES[name]
    torch.manual_seed(0)
    model = case.build().eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = [case.make_input(), case.make_input()]
    ids = isinstance(inputs[0], torch.Tensor) and inputs[0].dtype == torch.long
    forward = (lambda m, batch: m(input_ids=batch)) if ids else None
    sparsity, bits = CALIBRATION_RULES.get(name, (case.sparsity, case.bits))
    unseen = "error"
    if name in DATA_FREE:
        with pytest.raises(ConfigError, match=DATA_FREE[name].replace(".", r"\.")):
            calibrate_(model, inputs, sparsity=sparsity, bits=bits, forward=forward)
        unseen = "magnitude"
    config = CalibrateConfig(sparsity=sparsity, bits=bits, unseen=unseen)
    report = calibrate_(model, inputs, config, forward=forward)
    selected = {layer.name for layer in report.layers}
    after = model.state_dict()
    tied = {"lm_head.weight"} if name == "gpt2" else set()
    for key, value in after.items():
        if key in selected:
            assert torch.unique(value[value != 0]).numel() <= 63, key
        elif key not in tied:
            assert torch.equal(value, original[key]), f"{key} changed but was not selected"
    solved = [layer for layer in report.layers if layer.solver == "sparsegpt"]
    assert solved and all(0 <= layer.error < 1 for layer in solved), report.to_markdown()
    assert all(layer.name.startswith("lstm.") or layer.name.startswith("cell.") for layer in report.layers
               if layer.solver == "magnitude"), report.to_markdown()  # fmt: skip
    path = tmp_path / "model.vcz"
    encode(model, path)
    fresh = load_compressed(path, case.build())
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, after[key]), key
    assert _close(_run(fresh, case, inputs[0]), _run(model, case, inputs[0]), rel=0)
