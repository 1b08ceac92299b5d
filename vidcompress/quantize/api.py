"""`quantize_(model, config)` and `quantize_state_dict`: per-layer k-means weight sharing."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from vidcompress.attach import attach, bake_all, own_items
from vidcompress.config import Config
from vidcompress.errors import ConfigError, check_module, check_weights
from vidcompress.layers import LayerInfo, module_layers, state_dict_layers, weight_sites
from vidcompress.progress import progress as progress_lines
from vidcompress.prune.masks import remove_mask
from vidcompress.quantize.kmeans import INITS
from vidcompress.quantize.scalar import METHODS
from vidcompress.quantize.sharing import SharedWeights, WeightSharing, share_weights
from vidcompress.report import markdown_table
from vidcompress.rules import BITS, LayerRules, RulesSource

# Safe without fine-tuning: 255 shared values per layer; embeddings untouched. T-C3D's (with centroid
# fine-tuning) is PAPER_BITS.
DEFAULT_BITS = "conv=8,fc=8"
PAPER_BITS = "conv=8,fc=5"


@dataclass(frozen=True, init=False)
class QuantizeConfig(Config):
    """Per-layer bits and how the codebooks are found and trained.

    Args:
        bits: rules such as `conv=8,fc=5,fc.weight=4` (`off` leaves a layer in full precision).
            Default: `DEFAULT_BITS`, whose kind rules may name kinds a model lacks.
        method: the quantizer: "kmeans" (Deep Compression's), "uniform" (equal-width cells, each level
            its cell's mean) or "ecsq" (entropy-constrained: fewer coded bits at a given error; see
            `vidcompress.quantize.scalar`). Each gives at most 2^b - 1 levels plus zero.
        lagrangian: ECSQ's lambda, relative to each layer's weight variance (0: plain k-means; larger
            values trade error for fewer coded bits; 0.01-0.05 is a useful range).
        init: centroid initialisation: linear (the paper's), density, random, k-means++.
        max_iter: cap on k-means iterations (it stops earlier at a fixed point).
        gradient: "sum" (the paper's: a centroid gets the sum of its members' gradients) or "mean".
        seed: for the random initialisations.
    """

    VERSION = 2  # 2: method, lagrangian

    bits: LayerRules
    method: str
    lagrangian: float
    init: str
    max_iter: int
    gradient: str
    seed: int

    def __init__(
        self,
        *,
        bits: RulesSource | None = None,
        method: str = "kmeans",
        lagrangian: float = 0.0,
        init: str = "linear",
        max_iter: int = 300,
        gradient: str = "sum",
        seed: int = 0,
    ) -> None:
        rules = LayerRules.parse(DEFAULT_BITS, BITS, default=True) if bits is None else LayerRules.parse(bits, BITS)
        if method not in METHODS:
            raise ConfigError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        if isinstance(lagrangian, bool) or not isinstance(lagrangian, int | float) or not 0 <= lagrangian < math.inf:
            raise ConfigError(f"lagrangian {lagrangian!r}: must be a finite number of at least 0")
        if lagrangian and method != "ecsq":
            raise ConfigError(f"lagrangian {lagrangian!r} is ECSQ's; method {method!r} does not take it")
        if init not in INITS:
            raise ConfigError(f"init {init!r}: expected one of {', '.join(INITS)}")
        if gradient not in ("sum", "mean"):
            raise ConfigError(f"gradient {gradient!r}: expected 'sum' or 'mean'")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError(f"max_iter {max_iter!r}: must be an integer of at least 1")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed {seed!r}: must be an integer")
        self._set(
            bits=rules, method=method, lagrangian=float(lagrangian), init=init, max_iter=max_iter, gradient=gradient,
            seed=seed,
        )  # fmt: skip


@dataclass
class LayerQuantization:
    """What weight sharing did to one layer."""

    name: str
    kind: str
    bits: int
    parameters: int
    nonzeros: int
    clusters: int  # centroids in use, zero excluded
    sse: float
    codebook: list[float]  # 2^bits entries; entry 0 is zero

    @property
    def compression_rate(self) -> float:
        """Deep Compression's r = n b / (n log2 k + k b), with b = 32 and k = 2^bits."""
        n, b, k = self.parameters, 32, 1 << self.bits
        return n * b / (n * math.log2(k) + k * b)


@dataclass
class QuantizeReport:
    layers: list[LayerQuantization]

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [{**asdict(layer), "compression_rate": layer.compression_rate} for layer in self.layers]}

    def to_markdown(self) -> str:
        rows = [
            [
                layer.name,
                layer.kind,
                layer.bits,
                layer.clusters,
                f"{layer.nonzeros:,}",
                f"{layer.sse:.4g}",
                f"{layer.compression_rate:.2f}",
            ]
            for layer in self.layers
        ]
        table = markdown_table(["layer", "kind", "bits", "k used", "nonzeros", "SSE", "rate r"], rows)
        return (
            f"{table}\n\nk used: distinct nonzero levels; SSE: squared error against the original weights; "
            "rate r: Deep Compression's n*32 / (n*bits + 2^bits*32), fp32 weights against bits-wide symbols "
            "plus the codebook (before pruning and entropy coding)."
        )


