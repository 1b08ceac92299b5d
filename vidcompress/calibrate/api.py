"""`calibrate_(model, inputs, ...)`: post-training pruning and weight sharing from unlabelled inputs.

For a pretrained model that cannot be retrained: a few batches of ordinary inputs give every selected
layer the second moment H of its input columns (`stats`), and the layer solvers (`solvers`) prune it to
its sparsity with the optimal-brain-surgeon update and round it onto a per-layer codebook of 2^b - 1
levels with error feedback, each minimising the layer's output error on those inputs. The result is a
plain model whose weights `encode` stores as they are (zeros pruned, at most 2^b values a layer).

Sequential by default (SparseGPT / GPTQ's mode): layers are solved in the order the model runs them,
and each layer's H is collected with every earlier layer already compressed, so a layer corrects the
error its inputs carry. Layers that take the very same input tensor (an Inception block's branches, the
query / key / value projections of an attention) are solved from one pass. Each pass stops the forward
as soon as the layers it collects have run.

`method="magnitude"` is the data-free baseline (magnitude pruning and k-means, as `prune_` and
`quantize_` do) with its output error measured on the same inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from vidcompress.attach import own_items
from vidcompress.calibrate.solvers import (
    DAMPENING,
    Levels,
    fit_codebook,
    inverse_factor,
    output_error,
    refit_codebook,
    solve,
)
from vidcompress.calibrate.stats import (
    Collector,
    Forward,
    Source,
    as_batches,
    default_forward,
    from_matrix_view,
    input_sources,
    matrix_view,
    run_batches,
)
from vidcompress.config import Config
from vidcompress.errors import ConfigError, InputError, check_module
from vidcompress.layers import LayerInfo, WeightSite, module_layers, weight_sites
from vidcompress.progress import progress as progress_lines
from vidcompress.prune.magnitude import magnitude_mask, require_finite
from vidcompress.prune.pruner import DEFAULT_SPARSITY
from vidcompress.quantize.api import DEFAULT_BITS
from vidcompress.quantize.scalar import METHODS as QUANTIZERS
from vidcompress.quantize.sharing import share_weights
from vidcompress.report import markdown_table
from vidcompress.rules import BITS, SPARSITY, LayerRules, RulesSource

METHODS = ("sparsegpt", "magnitude")


@dataclass(frozen=True, init=False)
class CalibrateConfig(Config):
    """What to prune and quantize, and how the solvers run.

    Args:
        sparsity: rules such as `conv=0.5,fc=0.7` (`off` or 0: not pruned). Default: `DEFAULT_SPARSITY`.
        bits: rules such as `conv=8,fc=5` (`off`: full precision). Default: `DEFAULT_BITS`.
        method: "sparsegpt" (calibrated: SparseGPT pruning then GPTQ onto the codebook) or "magnitude"
            (data-free magnitude pruning and k-means, the output error still measured).
        quantizer: how the codebook's levels are fitted before the error-feedback rounding: "kmeans",
            "uniform" or "ecsq" (`QuantizeConfig.method`); with sparsegpt the fit is weighted by H's
            diagonal.
        dampening: added to H's diagonal, as a fraction of its mean (raised tenfold on a Cholesky failure).
        block: columns per lazy update block (also the granularity of the pruning mask's choice).
        sequential: solve layers in order, each from inputs through the already-compressed layers;
            False collects every layer's H from the dense model in one pass (more memory, less time).
        unseen: what sparsegpt does with a selected weight whose inputs the hooks cannot see (recurrent
            matrices, transposed convolutions): "error" (the default: the error names the layer) or
            "magnitude" (that layer takes the data-free method; the report says which did).
        seed: for the codebook initialisations that take one.
    """

    sparsity: LayerRules
    bits: LayerRules
    method: str
    quantizer: str
    dampening: float
    block: int
    sequential: bool
    unseen: str
    seed: int

    def __init__(
        self,
        *,
        sparsity: RulesSource | None = None,
        bits: RulesSource | None = None,
        method: str = "sparsegpt",
        quantizer: str = "kmeans",
        dampening: float = DAMPENING,
        block: int = 128,
        sequential: bool = True,
        unseen: str = "error",
        seed: int = 0,
    ) -> None:
        sparsity_rules = (
            LayerRules.parse(DEFAULT_SPARSITY, SPARSITY, default=True)
            if sparsity is None
            else LayerRules.parse(sparsity, SPARSITY)
        )
        bits_rules = (
            LayerRules.parse(DEFAULT_BITS, BITS, default=True) if bits is None else LayerRules.parse(bits, BITS)
        )
        if method not in METHODS:
            raise ConfigError(f"method {method!r}: expected one of {', '.join(METHODS)}")
        if quantizer not in QUANTIZERS:
            raise ConfigError(f"quantizer {quantizer!r}: expected one of {', '.join(QUANTIZERS)}")
        if isinstance(dampening, bool) or not isinstance(dampening, int | float) or not 0 < dampening <= 1:
            raise ConfigError(f"dampening {dampening!r}: must be a number in (0, 1] (a fraction of H's mean diagonal)")
        if isinstance(block, bool) or not isinstance(block, int) or block < 1:
            raise ConfigError(f"block {block!r}: must be an integer of at least 1")
        if not isinstance(sequential, bool):
            raise ConfigError(f"sequential {sequential!r}: must be true or false")
        if unseen not in ("error", "magnitude"):
            raise ConfigError(f"unseen {unseen!r}: expected 'error' or 'magnitude'")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed {seed!r}: must be an integer")
        self._set(
            sparsity=sparsity_rules, bits=bits_rules, method=method, quantizer=quantizer,
            dampening=float(dampening), block=block, sequential=sequential, unseen=unseen, seed=seed,
        )  # fmt: skip


@dataclass
class LayerCalibration:
    """What calibration did to one layer."""

    name: str
    kind: str
    sparsity: float  # zeros / size after
    bits: int | None
    columns: int  # calibration input columns its H was summed over
    width: int  # H's side: the columns of one row of the weight
    dampening: float | None  # of H's mean diagonal, as used (None: magnitude)
    retries: int  # Cholesky failures before that dampening
    error: float  # tr(dW H dW^T) / tr(W H W^T): the output error on the calibration inputs
    refit: bool  # the codebook was refitted to H after the rounding (it lowered the error)
    seconds: float
    solver: str = "sparsegpt"  # or "magnitude": the data-free method (asked for, or `unseen="magnitude"`)

    @property
    def underdetermined(self) -> bool:
        """Fewer calibration columns than H's side: H is singular and only the dampening makes it solvable."""
        return self.columns < self.width


@dataclass
class CalibrateReport:
    method: str
    layers: list[LayerCalibration]
    batches: int
    passes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "batches": self.batches, "passes": self.passes, "seconds": self.seconds,
            "layers": [{**asdict(layer), "underdetermined": layer.underdetermined} for layer in self.layers],
        }  # fmt: skip

    def to_markdown(self) -> str:
        rows = [
            [
                layer.name, layer.kind, layer.solver, f"{layer.sparsity:.3f}", layer.bits or "off",
                f"{layer.columns:,}", f"{layer.width:,}", "-" if layer.dampening is None else f"{layer.dampening:g}",
                "-" if math.isnan(layer.error) else f"{100 * layer.error:.3g}",
            ]
            for layer in self.layers
        ]  # fmt: skip
        table = markdown_table(
            ["layer", "kind", "solver", "sparsity", "bits", "columns", "width", "dampening", "output error (%)"], rows
        )
        few = [layer.name for layer in self.layers if layer.underdetermined]
        note = (
            f"\n\n{len(few)} layer(s) saw fewer calibration columns than their width (first: {few[0]}): their H "
            "is singular and the dampening decides what the data cannot; more calibration inputs help."
            if few
            else ""
        )
        return (
            f"{table}\n\ncolumns: input columns H was summed over (positions x samples); width: the inputs one "
            "output sums over; dampening: added to H's diagonal as a fraction of its mean; output error: "
            "tr(dW H dW^T) / tr(W H W^T), the relative squared error of the layer's output on the calibration "
            f"inputs. {self.method}, {self.batches} batches, {self.passes} calibration passes, "
            f"{self.seconds:.1f} s.{note}"
        )


