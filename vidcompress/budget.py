"""Compress to a size budget: per-layer sparsity and bits chosen so that the container meets a target size
with the least estimated damage.

For every compressible layer, a grid of candidates (magnitude-pruning sparsity x quantizer bits) is
evaluated: the layer is pruned and quantized (k-means, uniform or ECSQ levels, `vidcompress.quantize`),
its coded size is computed exactly from the symbol frequencies (the same Huffman code lengths, filler
entries, layout choice and codebook the encoder will write), and its damage is estimated:

- data-free: the relative squared error ||W - Q(W)||^2 / ||W||^2 (one over the layer's SQNR), summed
  over layers;
- with importance (`estimate_importance`: squared gradients on calibration batches): the importance-
  weighted squared error, sum h (w - q)^2, a second-order estimate of the loss increase;
- with calibration inputs (`compress_to_budget(..., calibration=...)`, `vidcompress.calibrate.budget`):
  the measured output error tr((W - Q) H (W - Q)^T) / tr(W H W^T) of each candidate, summed over layers,
  and the written weights are the calibrated solver's.

The choice is a multiple-choice knapsack, solved twice, the lower damage kept: by a Lagrangian sweep
(each layer takes the candidate minimising damage + mu x bytes; mu bisected to the largest total under
the budget) and by dynamic programming over the budget in whole parts; each answer then spends what it
left in a greedy pass on the upgrades with the best damage saved per byte. The container's fixed
costs (header, manifest, tensors left uncompressed) come from encoding a cheap stand-in with the same
names and shapes; the file is then written and, if it still overshoots, planned again with the
overshoot taken off. The written file never exceeds the budget: `compress_to_budget` raises otherwise.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidcompress.codec import EncodeConfig, encode
from vidcompress.codec.config import DEFAULT_INDEX_BITS
from vidcompress.codec.container import Container, tied_names, unwrap_model
from vidcompress.codec.huffman import groups_for
from vidcompress.codec.layer import choose_index_bits, coded_bytes, frequency_bytes
from vidcompress.codec.relative_index import column_major, relative_index_encode, relative_index_positions, walk
from vidcompress.config import Config
from vidcompress.errors import ConfigError, InputError, check_path, check_weights
from vidcompress.layers import LayerInfo, state_dict_layers
from vidcompress.progress import progress as progress_lines
from vidcompress.prune.magnitude import magnitude_mask
from vidcompress.quantize.kmeans import INITS
from vidcompress.quantize.scalar import METHODS, Levels, fit_levels
from vidcompress.report import markdown_table
from vidcompress.rules import INDEX_BITS, LayerRules, RulesSource

DEFAULT_SPARSITIES = (0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
DEFAULT_BUDGET_BITS = (2, 3, 4, 5, 6, 7, 8)
# Uniform and ECSQ fit any level count cheaply; half-bit steps let each layer sit between two widths
# instead of the whole model time-sharing between them (benchmarks/results/budget_half_bits.md).
DEFAULT_FINE_BITS = tuple(b / 2 for b in range(4, 17))
COMPRESSED_KINDS = ("conv", "fc")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")
MAX_PLANS = 3  # plan, write, and plan again with the overshoot taken off, at most this many times
# A layer's own damage measure: the candidate's weights (flat, float64, the layer's order) -> its damage.
Damage = Callable[[np.ndarray], float]


def levels_for(bits: float) -> int:
    """The most nonzero levels a quantizer of `bits` bits fits: 2^b - 1 for whole bits; for a
    fractional b the odd count nearest 2^b - 1 (odd, so that a symmetric uniform grid keeps a level at
    the middle), within what `codebook_bits(b)` holds."""
    if float(bits).is_integer():
        return (1 << int(bits)) - 1
    odd = 2 * round((2.0**bits - 2) / 2) + 1
    return max(1, min(odd, (1 << codebook_bits(bits)) - 1))


def codebook_bits(bits: float) -> int:
    """The container's codebook width for a quantizer of `bits` bits."""
    return math.ceil(bits)


def parse_size(text: str | int | float) -> int:
    """A size in bytes from `5MB`, `4.4 MB`, `800kB`, `2MiB` or a plain number of bytes (decimal units
    are powers of 1000, the `i` units of 1024)."""
    if isinstance(text, bool):
        raise ConfigError(f"size {text!r}: not a size (examples: 5MB, 800kB, 2MiB, 123456)")
    if isinstance(text, int | float):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ConfigError(f"size {text!r}: not a size (examples: 5MB, 800kB, 2MiB, 123456)")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = value * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise ConfigError(f"size {text!r}: must be at least 1 byte")
    return int(size)


