"""Calibration statistics: the second moment `H = sum x x^T` of the columns each weight multiplies.

A layer's weight, viewed as a matrix `W` of (rows, columns), computes `W x` for every column `x` of its
input: the input vector of a Linear (over all leading dimensions) or of Hugging Face's `Conv1D`, the
im2col patch of a convolution (channels of one group times kernel positions, with the layer's padding,
stride and dilation). `H` (one per group of a grouped convolution) is what the layer solvers need: the
output error of a changed weight `W'` on the calibration inputs is `tr((W - W') H (W - W')^T)`.

The statistics are accumulated on the fly from forward pre-hooks, chunk by chunk in float32 products
summed into float64, so memory is one H per layer being collected plus a bounded work array, never the
activations of the whole calibration set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidcompress.errors import ConfigError, InputError
from vidcompress.layers import is_hf_conv1d

# Rows of im2col columns turned into one H product at a time (bounds the work array: rows x width).
CHUNK_ELEMENTS = 1 << 24


def matrix_view(module: nn.Module, attribute: str, weight: torch.Tensor) -> torch.Tensor:
    """The weight as (groups, rows, columns): the matrix that multiplies each input column. A grouped
    convolution's groups split its channels; attention's fused in_proj_weight splits into the query,
    key and value projections, each with its own input."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return weight.reshape(module.groups, weight.shape[0] // module.groups, -1)
    if is_hf_conv1d(module):
        return weight.t().unsqueeze(0)
    if isinstance(module, nn.MultiheadAttention) and attribute == "in_proj_weight":
        return weight.reshape(3, weight.shape[0] // 3, weight.shape[1])
    return weight.unsqueeze(0)


def from_matrix_view(module: nn.Module, matrix: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of `matrix_view`."""
    if is_hf_conv1d(module):
        return matrix[0].t().contiguous()
    return matrix.reshape(tuple(shape))


Chunks = Iterable[list[torch.Tensor]]  # the input columns, in chunks: each chunk one (n, width) matrix per group


@dataclass(frozen=True)
class Source:
    """Where one use of a weight gets its input columns: a forward pre-hook on `hook` (with its
    positional and keyword arguments) and the function turning them into columns. `derived` marks
    columns computed from the hooked module's own weights (attention's output projection): such a layer
    is never collected in the same pass as those weights."""

    hook: nn.Module
    extract: Callable[[tuple[Any, ...], dict[str, Any]], Chunks]
    derived: bool = False


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    x = args[0] if args else next(iter(kwargs.values()), None)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"its input is not a tensor ({type(x).__name__})")
    return x


def input_sources(model: nn.Module, module: nn.Module, attribute: str) -> Source | str:
    """The Source of `module.<attribute>`'s input columns, or why the hooks cannot see them."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "a transposed convolution (its input columns are not an im2col of its input)"
    if isinstance(module, nn.modules.conv._ConvNd):
        conv = module
        return Source(conv, lambda args, kwargs: _conv_columns(conv, _first_tensor(args, kwargs)))
    if isinstance(module, nn.MultiheadAttention):
        mha = module
        if attribute == "in_proj_weight":
            return Source(mha, lambda args, kwargs: _attention_inputs(mha, args, kwargs, (0, 1, 2)))
        which = {"q_proj_weight": 0, "k_proj_weight": 1, "v_proj_weight": 2}[attribute]
        return Source(mha, lambda args, kwargs: _attention_inputs(mha, args, kwargs, (which,)))
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        weight = getattr(module, attribute)
        width = weight.shape[0] if is_hf_conv1d(module) else weight.shape[1]
        attentions = (m for m in model.modules() if isinstance(m, nn.MultiheadAttention))
        owner = next((m for m in attentions if m.out_proj is module), None)
        if owner is not None:
            return _output_projection(owner, width)
        return Source(module, lambda args, kwargs: _rows(_first_tensor(args, kwargs), width))
    kind = type(module).__name__
    return f"a {kind} weight ({attribute}); calibrated solvers cover Linear, Conv1D, ConvNd and attention"


def _output_projection(mha: nn.MultiheadAttention, width: int) -> Source:
    return Source(mha, lambda args, kwargs: _rows(_attention_output(mha, args, kwargs), width), derived=True)


def _rows(x: torch.Tensor, width: int) -> Chunks:
    if x.shape[-1] != width:
        raise InputError(f"input of width {x.shape[-1]} where the weight takes {width}")
    flat = x.reshape(-1, width)
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, flat.shape[0], step):
        yield [flat[start : start + step]]