@dataclass
class _Layer:
    info: LayerInfo
    sites: list[WeightSite]
    sparsity: float
    bits: int | None
    sources: list[Source]  # empty: the hooks cannot see this weight's inputs (`unseen` says why)
    unseen: str | None = None
    levels: int | None = None  # nonzero codebook levels (2^bits - 1 from bits rules; any count from a plan)

    def __post_init__(self) -> None:
        if self.levels is None and self.bits is not None:
            self.levels = (1 << self.bits) - 1

    @property
    def module(self) -> nn.Module:
        return self.sites[0].module

    @property
    def parameter(self) -> torch.Tensor:
        site = self.sites[0]
        return getattr(site.module, site.attribute)


def _plan(
    model: nn.Module, config: CalibrateConfig, plan: Mapping[str, tuple[float, int | None]] | None = None
) -> list[_Layer]:
    """The selected layers: by the config's rules, or by `plan` (name -> (sparsity, nonzero levels))."""
    found = module_layers(model)
    if plan is None:
        sparsities, bits = config.sparsity.resolve(found), config.bits.resolve(found)
        levels: dict[str, int | None] = {}
    else:
        unknown = sorted(set(plan) - {info.name for info in found})
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a compressible weight of this model")
        sparsities = {name: s for name, (s, _) in plan.items()}
        levels = {name: count for name, (_, count) in plan.items()}
        bits = {name: max(1, math.ceil(math.log2(count + 1))) for name, count in levels.items() if count}
    sites = weight_sites(model)
    layers = []
    for info in found:
        if info.name not in sparsities and info.name not in bits:
            continue
        sparsity, width = sparsities.get(info.name, 0.0), bits.get(info.name)
        layer = _Layer(info, sites[info.name], sparsity, width, [], levels=levels.get(info.name))
        for site in layer.sites:
            if own_items(site.module, site.attribute):
                raise ConfigError(f"{info.name}: already pruned or quantized; finalize_(model) first")
            source = input_sources(model, site.module, site.attribute)
            if isinstance(source, str):
                layer.unseen = source
            else:
                layer.sources.append(source)
        if layer.unseen is not None:
            layer.sources = []
            if config.method == "sparsegpt" and config.unseen == "error":
                raise ConfigError(
                    f"{info.name}: {layer.unseen}. Leave it out ('{info.name}=off' in sparsity and bits), "
                    "take the data-free method for such layers (unseen='magnitude') or for all (method='magnitude')"
                )
        layers.append(layer)
    if not layers:
        raise ConfigError("calibrate_: the rules select no layer of this model")
    return layers