def _layer_record(layer: LayerInfo, shared: SharedWeights, weight: torch.Tensor) -> LayerQuantization:
    return LayerQuantization(
        name=layer.name,
        kind=layer.kind.value,
        bits=shared.bits,
        parameters=weight.numel(),
        nonzeros=int(torch.count_nonzero(weight)),
        clusters=shared.clusters,
        sse=shared.sse,
        codebook=[float(c) for c in shared.codebook.float()],
    )


def quantize_(
    model: nn.Module,
    config: QuantizeConfig | str | None = None,
    *,
    importance: Mapping[str, torch.Tensor] | None = None,
) -> QuantizeReport:
    """Replace each selected weight of `model` by shared weights, in place; returns the report.

    Pruning masks are baked in first (their zeros become symbol 0 and stay zero). Centroids are
    `nn.Parameter`s: train the model as usual to fine-tune them, then `finalize_(model)`.
    `importance`: per-weight weights of the squared error by layer name (`estimate_importance`); a
    layer it does not name gets plain squared error.
    """
    if isinstance(config, str):
        config = QuantizeConfig(bits=config)
    if config is None:
        warnings.warn(
            f"quantize_: no bits given; using {DEFAULT_BITS} (embeddings untouched). T-C3D's is {PAPER_BITS!r}",
            UserWarning,
            stacklevel=2,
        )
    check_module(model, "model")
    config = config or QuantizeConfig()
    found = module_layers(model)
    plan = config.bits.resolve(found)
    layers = [layer for layer in found if layer.name in plan]
    sites = weight_sites(model)
    # Every layer is shared before any is attached: a refused layer (NaN, already quantized) leaves the
    # model as it was. The weight read through a pruning mask is the masked one.
    shared_layers = []
    for layer in layers:
        first = sites[layer.name][0]
        if any(isinstance(item, WeightSharing) for item in own_items(first.module, first.attribute)):
            raise ConfigError(f"{layer.name}: already quantized; finalize_(model) first")
        weight = getattr(first.module, first.attribute).detach()
        shared_layers.append((layer, weight, _share(weight, plan[layer.name], config, layer.name, importance)))
    records = []
    for layer, weight, shared in shared_layers:
        remove_mask(sites[layer.name])  # the mask's zeros are baked in: symbol 0, and they stay zero
        attach(sites[layer.name], WeightSharing(shared, config.gradient))  # tied uses share one codebook
        records.append(_layer_record(layer, shared, weight))
    return QuantizeReport(records)


def _share(
    weight: torch.Tensor, bits: int, config: QuantizeConfig, name: str, importance: Mapping[str, torch.Tensor] | None
) -> SharedWeights:
    return share_weights(
        weight, bits, config.init, config.max_iter, config.seed, name, method=config.method,
        lagrangian=config.lagrangian, importance=None if importance is None else importance.get(name),
    )  # fmt: skip


def finalize_(model: nn.Module) -> nn.Module:
    """Bake vidcompress's parametrizations (masks, weight sharing) into plain parameters.

    Other parametrizations (spectral_norm, orthogonal, weight_norm, a user's own) are left as they are.
    """
    bake_all(model)
    return model


def quantize_state_dict(
    tensors: Mapping[str, torch.Tensor],
    config: QuantizeConfig | str | None = None,
    *,
    progress: bool = False,
    inplace: bool = False,
    importance: Mapping[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], QuantizeReport]:
    """Weight sharing on a state dict (no fine-tuning): each selected tensor gets <= 2^b values.

    `config`: a QuantizeConfig or bits rules (`conv=8,fc=5`); None: the library default, `DEFAULT_BITS`.
    `inplace=True` replaces the quantized tensors in `tensors` itself (a dict): one copy in memory.
    `importance`: as for `quantize_`.
    """
    check_weights(tensors, "tensors")
    config = QuantizeConfig(bits=config) if isinstance(config, str) else config or QuantizeConfig()
    layers = state_dict_layers(tensors)
    plan = config.bits.resolve(layers)
    result = tensors if inplace and isinstance(tensors, dict) else dict(tensors)
    records = []
    for layer in progress_lines([layer for layer in layers if layer.name in plan], "quantize", "layer", progress):
        weight = tensors[layer.name]
        shared = _share(weight, plan[layer.name], config, layer.name, importance)
        result[layer.name] = shared.weight()
        records.append(_layer_record(layer, shared, weight))
    return result, QuantizeReport(records)
