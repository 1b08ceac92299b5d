"""Which tensors of a model are compressible, of which kind, and where they live.

A compressible weight is what a user would call one: the `weight` of a Linear, ConvNd,
ConvTransposeNd, Embedding or EmbeddingBag, of Hugging Face's `Conv1D` (GPT-2's projections), the
input projections of `nn.MultiheadAttention` (its output projection is a Linear), and the input,
hidden and projection matrices of recurrent layers (`weight_ih_l0`, `weight_hh_l0`, `weight_hr_l0`,
their `_reverse` twins; a cell's `weight_ih`, `weight_hh`) of nn.RNN, nn.LSTM, nn.GRU and their cells.
Kinds: `conv` (any convolution), `fc` (Linear, Conv1D, attention projections, recurrent matrices) and
`emb` (embeddings). A module of a type vidcompress does not know (a user's own layer, nn.Bilinear) has
its parameters judged as in a file (below), so a model and its state-dict file give the same layers.
Biases, norms, buffers, masks and every other tensor are never touched. A lazy module that has not yet
run (its parameters have no shape) is an error naming it.

In a module the weight is found through parametrizations: vidcompress's own (pruning masks, weight
sharing) are looked through; a foreign one (spectral_norm, orthogonal, weight_norm of either style, a
user's own) marks the weight `refused`: rules that select it are an error naming the layer, because
compressing its stored tensor would change what the layer computes. Tied weights (one Parameter
reached from several modules, e.g. an embedding shared with the output layer) are one layer, under
the first name, with every place it is used listed in `weight_sites`.

In a bare state-dict file modules are unknown, so names and shapes decide, conservatively: a
floating-point tensor of 2+ dimensions whose name ends in `weight` (`.weight`, `_proj_weight`) or
is a recurrent matrix's (`.weight_ih_l0`, `.weight_hh`, ...); `emb` when its module's name says
embedding (`wte`, `embed_tokens`, `word_embeddings`, ...).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.nn.utils import parametrize

from vidcompress.errors import ConfigError


class LayerKind(enum.StrEnum):
    """The kinds of compressible weight; each kind has its own default settings."""

    CONV = "conv"
    FC = "fc"
    EMB = "emb"


@dataclass(frozen=True)
class LayerInfo:
    """One compressible weight: its state-dict name, kind and shape.

    `refused` says why it must not be compressed (a foreign parametrization), or is None.
    """

    name: str
    kind: LayerKind
    shape: tuple[int, ...]
    refused: str | None = None

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_RECURRENT_WEIGHT = re.compile(r"^weight_(ih|hh|hr)(_l\d+(_reverse)?)?$")
_EMBEDDING_NAME = re.compile(r"(^|[._])(wte|wpe|shared|emb|embed\w*|\w*embeddings?)$")


def module_kind(module: nn.Module) -> LayerKind | None:
    """The kind of the weights `module` holds, or None when it holds no compressible weight."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return LayerKind.CONV
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return LayerKind.EMB
    if isinstance(module, nn.Linear | nn.MultiheadAttention | nn.RNNBase | nn.RNNCellBase) or is_hf_conv1d(module):
        return LayerKind.FC
    return None


def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's `Conv1D` (GPT-2): a Linear whose weight is stored transposed, (in, out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def weight_attributes(module: nn.Module) -> tuple[str, ...]:
    """The attributes of `module` that hold its compressible weights (`weight` for most layers)."""
    if isinstance(module, nn.MultiheadAttention):
        return _ATTENTION_WEIGHTS
    if isinstance(module, nn.RNNBase):  # weight_ih_l0, weight_hh_l0, (LSTM's projection) weight_hr_l0, ...
        return tuple(name for name in module._flat_weights_names if name.startswith("weight_"))
    if isinstance(module, nn.RNNCellBase):
        return ("weight_ih", "weight_hh")
    return ("weight",)


def is_own_parametrization(item: nn.Module) -> bool:
    """True for the parametrizations vidcompress adds (pruning masks, weight sharing)."""
    return bool(getattr(item, "vidcompress_parametrization", False))


def _underlying(module: nn.Module, attribute: str) -> tuple[int, torch.Tensor, str | None] | None:
    """(identity of the stored tensor, the weight as the module sees it, why it is refused) or None."""
    if parametrize.is_parametrized(module, attribute):
        # The stored tensor stands in for the weight's shape and dtype: computing the weight could run
        # a parametrization with side effects (spectral_norm's power iteration updates its buffers).
        chain = module.parametrizations[attribute]  # type: ignore[index,union-attr]
        stored = chain.original if hasattr(chain, "original") else chain.original0  # type: ignore[union-attr]
        foreign = [type(item).__name__ for item in chain if not is_own_parametrization(item)]
        if foreign:
            return id(chain), stored, f"parametrized by {', '.join(foreign)}"  # type: ignore[return-value]
        return id(stored), stored, None  # type: ignore[return-value]
    parameter = module._parameters.get(attribute)
    if parameter is not None:
        return id(parameter), parameter, None
    magnitude, direction = module._parameters.get(f"{attribute}_g"), module._parameters.get(f"{attribute}_v")
    if magnitude is not None and direction is not None:  # torch.nn.utils.weight_norm (the old, hook-based one)
        return id(direction), direction, f"has torch.nn.utils.weight_norm ({attribute}_g, {attribute}_v)"
    return None