def _survey(
    model: nn.Module, layers: list[_Layer], batches: list[Any], forward: Forward
) -> tuple[list[str], dict[str, list[int]], set[str]]:
    """One plain pass: the order layers first run in, their calls per batch, and the layers whose first
    input is the very tensor the layer before them took (one pass can collect both)."""
    order: list[str] = []
    calls: dict[str, list[int]] = {layer.info.name: [0] * len(batches) for layer in layers}
    shares_input: set[str] = set()
    previous: list[Any] = [None]  # the last hooked input: one activation kept alive, no more
    current = [0]
    handles = []

    def hook_for(name: str, derived: bool) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0] if args else next(iter(kwargs.values()), None)
            if current[0] == 0 and name not in order:
                if order and x is previous[0] and not derived:
                    shares_input.add(name)
                order.append(name)
            previous[0] = x
            calls[name][current[0]] += 1

        return hook

    try:
        for layer in layers:
            for source in layer.sources:
                hook = hook_for(layer.info.name, source.derived)
                handles.append(source.hook.register_forward_pre_hook(hook, with_kwargs=True))
        run_batches(model, batches, forward, on_batch=lambda i: current.__setitem__(0, i))
    finally:
        for handle in handles:
            handle.remove()
        previous[0] = None
    ran = set(order) | {name for name, counts in calls.items() if any(counts)}
    order += [name for name in calls if name in ran and name not in order]  # first ran after batch 0
    return order, calls, shares_input


def calibrate_(
    model: nn.Module,
    inputs: Any,
    config: CalibrateConfig | None = None,
    *,
    sparsity: RulesSource | None = None,
    bits: RulesSource | None = None,
    method: str | None = None,
    forward: Forward | None = None,
    progress: bool = False,
) -> CalibrateReport:
    """Prune and quantize `model` in place from calibration `inputs`; returns the per-layer report.

    Args:
        inputs: the calibration batches: an iterable (list, DataLoader) of what the model takes, each a
            tensor, a tuple of positional inputs or a dict of keyword inputs (a single tensor is one batch).
        config: a CalibrateConfig; or give `sparsity`, `bits`, `method` (the others at their defaults).
        forward: `forward(model, batch)` where a batch is not simply the model's arguments.
        progress: a progress line per layer group on stderr.

    The model runs in eval mode during calibration (its mode is restored after). If anything fails
    (an input that does not fit, a layer that never runs), the model is left exactly as it was.
    """
    check_module(model, "model")
    if config is None:
        config = CalibrateConfig(sparsity=sparsity, bits=bits, method=method or "sparsegpt")
    elif sparsity is not None or bits is not None or method is not None:
        raise ConfigError("calibrate_: give either a config or sparsity / bits / method, not both")
    return _run(model, inputs, config, _plan(model, config), forward, progress)