@dataclass(frozen=True)
class Target:
    """What the user asks for: a file size, a ratio to the fp32 file, or bits per parameter."""

    kind: str  # "size", "ratio" or "bits_per_param"
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("size", "ratio", "bits_per_param"):
            raise ConfigError(f"target kind {self.kind!r}: one of size, ratio, bits_per_param")
        if isinstance(self.value, bool) or not math.isfinite(self.value) or self.value <= 0:
            raise ConfigError(f"target {self.kind} {self.value!r}: must be a finite number above 0")
        if self.kind == "ratio" and self.value < 1:
            raise ConfigError(f"target ratio {self.value:g}: must be at least 1 (the file cannot grow)")

    @classmethod
    def size(cls, size: str | int | float) -> Target:
        return cls("size", float(parse_size(size)))

    def bytes(self, dense_bytes: int, parameters: int) -> int:
        """The budget in bytes for a model of `dense_bytes` (its tensors as stored) and `parameters`."""
        if self.kind == "size":
            return int(self.value)
        if self.kind == "ratio":
            return int(dense_bytes / self.value)
        return int(parameters * self.value / 8)

    def __str__(self) -> str:
        if self.kind == "size":
            return f"{int(self.value):,} bytes"
        return f"ratio {self.value:g}x" if self.kind == "ratio" else f"{self.value:g} bits per parameter"


@dataclass(frozen=True, init=False)
class BudgetConfig(Config):
    """The candidates a budget chooses from, and how each layer is quantized.

    Args:
        sparsities: magnitude-pruning sparsities to try per layer (a layer's own zeros stay zero).
        bits: quantizer bits to try per layer: b bits give 2^b - 1 levels plus zero; a fractional b (2.5)
            the odd level count nearest 2^b - 1 (5), stored with ceil(b) codebook bits. Default: 2 to 8
            in whole bits for k-means (each level count is a k-means run), in half bits for uniform and
            ECSQ.
        kinds: layer kinds to compress (`conv`, `fc`, `emb`); others are stored as they are.
        method, lagrangian, init, max_iter, seed: the quantizer (`QuantizeConfig`'s meanings).
        index_bits: relative-index width per layer (`conv=8,fc=5`), or `auto` for the smallest at each
            candidate sparsity.
        raw_dtype: `float16` or `bfloat16` stores the tensors left uncompressed (biases, norms) in that
            dtype (`EncodeConfig`'s), which the budget counts; None keeps them as they are.
    """

    sparsities: tuple[float, ...]
    bits: tuple[float, ...]
    kinds: tuple[str, ...]
    method: str
    lagrangian: float
    init: str
    max_iter: int
    seed: int
    index_bits: LayerRules
    raw_dtype: str | None

    def __init__(
        self,
        *,
        sparsities: tuple[float, ...] | list[float] = DEFAULT_SPARSITIES,
        bits: tuple[float, ...] | list[float] | None = None,
        kinds: tuple[str, ...] | list[str] = COMPRESSED_KINDS,
        method: str = "kmeans",
        lagrangian: float = 0.0,
        init: str = "linear",
        max_iter: int = 300,
        seed: int = 0,
        index_bits: RulesSource | None = None,
        raw_dtype: str | None = None,
    ) -> None:
        sparsities = tuple(float(s) for s in sparsities)
        if not sparsities or any(not 0.0 <= s < 1.0 for s in sparsities):
            raise ConfigError(f"sparsities {sparsities}: each must be in [0, 1)")
        if bits is None:
            bits = DEFAULT_BUDGET_BITS if method == "kmeans" else DEFAULT_FINE_BITS
        bits = tuple(bits)
        if not bits or any(isinstance(b, bool) or not isinstance(b, int | float) or not 1 <= b <= 16 for b in bits):
            raise ConfigError(f"bits {bits}: each must be a number from 1 to 16")
        bits = tuple(int(b) if float(b).is_integer() else float(b) for b in bits)
        kinds = tuple(kinds)
        if not kinds or any(kind not in ("conv", "fc", "emb") for kind in kinds):
            raise ConfigError(f"kinds {kinds}: each one of conv, fc, emb")
        if method not in METHODS:
            raise ConfigError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        if isinstance(lagrangian, bool) or not isinstance(lagrangian, int | float) or not 0 <= lagrangian < math.inf:
            raise ConfigError(f"lagrangian {lagrangian!r}: must be a finite number of at least 0")
        if init not in INITS:
            raise ConfigError(f"init {init!r}: expected one of {', '.join(INITS)}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError(f"max_iter {max_iter!r}: must be an integer of at least 1")
        index_rules = LayerRules.parse(DEFAULT_INDEX_BITS if index_bits is None else index_bits, INDEX_BITS,
                                       default=index_bits is None)  # fmt: skip
        self._set(
            sparsities=tuple(sorted(set(sparsities))), bits=tuple(sorted(set(bits))), kinds=kinds, method=method,
            lagrangian=float(lagrangian), init=init, max_iter=max_iter, seed=seed, index_bits=index_rules,
            raw_dtype=EncodeConfig(raw_dtype=raw_dtype).raw_dtype,
        )  # fmt: skip


@dataclass
class Candidate:
    """One way to store one layer: its predicted bytes (data and codebook) and estimated damage."""

    sparsity: float
    bits: float  # the quantizer's size (`levels_for`); the codebook holds `codebook_bits(bits)` bits
    index_bits: int
    levels: int  # distinct nonzero values
    bytes: int
    damage: float


@dataclass
class LayerChoice:
    name: str
    kind: str
    parameters: int
    chosen: Candidate
    actual_bytes: int | None = None  # the layer's bytes in the written file


@dataclass
class Allocation:
    """What the budget chose, and what the file turned out to be."""

    target: str
    budget_bytes: int
    fixed_bytes: int  # header, manifest and uncompressed tensors
    predicted_bytes: int
    damage_measure: str  # "relative squared error" or "importance-weighted squared error"
    layers: list[LayerChoice]
    actual_bytes: int | None = None
    plans: int = 1
    margin_bytes: int = 0  # held back from the layers in the first plan for the size model's error
    first_plan: tuple[int, int] | None = None  # (predicted, written) bytes of the first plan

    @property
    def damage(self) -> float:
        return sum(layer.chosen.damage for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["damage"] = self.damage
        return data

    def to_markdown(self) -> str:
        rows = [
            [layer.name, layer.kind, f"{layer.parameters:,}", f"{layer.chosen.sparsity:.2f}", f"{layer.chosen.bits:g}",
             layer.chosen.levels, f"{layer.chosen.bytes:,}", f"{8 * layer.chosen.bytes / layer.parameters:.3f}",
             f"{layer.chosen.damage:.3g}"]
            for layer in self.layers
        ]  # fmt: skip
        table = markdown_table(
            ["layer", "kind", "parameters", "sparsity", "bits", "levels", "bytes", "bits/param", "damage"], rows
        )
        actual = f"{self.actual_bytes:,}" if self.actual_bytes is not None else "not written"
        error = ""
        if self.first_plan:
            predicted, written = self.first_plan
            error = f"; size model on the first plan {predicted:,} predicted, {written:,} written"
            error += f" ({100 * (predicted - written) / written:+.3f}%)"
        budget = f"{self.target}" + ("" if self.target.endswith(" bytes") else f" = {self.budget_bytes:,} bytes")
        return (
            f"Target: {budget}. Predicted {self.predicted_bytes:,} bytes, written {actual}; fixed costs "
            f"{self.fixed_bytes:,} bytes; {self.plans} plan(s){error}.\n"
            f"Damage ({self.damage_measure}, summed over layers): {self.damage:.4g}.\n\n{table}\n\n"
            "levels: distinct nonzero values the layer keeps (2^bits - 1 at most); bytes: its coded data and "
            "codebook in the file; bits/param: those bytes over all its parameters, pruned ones included; "
            f"damage: {self.damage_measure} of the layer's weights."
        )

    def plot(self, path: str | Path, format: str | None = None) -> Path:
        """Bytes per layer against damage per layer (bars in network order), written atomically
        (`format`: matplotlib's, by default from the suffix)."""
        from vidcompress.plots import pyplot, save_figure

        plt = pyplot()
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.18 * len(self.layers)), 5.5), sharex=True)
        x = np.arange(len(self.layers))
        top.bar(x, [layer.chosen.bytes / 1e3 for layer in self.layers], color="tab:blue")
        top.set_ylabel("kB in the file")
        top.set_title(f"Allocation for {self.target}: bytes and damage per layer")
        bottom.bar(x, [layer.chosen.damage for layer in self.layers], color="tab:red")
        bottom.set_ylabel(self.damage_measure)
        bottom.set_xticks(x, [layer.name for layer in self.layers], rotation=90, fontsize=6)
        save_figure(figure, Path(path), format=format)
        return Path(path)