@dataclass(frozen=True)
class WeightSite:
    """One place a weight is used: `getattr(module, attribute)`."""

    module: nn.Module
    attribute: str


def _candidate_attributes(module: nn.Module, kind: LayerKind | None) -> tuple[str, ...]:
    """The attributes to look at: a known layer's weights, or every parameter of a module vidcompress
    does not know (judged below as in a file, by name and shape)."""
    if kind is not None:
        return weight_attributes(module)
    parametrized = module.parametrizations.keys() if parametrize.is_parametrized(module) else ()  # type: ignore[union-attr,operator]
    return tuple(dict.fromkeys(["weight", *module._parameters, *parametrized]))


def _collect(model: nn.Module) -> tuple[list[LayerInfo], dict[str, list[WeightSite]]]:
    layers: list[LayerInfo] = []
    sites: dict[str, list[WeightSite]] = {}
    first_name: dict[int, str] = {}
    lazy: list[str] = []
    for module_name, module in model.named_modules(remove_duplicate=False):
        if ".parametrizations." in f".{module_name}.":
            continue
        known = module_kind(module)
        prefix = f"{module_name}." if module_name else ""
        for attribute in _candidate_attributes(module, known):
            found = _underlying(module, attribute)
            if found is None:
                continue
            key, tensor, refused = found
            if is_lazy(tensor):
                lazy.append(f"{prefix}{attribute} ({type(module).__name__})")
                continue
            kind = known if known is not None else state_dict_kind(prefix + attribute, tensor)
            if kind is None or not tensor.is_floating_point() or tensor.ndim < 2:
                continue
            if key in first_name:  # tied: the same stored tensor, reached again
                sites[first_name[key]].append(WeightSite(module, attribute))
                continue
            name = prefix + attribute
            first_name[key] = name
            sites[name] = [WeightSite(module, attribute)]
            layers.append(LayerInfo(name, kind, tuple(tensor.shape), refused))
    if lazy:
        more = (
            f" (and {len(lazy) - 1} more: {', '.join(lazy[1:4])}{', ...' if len(lazy) > 4 else ''})"
            if len(lazy) > 1
            else ""
        )
        raise ConfigError(
            f"{lazy[0]}: not initialized yet (a lazy module has no shape before its first forward pass); "
            f"run the model once on an example input, then compress{more}"
        )
    return layers, sites


def module_layers(model: nn.Module, include_refused: bool = True) -> list[LayerInfo]:
    """The compressible weights of a module, under their plain state-dict names, tied ones once."""
    layers = _collect(model)[0]
    return layers if include_refused else [layer for layer in layers if layer.refused is None]


def weight_sites(model: nn.Module) -> dict[str, list[WeightSite]]:
    """Layer name -> every (module, attribute) that uses that weight (more than one when tied)."""
    return _collect(model)[1]


def find_parameter(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Return the module that owns the parameter `name` and the attribute under which it lives."""
    module_name, _, attribute = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return module, attribute


def state_dict_kind(name: str, tensor: torch.Tensor) -> LayerKind | None:
    """The kind of a state-dict entry judged by its name and shape, or None when it is not a weight."""
    if not tensor.is_floating_point() or tensor.ndim < 2:
        return None
    module_name, _, attribute = name.rpartition(".")
    if ".parametrizations." in f".{name}":
        return None  # a parametrization's stored tensor: what it stands for is unknown in a file
    if attribute != "weight" and not attribute.endswith("_proj_weight") and not _RECURRENT_WEIGHT.match(attribute):
        return None
    if tensor.ndim >= 3:
        return LayerKind.CONV
    return LayerKind.EMB if _EMBEDDING_NAME.search(module_name) else LayerKind.FC


def state_dict_layers(tensors: Mapping[str, torch.Tensor]) -> list[LayerInfo]:
    """The compressible tensors of a state dict, in its order (see the module's docstring)."""
    layers = []
    for name, tensor in tensors.items():
        kind = state_dict_kind(name, tensor)
        if kind is not None:
            layers.append(LayerInfo(name, kind, tuple(tensor.shape)))
    return layers


def why_not_compressible(name: str, tensor: torch.Tensor) -> str:
    """For `inspect`: why a state-dict entry is left alone."""
    if not tensor.is_floating_point():
        return "not floating-point"
    if tensor.ndim < 2:
        return "fewer than 2 dimensions"
    if ".parametrizations." in f".{name}":
        return "a parametrization's stored tensor"
    if name.endswith(("_g", "_v")):
        return "weight_norm magnitude or direction"
    return "not named as a weight"