def calibrate_plan_(
    model: nn.Module,
    inputs: Any,
    plan: Mapping[str, tuple[float, int | None]],
    config: CalibrateConfig | None = None,
    *,
    forward: Forward | None = None,
    progress: bool = False,
) -> CalibrateReport:
    """`calibrate_` with each layer's sparsity and number of nonzero codebook levels given by `plan`
    (name -> (sparsity, levels or None)): any level count, as a size budget chooses them. The config
    gives the solver's settings; its rules are not used."""
    check_module(model, "model")
    config = config or CalibrateConfig()
    return _run(model, inputs, config, _plan(model, config, plan), forward, progress)


def _run(
    model: nn.Module,
    inputs: Any,
    config: CalibrateConfig,
    layers: list[_Layer],
    forward: Forward | None,
    progress: bool,
) -> CalibrateReport:
    batches = as_batches(inputs)
    forward = forward or default_forward
    for layer in layers:
        require_finite(layer.parameter.detach(), layer.info.name, "calibrate")
    modes = {module: module.training for module in model.modules()}
    originals = {layer.info.name: layer.parameter.detach().clone() for layer in layers}
    start = time.perf_counter()
    model.eval()
    try:
        report = _calibrate(model, layers, batches, forward, config, progress)
    except BaseException:
        with torch.no_grad():
            for layer in layers:
                layer.parameter.copy_(originals[layer.info.name])
        raise
    finally:
        for module, mode in modes.items():
            module.train(mode)
    report.seconds = time.perf_counter() - start
    return report


def collect_hessians(
    model: nn.Module, inputs: Any, names: Iterable[str], *, forward: Forward | None = None
) -> dict[str, torch.Tensor]:
    """H of each named layer from the model as it is, in one pass over `inputs` (eval mode; the model
    is not changed). Each H is (groups, width, width), float64."""
    check_module(model, "model")
    wanted = list(names)
    layers = _plan(model, CalibrateConfig(), {name: (0.0, None) for name in wanted})  # only the sources are used
    unseen = [layer for layer in layers if not layer.sources]
    if unseen:
        raise ConfigError(f"{unseen[0].info.name}: {unseen[0].unseen}")
    batches = as_batches(inputs)
    modes = {module: module.training for module in model.modules()}
    collector = Collector(
        {layer.info.name: layer.sources for layer in layers},
        {layer.info.name: _groups_and_width(layer) for layer in layers},
    )
    model.eval()
    try:
        collector.open()
        run_batches(model, batches, forward or default_forward, on_batch=collector.start_batch)
    finally:
        collector.close()
        for module, mode in modes.items():
            module.train(mode)
    never = [name for name in wanted if collector.stats[name].calls == 0]
    if never:
        raise InputError(f"{never[0]}: never ran during calibration; its inputs are unknown")
    return {name: collector.stats[name].hessian for name in wanted}


def _calibrate(
    model: nn.Module,
    layers: list[_Layer],
    batches: list[Any],
    forward: Forward,
    config: CalibrateConfig,
    progress: bool,
) -> CalibrateReport:
    order, calls, shares_input = _survey(model, layers, batches, forward)
    by_name = {layer.info.name: layer for layer in layers}
    hooked = [layer.info.name for layer in layers if layer.sources]
    never = [name for name in hooked if name not in order]
    if never:
        more = f" (and {len(never) - 1} more)" if len(never) > 1 else ""
        raise InputError(
            f"{never[0]}: never ran during calibration{more}; its inputs are unknown, so it cannot be solved. "
            "Check the inputs reach it (forward=...) or leave it out of the rules"
        )
    groups: list[list[str]] = []
    if config.sequential:
        for name in order:  # consecutive layers reading the same tensor share a pass
            if groups and name in shares_input:
                groups[-1].append(name)
            else:
                groups.append([name])
    else:
        groups = [order]
    records: dict[str, LayerCalibration] = {}
    for group in progress_lines(groups, "calibrate", "layer group", progress):
        collector = Collector(
            {name: by_name[name].sources for name in group},
            {name: _groups_and_width(by_name[name]) for name in group},
        )
        if config.sequential:  # stop each forward once the group's layers have had their calls
            collector.calls_per_batch = {name: calls[name] for name in group}
        try:
            collector.open()
            run_batches(model, batches, forward, on_batch=collector.start_batch)
        finally:
            collector.close()
        for name in group:
            records[name] = _solve_layer(by_name[name], collector.stats[name], config)
    for layer in layers:  # magnitude on layers the hooks cannot see: no H, no measured error
        if layer.info.name not in records:
            records[layer.info.name] = _solve_layer(layer, None, config)
    ordered = [records[layer.info.name] for layer in layers]
    return CalibrateReport(config.method, ordered, len(batches), 1 + len(groups), 0.0)