def _select(tensors: Mapping[str, torch.Tensor], config: BudgetConfig) -> list[LayerInfo]:
    """The layers a budget compresses: of the selected kinds, tied weights once, under the name the
    container stores them by (an embedding tied to an output layer is an embedding)."""
    aliases = tied_names(tensors)
    stored = {name: tensor for name, tensor in tensors.items() if name not in aliases}
    # A zero-size weight has nothing to allocate: it is stored as it is, like a bias.
    return [
        layer
        for layer in state_dict_layers(stored)
        if layer.kind.value in config.kinds and stored[layer.name].numel() > 0
    ]


def layer_candidates(
    name: str,
    weight: torch.Tensor,
    config: BudgetConfig,
    index_bits: int | str,
    importance: torch.Tensor | None = None,
    *,
    sparsities: tuple[float, ...] | None = None,
    bits: tuple[float, ...] | None = None,
    damage: Damage | None = None,
) -> list[Candidate]:
    """Every (sparsity, bits) candidate of one layer (the config's grid, or the `sparsities` and `bits`
    given) with its exact coded bytes and estimated damage (`damage`: the layer's own measure of the
    candidate's weights, in place of the squared error)."""
    values = weight.detach().to("cpu", torch.float64).reshape(-1).numpy()
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name}: weights contain NaN or inf")
    h = None if importance is None else importance.detach().to("cpu", torch.float64).reshape(-1).numpy()
    if h is not None and h.size != values.size:
        raise InputError(f"{name}: importance has {h.size} values for {values.size} weights")
    energy = float(np.dot(values, values) if h is None else np.dot(h * values, values))
    scale = 1.0 / energy if h is None and energy > 0 else 1.0
    n = values.size
    element = weight.element_size()
    shape = tuple(weight.shape)
    candidates = []
    for sparsity in sparsities or config.sparsities:
        mask = _kept(weight, values, sparsity)
        kept = np.flatnonzero(mask)
        pruned_error = float(np.sum(values[~mask] ** 2 if h is None else h[~mask] * values[~mask] ** 2))
        # Both walks the encoder weighs (columns, the paper's, then rows) at each width in play (`auto`:
        # each walk's own best; the encoder, given a candidate's width, weighs both walks at it, so the
        # model does too): entries, index bytes and where each stored entry (fillers included) sits.
        flats = [walk(mask.astype(np.uint8), shape, by_rows=rows) for rows in (False, True)]
        widths = sorted({choose_index_bits(flat, 2) for flat in flats}) if index_bits == "auto" else [int(index_bits)]
        walks = []
        for width in widths:
            for rows, flat in zip((False, True), flats, strict=True):
                entries = relative_index_encode(flat, width)
                stored = relative_index_positions(entries.codes, n, width, name)
                walks.append((rows, width, entries.fillers, coded_bytes(entries.codes, 1 << width), stored))
        for width_bits in bits or config.bits:
            if kept.size == 0:
                lost = scale * pruned_error if damage is None else damage(np.zeros(n))
                candidates.append(Candidate(sparsity, width_bits, walks[0][1], 0, element, lost))
                continue
            fitted = _fit(values, h, kept, width_bits, config)
            symbols = fitted.assign(values[kept])
            residual = values[kept] - fitted.centroids[symbols]
            kept_error = float(np.dot(residual, residual) if h is None else np.dot(h[kept] * residual, residual))
            alphabet = fitted.centroids.size + 1
            # The coder groups neighbouring symbols of small alphabets (`groups_for`), so their bytes
            # depend on the symbols' order: such candidates are sized from their streams, the others
            # from counts.
            sparse: list[tuple[int, int]] = []  # (bytes, index width) per walk
            if len(groups_for(alphabet)) == 1:
                counts = np.bincount(symbols, minlength=fitted.centroids.size)
                for _, width, fillers, index_bytes, _ in walks:
                    sparse.append((frequency_bytes(np.concatenate(([fillers], counts)), alphabet) + index_bytes, width))
                dense = frequency_bytes(np.concatenate(([n - kept.size], counts)), alphabet)
            else:
                grid = np.zeros(n, dtype=np.int64)  # row-major symbols; codebook entry 0 is zero
                grid[kept] = symbols + 1
                for rows, width, _, index_bytes, stored in walks:
                    sparse.append((coded_bytes(walk(grid, shape, by_rows=rows)[stored], alphabet) + index_bytes, width))
                dense = coded_bytes(column_major(grid, shape), alphabet)  # the dense layout walks columns
            data, width = min(sparse, key=lambda option: option[0])  # on a tie, columns (as the encoder)
            if damage is None:
                lost = scale * (pruned_error + kept_error)
            else:
                quantized = np.zeros(n)
                quantized[kept] = fitted.centroids[symbols]
                lost = damage(quantized)
            candidates.append(
                Candidate(sparsity, width_bits, width, fitted.centroids.size, min(data, dense) + alphabet * element,
                          lost)
            )  # fmt: skip
    return candidates