_ATTENTION_ARGUMENTS = (
    "query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal",
)  # fmt: skip


def _attention_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(zip(_ATTENTION_ARGUMENTS, args, strict=False))
    bound.update(kwargs)
    return bound


def _attention_inputs(
    mha: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any], which: tuple[int, ...]
) -> Chunks:
    """Query, key and value as the projections see them (one group each)."""
    bound = _attention_arguments(args, kwargs)
    inputs = [bound["query"], bound["key"], bound["value"]]
    yield [inputs[i].reshape(-1, inputs[i].shape[-1]) for i in which]


def _attention_output(mha: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The attention's output before its output projection: the same computation with an identity
    projection and no bias (dropout off, as in eval mode)."""
    bound = _attention_arguments(args, kwargs)
    query, key, value = bound["query"], bound["key"], bound["value"]
    if mha.batch_first and query.dim() == 3:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    identity = torch.eye(mha.embed_dim, dtype=query.dtype, device=query.device)
    out, _ = F.multi_head_attention_forward(
        query, key, value, mha.embed_dim, mha.num_heads, mha.in_proj_weight, mha.in_proj_bias, mha.bias_k,
        mha.bias_v, mha.add_zero_attn, 0.0, identity, None, training=False,
        key_padding_mask=bound.get("key_padding_mask"), need_weights=False, attn_mask=bound.get("attn_mask"),
        use_separate_proj_weight=not mha._qkv_same_embed_dim, q_proj_weight=mha.q_proj_weight,
        k_proj_weight=mha.k_proj_weight, v_proj_weight=mha.v_proj_weight, is_causal=bool(bound.get("is_causal")),
    )  # fmt: skip
    return out


def _conv_columns(module: nn.modules.conv._ConvNd, x: torch.Tensor) -> Iterable[list[torch.Tensor]]:
    dims = len(module.kernel_size)
    if x.ndim == dims + 1:
        x = x.unsqueeze(0)  # an unbatched input
    if x.ndim != dims + 2 or x.shape[1] != module.in_channels:
        sizes = ("L", "H, W", "T, H, W")[dims - 1] if dims <= 3 else f"{dims} sizes"
        raise InputError(
            f"input of shape {tuple(x.shape)} where the convolution takes (N, {module.in_channels}, {sizes})"
        )
    pad = module._reversed_padding_repeated_twice
    if any(pad):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, pad, mode=mode)
    for axis in range(dims):
        reach = module.dilation[axis] * (module.kernel_size[axis] - 1) + 1
        x = x.unfold(2 + axis, reach, module.stride[axis])
    if any(d > 1 for d in module.dilation):  # keep every dilation-th tap of each window
        taps: tuple[Any, ...] = (Ellipsis, *(slice(None, None, d) for d in module.dilation))
        x = x[taps]
    # (N, C, O_1..O_d, k_1..k_d) -> (N, O_1, O_2.., C, k_1..k_d): a row per output position
    order = [0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims)]
    x = x.permute(order)
    groups, per_group = module.groups, module.in_channels // module.groups
    width = module.in_channels * math.prod(module.kernel_size)
    positions_per_row = math.prod(x.shape[2 : 1 + dims])  # output positions in one step of the first axis
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(width * positions_per_row, 1))
    for n in range(x.shape[0]):
        sample = x[n]
        for start in range(0, sample.shape[0], rows_per_chunk):
            chunk = sample[start : start + rows_per_chunk]
            if chunk.numel() == 0:
                continue
            chunk = chunk.reshape(-1, module.in_channels, *module.kernel_size)
            yield [chunk[:, g * per_group : (g + 1) * per_group].reshape(chunk.shape[0], -1) for g in range(groups)]


@dataclass
class Statistics:
    """One layer's accumulated second moments."""

    hessian: torch.Tensor  # (groups, width, width), float64
    samples: int = 0  # input columns seen (per group)
    calls: int = 0


def accumulate(stats: Statistics, chunks: Iterable[list[torch.Tensor]]) -> None:
    for chunk in chunks:
        for g, block in enumerate(chunk):
            block = block.detach().to(torch.float32)
            if not bool(torch.isfinite(block).all()):
                raise InputError("the calibration input holds NaN or inf")
            stats.hessian[g] += (block.t() @ block).to(torch.float64)
        stats.samples += chunk[0].shape[0]


class StopForward(Exception):
    """Raised from a hook once every layer being collected has seen its inputs: the rest of the forward
    pass is not needed."""


@dataclass
class Collector:
    """Forward pre-hooks that accumulate `Statistics` for some layers, removed by `close` (always)."""

    targets: dict[str, list[Source]]  # layer name -> where each use of its weight gets its input
    shapes: dict[str, tuple[int, int]]  # layer name -> (groups, width) of its matrix view
    stats: dict[str, Statistics] = field(default_factory=dict)
    calls_per_batch: dict[str, list[int]] | None = None  # stop each forward once all are reached
    _handles: list[Any] = field(default_factory=list)
    _batch_calls: dict[str, int] = field(default_factory=dict)
    _batch: int = 0

    def open(self) -> None:
        for name, sources in self.targets.items():
            groups, width = self.shapes[name]
            self.stats[name] = Statistics(torch.zeros(groups, width, width, dtype=torch.float64))
            for source in sources:
                self._handles.append(source.hook.register_forward_pre_hook(self._hook(name, source), with_kwargs=True))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def start_batch(self, index: int = 0) -> None:
        self._batch, self._batch_calls = index, dict.fromkeys(self.targets, 0)

    def _hook(self, name: str, source: Source) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            try:
                accumulate(self.stats[name], source.extract(args, kwargs))
            except InputError as error:
                raise InputError(f"{name}: {error}") from None
            self.stats[name].calls += 1
            self._batch_calls[name] += 1
            expected = self.calls_per_batch
            if expected is not None and all(self._batch_calls[n] >= expected[n][self._batch] for n in self.targets):
                raise StopForward

        return hook


Forward = Callable[[nn.Module, Any], Any]  # forward(model, batch): a batch through the model


def as_batches(inputs: Any) -> list[Any]:
    """The calibration batches as a list (they are walked once per pass); a tensor or dict is one batch."""
    if isinstance(inputs, torch.Tensor):
        return [inputs]  # one batch (iterating a tensor would drop its batch dimension)
    if isinstance(inputs, dict):
        return [inputs]
    if not isinstance(inputs, Iterable):
        raise InputError(f"calibration inputs: expected an iterable of batches, got {type(inputs).__name__}")
    batches = list(inputs)
    if not batches:
        raise InputError("calibration inputs: empty; give at least one batch of model inputs")
    return batches


def default_forward(model: nn.Module, batch: Any) -> Any:
    """A batch as a model takes it: a tensor, a tuple or list of positional inputs, or a dict of keywords."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, tuple | list):
        return model(*batch)
    return model(batch)


def run_batches(
    model: nn.Module,
    batches: Sequence[Any],
    forward: Callable[[nn.Module, Any], Any],
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Run every batch through the model without gradients, stopping each early where a hook says so;
    an error of the model's own becomes an InputError naming the batch."""
    with torch.no_grad():
        for index, batch in enumerate(batches):
            if on_batch is not None:
                on_batch(index)
            try:
                forward(model, batch)
            except StopForward:
                continue
            except InputError as error:
                raise InputError(f"calibration batch {index}: {error}") from None
            except ConfigError:
                raise
            except Exception as error:  # the model's own complaint about an input: say which batch
                raise InputError(
                    f"calibration batch {index} does not fit the model: {type(error).__name__}: {error}"
                ) from None