def _groups_and_width(layer: _Layer) -> tuple[int, int]:
    shape = matrix_view(layer.module, layer.sites[0].attribute, layer.parameter.detach()).shape
    return shape[0], shape[2]


def _solve_layer(layer: _Layer, stats: Any, config: CalibrateConfig) -> LayerCalibration:
    start = time.perf_counter()
    name, module, parameter = layer.info.name, layer.module, layer.parameter
    attribute = layer.sites[0].attribute
    dtype = parameter.dtype
    original = matrix_view(module, attribute, parameter.detach().to(torch.float64)).contiguous()
    hessian = None if stats is None else stats.hessian
    damp, retries, refit = None, 0, False
    if config.method == "magnitude" or hessian is None:
        weight = parameter.detach().to(torch.float64)
        if layer.sparsity > 0:
            weight = weight * magnitude_mask(weight, layer.sparsity, name)
        if layer.bits is not None:
            weight = (
                share_weights(weight.to(dtype), layer.bits, seed=config.seed, name=name, method=config.quantizer)
                .weight()
                .to(torch.float64)
            )
        result = matrix_view(module, attribute, weight)
    else:
        result, damp, retries, refit = _sparsegpt(layer, original, hessian, config, dtype)
    error = math.nan
    if hessian is not None:
        err, base = output_error(original, result, hessian)
        error = max(err, 0.0) / base if base > 0 else 0.0  # (rounding can leave -1e-7 where it is 0)
    new = from_matrix_view(module, result, parameter.shape).to(dtype)
    with torch.no_grad():
        parameter.copy_(new)
    zeros = int((new == 0).sum())
    return LayerCalibration(
        name=name, kind=layer.info.kind.value, sparsity=zeros / max(new.numel(), 1), bits=layer.bits,
        columns=0 if stats is None else stats.samples, width=0 if hessian is None else hessian.shape[-1],
        dampening=damp, retries=retries, error=error, refit=refit, seconds=time.perf_counter() - start,
        solver="magnitude" if damp is None else "sparsegpt",
    )  # fmt: skip


def _sparsegpt(
    layer: _Layer, original: torch.Tensor, hessian: torch.Tensor, config: CalibrateConfig, dtype: torch.dtype
) -> tuple[torch.Tensor, float, int, bool]:
    name = layer.info.name
    groups = original.shape[0]
    factors = [inverse_factor(hessian[g], config.dampening, name) for g in range(groups)]
    damp, retries = max(f.dampening for f in factors), max(f.retries for f in factors)
    pruned = original.clone()
    if layer.sparsity > 0:
        for g in range(groups):
            pruned[g], _ = solve(
                original[g], factors[g], sparsity=layer.sparsity, keep_zero=original[g] == 0, block=config.block
            )
    if layer.levels is None:
        return pruned, damp, retries, False
    diagonal = torch.diagonal(hessian, dim1=-2, dim2=-1).unsqueeze(1).expand_as(pruned)
    levels = fit_codebook(pruned, layer.levels, config.quantizer, diagonal, config.seed, name)
    if levels.numel() == 0:
        return pruned, damp, retries, False
    levels = _in_dtype(levels, dtype, name)
    rounding = Levels(levels)
    result = pruned.clone()
    for g in range(groups):
        result[g], _ = solve(pruned[g], factors[g], levels=rounding, keep_zero=pruned[g] == 0, block=config.block)
    symbols = torch.where(result != 0, rounding.symbols(result) + 1, 0)
    table = torch.cat([levels.new_zeros(1), levels])
    best, _ = output_error(original, table[symbols], hessian)
    refitted = refit_codebook(original, symbols, levels, hessian)
    refit = False
    if bool(torch.isfinite(refitted).all()):
        candidate = refitted.to(dtype).to(torch.float64)
        if not bool((candidate == 0).any()):
            trial = torch.cat([candidate.new_zeros(1), candidate])[symbols]
            error, _ = output_error(original, trial, hessian)
            if error < best:
                table, refit = torch.cat([candidate.new_zeros(1), candidate]), True
    return table[symbols], damp, retries, refit


def _in_dtype(levels: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
    """Levels as the weight's dtype stores them (so rounding targets representable values)."""
    stored = levels.to(dtype).to(torch.float64)
    if bool((stored == 0).any()):
        raise InputError(f"{name}: a codebook level rounds to zero in {dtype}")
    return stored