def compressed_weight(
    weight: torch.Tensor, candidate: Candidate, config: BudgetConfig, importance: torch.Tensor | None = None
) -> torch.Tensor:
    """The layer as `candidate` stores it: pruned by magnitude, then quantized (as `layer_candidates` did)."""
    values = weight.detach().to("cpu", torch.float64).reshape(-1).numpy()
    h = None if importance is None else importance.detach().to("cpu", torch.float64).reshape(-1).numpy()
    kept = np.flatnonzero(_kept(weight, values, candidate.sparsity))
    result = np.zeros(values.size)
    if kept.size:
        fitted = _fit(values, h, kept, candidate.bits, config)
        result[kept] = fitted.centroids[fitted.assign(values[kept])]
    return torch.from_numpy(result).to(weight.dtype).reshape(weight.shape)


def _kept(weight: torch.Tensor, values: np.ndarray, sparsity: float) -> np.ndarray:
    """The weights a candidate keeps (flat, bool): `prune`'s magnitude criterion, less those already zero."""
    return magnitude_mask(weight, sparsity).cpu().reshape(-1).numpy() & (values != 0.0)


def _fit(values: np.ndarray, h: np.ndarray | None, kept: np.ndarray, bits: float, config: BudgetConfig) -> Levels:
    """The config's quantizer fitted to the kept weights."""
    return fit_levels(
        values[kept], levels_for(bits), config.method, importance=None if h is None else h[kept],
        lagrangian=config.lagrangian, init=config.init, max_iter=config.max_iter, seed=config.seed,
    )  # fmt: skip


def choose(candidates: Mapping[str, list[Candidate]], budget: int) -> dict[str, Candidate] | None:
    """The candidate per layer with the least total damage whose bytes sum to at most `budget`; None
    when even the smallest choice is over.

    Two solvers of the multiple-choice knapsack, the better answer kept: a Lagrangian sweep (each
    layer's candidate minimising damage + mu x bytes, mu bisected) and dynamic programming over the
    budget cut into `KNAPSACK_BUCKETS` parts (each candidate's bytes rounded up to whole parts, so its
    answer always fits); each then spends what it left on greedy upgrades. The Lagrangian sweep only
    reaches the lower convex hull of the layers' choices, so a finer grid of candidates could make it
    worse; the DP is within one part per layer of the optimum."""
    smallest = {name: min(options, key=lambda c: (c.bytes, c.damage)) for name, options in candidates.items()}
    if sum(c.bytes for c in smallest.values()) > budget:
        return None
    answers = [_greedy(candidates, _lagrangian(candidates, budget, smallest), budget)]
    answers.append(_greedy(candidates, _knapsack(candidates, budget), budget))
    return min(
        answers, key=lambda chosen: (sum(c.damage for c in chosen.values()), sum(c.bytes for c in chosen.values()))
    )


KNAPSACK_BUCKETS = 20_000  # parts of the budget the DP works in: at most 1/20000 of it lost per layer


def _knapsack(candidates: Mapping[str, list[Candidate]], budget: int) -> dict[str, Candidate]:
    """The least-damage choice under the budget, by DP over whole parts of it (bytes rounded up)."""
    parts = max(1, min(KNAPSACK_BUCKETS, budget))
    unit = budget / parts
    best = np.zeros(parts + 1)  # least damage of the layers so far within c parts (no layer yet: 0)
    picks: list[np.ndarray] = []
    names = list(candidates)
    fronts = [_front(candidates[name]) for name in names]
    costs = [[math.ceil(option.bytes / unit - 1e-9) for option in options] for options in fronts]
    for options, option_costs in zip(fronts, costs, strict=True):
        nxt = np.full(parts + 1, np.inf)
        pick = np.full(parts + 1, -1, dtype=np.int32)
        for j, (option, cost) in enumerate(zip(options, option_costs, strict=True)):
            if cost > parts:
                continue
            trial = np.full(parts + 1, np.inf)
            trial[cost:] = best[: parts + 1 - cost] + option.damage
            better = trial < nxt
            nxt[better], pick[better] = trial[better], j
        best = nxt
        picks.append(pick)
    if not np.isfinite(best[parts]):  # rounding up to whole parts made the smallest choice overflow
        return {name: options[0] for name, options in zip(names, fronts, strict=True)}
    chosen: dict[str, Candidate] = {}
    capacity = parts
    for name, options, option_costs, pick in zip(reversed(names), reversed(fronts), reversed(costs), reversed(picks),
                                                 strict=True):  # fmt: skip
        j = int(pick[capacity])
        chosen[name] = options[j]
        capacity -= option_costs[j]
    return {name: chosen[name] for name in names}


def _front(options: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats on both bytes and damage, smallest first."""
    front: list[Candidate] = []
    for option in sorted(options, key=lambda c: (c.bytes, c.damage)):
        if not front or option.damage < front[-1].damage:
            front.append(option)
    return front


def _lagrangian(
    candidates: Mapping[str, list[Candidate]], budget: int, smallest: dict[str, Candidate]
) -> dict[str, Candidate]:
    """Each layer's candidate minimising damage + mu x bytes, at the smallest mu that fits the budget."""

    def pick(mu: float) -> dict[str, Candidate]:
        return {
            name: min(options, key=lambda c: (c.damage + mu * c.bytes, c.bytes)) for name, options in candidates.items()
        }

    low, high = 0.0, 1.0
    if sum(c.bytes for c in pick(0.0).values()) <= budget:
        chosen = pick(0.0)
    else:
        while sum(c.bytes for c in pick(high).values()) > budget:
            high *= 4.0
            if high > 1e30:
                return smallest
        for _ in range(100):
            middle = math.sqrt(low * high) if low > 0 else high / 1024.0
            if sum(c.bytes for c in pick(middle).values()) > budget:
                low = middle
            else:
                high = middle
            if low > 0 and high / low < 1.0 + 1e-9:
                break
        chosen = pick(high)
    return chosen


def _greedy(
    candidates: Mapping[str, list[Candidate]], chosen: dict[str, Candidate], budget: int
) -> dict[str, Candidate]:
    """Spend what is left of the budget on the upgrade that saves the most damage per extra byte."""
    chosen = dict(chosen)
    spent = sum(c.bytes for c in chosen.values())
    while True:
        best, best_gain = None, 0.0
        for name, options in candidates.items():
            current = chosen[name]
            for option in options:
                extra = option.bytes - current.bytes
                saved = current.damage - option.damage
                if saved <= 0 or spent + extra > budget:
                    continue
                gain = saved / extra if extra > 0 else math.inf
                if gain > best_gain:
                    best, best_gain = (name, option), gain
        if best is None:
            return chosen
        name, option = best
        spent += option.bytes - chosen[name].bytes
        chosen[name] = option


REFINED_LAYERS = 3  # the largest layers whose sparsity is refined between grid points
REFINE_STEPS = 8  # bisection steps of each
MAX_REFINED_SPARSITY = 0.99  # the refinement may prune a layer this far, past the grid, if the grid prunes


def _refine(
    chosen: dict[str, Candidate],
    budget: int,
    tensors: Mapping[str, torch.Tensor],
    config: BudgetConfig,
    index: Mapping[str, int | str],
    importance: Mapping[str, torch.Tensor] | None,
    scales: Mapping[str, float],
    damages: Mapping[str, Damage] | None = None,
) -> None:
    """Spend the slack the grid leaves on the largest layers: bisect a layer's sparsity, at its bits,
    down toward the grid point below; and at the grid's next width and at one bit more (no wider than
    the widest candidate), up from its sparsity (up to 0.99 if the grid prunes at all); keep whichever
    fits the budget with the least damage. A coarse grid otherwise leaves a file several percent under."""
    for name in sorted(chosen, key=lambda n: -chosen[n].bytes)[:REFINED_LAYERS]:
        current = chosen[name]

        def evaluate(sparsity: float, bits: float, layer: str = name) -> Candidate:
            (option,) = layer_candidates(
                layer, tensors[layer], config, index[layer], None if importance is None else importance.get(layer),
                sparsities=(sparsity,), bits=(bits,), damage=(damages or {}).get(layer),
            )  # fmt: skip
            return replace(option, damage=option.damage * scales.get(layer, 1.0))

        def fits(option: Candidate, layer: str = name) -> bool:
            return sum(c.bytes for c in chosen.values()) - chosen[layer].bytes + option.bytes <= budget

        lower = [s for s in config.sparsities if s < current.sparsity]
        searches = []
        if lower:  # same bits, fewer weights pruned: from over budget (low) toward the chosen point
            searches.append((lower[-1], current.sparsity, current.bits))
        # More bits, more weights pruned (the grid's next width, and one bit more): from the chosen point up
        # to 0.99 when the grid prunes at all (a grid of 0 alone means no pruning, and none is done).
        top = MAX_REFINED_SPARSITY if max(config.sparsities) > 0 else 0.0
        next_width = min((b for b in config.bits if b > current.bits), default=current.bits + 1)
        for bits in sorted({next_width, current.bits + 1}):
            if top > current.sparsity and bits <= max(config.bits):  # never wider than the candidates
                searches.append((current.sparsity, top, bits))
        best = current
        for start, stop, bits in searches:
            over, under = start, stop  # bisect between a point over budget and one under it
            found = None
            if bits != current.bits:
                edge = evaluate(stop, bits)
                if not fits(edge):
                    continue
                found = edge
            for _ in range(REFINE_STEPS):
                middle = (over + under) / 2
                option = evaluate(middle, bits)
                if fits(option):
                    found, under = option, middle
                else:
                    over = middle
            if found is not None and found.damage < best.damage:
                best = found
        chosen[name] = best


def _scaled(options: list[Candidate], scale: float) -> list[Candidate]:
    return options if scale == 1.0 else [replace(c, damage=c.damage * scale) for c in options]


REFERENCE = (0.5, 4)  # the candidate (sparsity, bits) whose measured damage calibrates a layer's proxy


def measured_scales(
    tensors: Mapping[str, torch.Tensor],
    candidates: Mapping[str, list[Candidate]],
    evaluate: Callable[[dict[str, torch.Tensor]], float],
    config: BudgetConfig,
    importance: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Per layer, the measured damage of one reference candidate (that layer alone compressed; the
    user's `evaluate(state_dict)`, lower is better, e.g. a validation loss) over its proxy damage:
    sensitivity-driven allocation at one evaluation a layer. A layer whose measured damage is not
    above zero gets a hundredth of the smallest positive scale of the others (measured as harmless,
    it is compressed hardest)."""
    baseline = float(evaluate(dict(tensors)))
    raw: dict[str, float] = {}
    for name, options in candidates.items():
        reference = min(options, key=lambda c: (abs(c.sparsity - REFERENCE[0]), abs(c.bits - REFERENCE[1])))
        trial = dict(tensors)
        trial[name] = compressed_weight(tensors[name], reference, config, (importance or {}).get(name))
        for alias, stored in tied_names(tensors).items():
            if stored == name:
                trial[alias] = trial[name]
        measured = float(evaluate(trial)) - baseline
        raw[name] = measured / reference.damage if measured > 0 and reference.damage > 0 else 0.0
    positive = [v for v in raw.values() if v > 0]
    floor = min(positive) / 100 if positive else 1.0
    return {name: value if value > 0 else floor for name, value in raw.items()}


def _fixed_bytes(
    tensors: Mapping[str, torch.Tensor],
    layers: list[LayerInfo],
    index: dict[str, int | str],
    raw_dtype: str | None = None,
) -> int:
    """Bytes of a container besides its compressed layers' data and codebooks: encode a stand-in and
    take its layers' bytes off. The manifest is stored compressed, so its size depends on its numbers:
    the stand-in's layers are sparse, as compressed layers mostly are, with two values at random places
    (one element in 32), so that both streams have about a real layer's digits and an arbitrary CRC (a
    stand-in of constant streams, CRC 0, compressed better than the real file)."""
    stand_in = dict(tensors)
    rng = np.random.default_rng(0)
    for layer in layers:
        numel = tensors[layer.name].numel()
        kept = rng.random(numel) < 1 / 32
        kept[:1] = True  # at least one value (none in a zero-size layer)
        values = np.where(rng.random(numel) < 0.5, 1.0, 2.0) * kept
        stand_in[layer.name] = torch.from_numpy(values).to(tensors[layer.name].dtype).view_as(tensors[layer.name])
    for alias, stored in tied_names(tensors).items():
        stand_in[alias] = stand_in[stored]
    bits = {layer.name: 2 for layer in layers}
    widths = {name: 8 if width == "auto" else width for name, width in index.items()}
    with tempfile.TemporaryDirectory() as folder:
        encoding = EncodeConfig(bits=bits, index_bits=widths, raw_dtype=raw_dtype)
        container = encode(stand_in, Path(folder) / "stand_in.vcz", encoding)
    element = {name: tensor.element_size() for name, tensor in tensors.items()}
    layer_bytes = sum(entry.data_bytes + entry.codebook_size * element[entry.name] for entry in container.layers)
    return container.file_bytes - layer_bytes


def _plan_layers(
    tensors: Mapping[str, torch.Tensor], config: BudgetConfig
) -> tuple[list[LayerInfo], dict[str, int | str]]:
    """The layers a budget compresses and each one's index bits (`auto` or a width)."""
    layers = _select(tensors, config)
    if not layers:
        raise InputError(f"no compressible layer of kinds {', '.join(config.kinds)}: nothing to budget")
    index = config.index_bits.resolve(layers)
    missing = [layer.name for layer in layers if layer.name not in index]
    if missing:
        raise ConfigError(f"{missing[0]}: index bits are off for a layer the budget compresses")
    return layers, index


def all_candidates(
    tensors: Mapping[str, torch.Tensor],
    config: BudgetConfig,
    *,
    importance: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
    damages: Mapping[str, Damage] | None = None,
) -> dict[str, list[Candidate]]:
    """`layer_candidates` of every layer a budget compresses, by name."""
    layers, index = _plan_layers(tensors, config)
    return {
        layer.name: layer_candidates(
            layer.name,
            tensors[layer.name],
            config,
            index[layer.name],
            (importance or {}).get(layer.name),
            damage=(damages or {}).get(layer.name),
        )
        for layer in progress_lines(layers, "candidates", "layer", progress)
    }


def plan_budget(
    tensors: Mapping[str, torch.Tensor],
    target: Target,
    config: BudgetConfig | None = None,
    *,
    importance: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
    fixed_bytes: int | None = None,
    candidates: dict[str, list[Candidate]] | None = None,
    scales: Mapping[str, float] | None = None,
    damages: Mapping[str, Damage] | None = None,
    measure: str | None = None,
) -> tuple[Allocation, dict[str, list[Candidate]]]:
    """Choose each layer's sparsity and bits for `target`; returns the allocation and the candidates
    (their damage unscaled).

    `fixed_bytes`: the container's costs besides its layers, as measured on a written file (None:
    estimated from a stand-in, and a small margin held back). `scales`: per-layer factors on the
    damage (`measured_scales`: the proxy calibrated on the user's evaluation). `damages`: per-layer
    damage measures (see `layer_candidates`), named by `measure` in the allocation."""
    calibrated = fixed_bytes is not None
    config = config or BudgetConfig()
    layers, index = _plan_layers(tensors, config)
    dense = sum(t.numel() * t.element_size() for t in tensors.values())
    parameters = sum(t.numel() for t in tensors.values())
    budget = target.bytes(dense, parameters)
    if fixed_bytes is None:
        fixed_bytes = _fixed_bytes(tensors, layers, index, config.raw_dtype)
    if candidates is None:
        candidates = all_candidates(tensors, config, importance=importance, progress=progress, damages=damages)
    # The first plan holds a little back: the stand-in's manifest numbers have fewer digits than the
    # file's (about 10 bytes a layer), and the header's length moves with the digits of the manifest's
    # CRC (which covers the time of writing), padded to 8 bytes: up to 8 bytes from one write to the next.
    margin = 0 if calibrated else min(16 * len(layers) + 16 + budget // 1000, max(0, budget - fixed_bytes) // 10)
    available = budget - fixed_bytes - margin
    scaled = {name: _scaled(options, (scales or {}).get(name, 1.0)) for name, options in candidates.items()}
    chosen = choose(scaled, available) if available > 0 else None
    if chosen is None:
        floor = fixed_bytes + sum(min(c.bytes for c in options) for options in candidates.values())
        asked = f"target {target}" + ("" if target.kind == "size" else f" ({budget:,} bytes)")
        raise ConfigError(
            f"{asked} is below the smallest file these candidates give "
            f"({floor:,} bytes: {fixed_bytes:,} of fixed costs); allow higher sparsities or fewer bits"
        )
    _refine(chosen, available, tensors, config, index, importance, scales or {}, damages)
    if measure is None:
        measure = "relative squared error" if importance is None else "importance-weighted squared error"
    if scales:
        measure += ", scaled to the measured sensitivity"
    allocation = Allocation(
        target=str(target), budget_bytes=budget, fixed_bytes=fixed_bytes,
        predicted_bytes=fixed_bytes + sum(c.bytes for c in chosen.values()), damage_measure=measure,
        layers=[LayerChoice(layer.name, layer.kind.value, layer.numel, chosen[layer.name]) for layer in layers],
        margin_bytes=margin,
    )  # fmt: skip
    return allocation, candidates


def compress_to_budget(
    source: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    target: Target | str | int,
    config: BudgetConfig | None = None,
    *,
    importance: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, str] | None = None,
    progress: bool = False,
    cache: dict[str, list[Candidate]] | None = None,
    evaluate: Callable[[dict[str, torch.Tensor]], float] | None = None,
    calibration: Any = None,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> tuple[Allocation, Container]:
    """Write `source` as a container of at most the target's bytes, with the least estimated damage.

    `target`: a Target, or a size (`"5MB"`, bytes as an int). Returns the allocation (per layer:
    sparsity, bits, bytes, damage; predicted and written size) and the written container.
    `cache`: a dict that keeps the evaluated candidates between calls on the same weights, config and
    importance (several targets for one model): filled when empty, reused when not.
    `evaluate`: the user's score of a state dict, lower is better (a validation loss on calibration
    data): each layer's damage proxy is scaled to its measured effect (`measured_scales`, one
    evaluation a layer).
    `calibration`: batches of the model's inputs (as for `calibrate_`; `forward(model, batch)` where a
    batch is not just its arguments): each candidate's damage is its measured output error and the
    written weights are the calibrated solver's (`vidcompress.calibrate.budget`); `source` must then be
    the model.
    """
    check_weights(source, "source")
    check_path(path, "path")
    config = config or BudgetConfig()
    if not isinstance(target, Target):
        target = Target.size(target)
    if calibration is not None:
        if not isinstance(source, nn.Module):
            raise ConfigError("calibration needs the model itself (its layers run on the inputs), not a state dict")
        if importance is not None or evaluate is not None or cache is not None:
            raise ConfigError("calibration replaces importance, evaluate and cache; give it alone")
        from vidcompress.calibrate.budget import calibrated_budget

        allocation, container, _ = calibrated_budget(
            source, path, target, config, calibration, forward=forward, metadata=metadata, progress=progress
        )
        return allocation, container
    if isinstance(source, nn.Module):
        source = unwrap_model(source).state_dict()
    tensors = {name: tensor.detach() for name, tensor in source.items()}
    scales = None
    if evaluate is not None:
        if not cache:
            computed = all_candidates(tensors, config, importance=importance, progress=progress)
            cache = computed if cache is None else cache
            cache.update(computed)
        scales = measured_scales(tensors, cache, evaluate, config, importance)
    allocation, candidates = plan_budget(
        tensors, target, config, importance=importance, progress=progress, candidates=cache or None, scales=scales
    )
    if cache is not None and not cache:
        cache.update(candidates)

    def weights(chosen: Mapping[str, Candidate]) -> dict[str, torch.Tensor]:
        return {
            name: compressed_weight(tensors[name], c, config, None if importance is None else importance.get(name))
            for name, c in chosen.items()
        }

    def replan(fixed: int) -> Allocation:
        return plan_budget(
            tensors, target, config, importance=importance, fixed_bytes=fixed, candidates=candidates, scales=scales
        )[0]

    return write_within_budget(tensors, path, target, config, metadata, allocation, weights, replan)


def write_within_budget(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    target: Target,
    config: BudgetConfig,
    metadata: Mapping[str, str] | None,
    allocation: Allocation,
    weights: Callable[[Mapping[str, Candidate]], Mapping[str, torch.Tensor]],
    replan: Callable[[int], Allocation],
) -> tuple[Allocation, Container]:
    """Write the allocation's layers (`weights(chosen)`: each budgeted layer's tensor) with the other
    tensors as they are; a file over budget is planned again (`replan(fixed bytes)`) with the miss taken
    off, at most MAX_PLANS times. The output is replaced only by a file within budget."""
    path = Path(path)
    trial = path.with_name(f".{path.name}.budget-trial")
    fixed = allocation.fixed_bytes
    first_plan = None
    try:
        for attempt in range(1, MAX_PLANS + 1):
            chosen = {layer.name: layer.chosen for layer in allocation.layers}
            compressed = {**tensors, **weights(chosen)}
            for alias, stored in tied_names(tensors).items():  # a tied weight stays one tensor, stored once
                compressed[alias] = compressed[stored]
            encoding = EncodeConfig(
                bits={name: codebook_bits(c.bits) for name, c in chosen.items()},
                index_bits={name: c.index_bits for name, c in chosen.items()},
                raw_dtype=config.raw_dtype,
            )
            container = encode(compressed, trial, encoding, metadata=metadata)
            allocation.actual_bytes = container.file_bytes
            allocation.plans = attempt
            first_plan = first_plan or (allocation.predicted_bytes, container.file_bytes)
            allocation.first_plan = first_plan
            by_name = {entry.name: entry for entry in container.layers}
            for layer in allocation.layers:
                entry = by_name[layer.name]
                layer.actual_bytes = entry.data_bytes + entry.codebook_size * tensors[layer.name].element_size()
            if container.file_bytes <= allocation.budget_bytes:
                os.replace(trial, path)
                return allocation, replace(container, path=path)
            # The size model missed: take the overshoot off the layers' share and plan again.
            fixed += container.file_bytes - allocation.predicted_bytes
            allocation = replan(fixed)
    finally:
        trial.unlink(missing_ok=True)
    raise ConfigError(
        f"could not meet {target}: the file came out at {allocation.actual_bytes:,} bytes after {MAX_PLANS} plans"
    )
