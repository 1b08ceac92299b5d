"""Inference modules that multiply by the compressed layout: SparseLinear and SparseConv (1-D/2-D/3-D),
and `load_sparse`, which swaps them into a model where a probe finds them faster.

Convolutions run as im2col (patches through `Tensor.unfold`) followed by Y = W X on the layout.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from vidcompress.errors import ConfigError
from vidcompress.kernels.cpu import csr_matrix, spmm_cpu
from vidcompress.kernels.cpu_numba import conv_numba, numba_available
from vidcompress.kernels.cuda import conv_cuda, spmm_cuda
from vidcompress.kernels.layout import SparseLayout
from vidcompress.layers import is_hf_conv1d, weight_attributes


def sparse_matmul(layout: SparseLayout, x: torch.Tensor) -> torch.Tensor:
    """W @ X on the layout's device: the CUDA kernels on a GPU, scipy's CSR kernels on the CPU."""
    if layout.device.type == "cuda":
        return spmm_cuda(layout, x)
    return spmm_cpu(layout, x)


class _SparseBase(nn.Module):
    """The layout as buffers (so they move with `.to()` and appear in `state_dict`), the bias, and on
    the CPU with `cache=True` the layout expanded to a scipy CSR matrix (8 bytes a nonzero more, built
    on the first call): faster calls for more memory."""

    row_pointers: torch.Tensor
    columns: torch.Tensor
    symbols: torch.Tensor
    codebook: torch.Tensor

    def __init__(self, layout: SparseLayout, bias: torch.Tensor | None, cache: bool = False) -> None:
        super().__init__()
        self.shape = layout.shape
        for name in ("row_pointers", "columns", "symbols", "codebook"):
            self.register_buffer(name, getattr(layout, name))
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None
        self.cache = cache
        self._csr: scipy.sparse.csr_matrix | None = None
        self._csr_of: tuple[int, ...] = ()
        self._layout: SparseLayout | None = None
        self._layout_of: tuple[torch.Tensor, ...] = ()
        # What `weight` reads back as: the replaced layer's weight shape and dtype (set by load_sparse).
        self.weight_shape: tuple[int, ...] = tuple(layout.shape)
        self.weight_dtype = torch.float32
        self.weight_transposed = False  # Hugging Face Conv1D stores (in, out)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight, expanded from the layout at each access and not kept: for code that reads
        a layer's `weight` (its dtype or device, as Hugging Face models do) while the product runs on
        the layout."""
        dense = self.layout.to_dense().to(self.weight_dtype)
        return (dense.T if self.weight_transposed else dense).reshape(self.weight_shape)

    @property
    def layout(self) -> SparseLayout:
        """The buffers as a SparseLayout (no copy), kept while the buffers are the same tensors: the
        layout caches its host arrays, which saves the CPU kernels a conversion a call. `.to()`,
        `.half()` and the like replace the buffers, and the next call builds a new layout."""
        if self.codebook.dtype != torch.float32:  # after .half(): a float copy, made afresh so it is never stale
            return SparseLayout(self.shape, self.row_pointers, self.columns, self.symbols, self.codebook.float())
        buffers = (self.row_pointers, self.columns, self.symbols, self.codebook)
        if self._layout is None or any(a is not b for a, b in zip(buffers, self._layout_of, strict=True)):
            self._layout = SparseLayout(self.shape, *buffers)
            self._layout_of = buffers
        return self._layout

    def _apply(self, fn: Any, recurse: bool = True) -> _SparseBase:
        # `.to()`, `.half()`, `.cuda()`: the buffers are replaced, so the kept layout (and the old
        # buffers it holds) goes now rather than at the next call.
        self._layout, self._layout_of = None, ()
        return super()._apply(fn, recurse)

    def kernel(self) -> str:
        """Which kernel this module's products run on, where its buffers are now (for the report)."""
        if self.codebook.device.type == "cuda":
            return "kernel: CUDA SpMM on the layout"
        if self.cache:
            return "kernel: scipy CSR, expanded once (cache=True)"
        if numba_available():
            return "kernel: numba on the layout"
        return "kernel: scipy CSR expanded per call (numba missing: slow)"

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        if not self.cache or layout.device.type != "cpu":
            return sparse_matmul(layout, x)
        key = tuple(t.data_ptr() for t in (self.row_pointers, self.columns, self.symbols, self.codebook))
        if self._csr is None or key != self._csr_of:  # built once; again only if the buffers were replaced
            self._csr, self._csr_of = csr_matrix(layout), key
        return spmm_cpu(layout, x, self._csr)


class SparseLinear(_SparseBase):
    """y = x W^T + b with W held as a SparseLayout."""

    def __init__(self, layout: SparseLayout, bias: torch.Tensor | None = None, cache: bool = False) -> None:
        super().__init__(layout, bias, cache)
        self.in_features, self.out_features = layout.shape[1], layout.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, cache: bool = False) -> SparseLinear:
        return cls(SparseLayout.from_dense(linear.weight), linear.bias, cache)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = self._matmul(flat.T.contiguous()).T.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


PATCH_BYTES = 64 << 20  # the most im2col memory a SparseConv call builds at once


class SparseConv(_SparseBase):
    """A Conv1d/2d/3d (groups 1; any stride, padding, dilation) with W.reshape(out, -1) as a SparseLayout."""

    def __init__(
        self,
        layout: SparseLayout,
        bias: torch.Tensor | None,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        padding_mode: str = "zeros",
        cache: bool = False,
        dilation: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(layout, bias, cache)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation = dilation or tuple(1 for _ in kernel_size)
        self.padding_mode = padding_mode
        self.out_channels = layout.shape[0]
        self.weight_shape = (layout.shape[0], layout.shape[1] // math.prod(kernel_size), *kernel_size)

    @classmethod
    def from_conv(cls, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, cache: bool = False) -> SparseConv:
        reason = unsupported_reason(conv)
        if reason is not None:
            raise ConfigError(f"{type(conv).__name__}: {reason}")
        return cls(
            SparseLayout.from_dense(conv.weight),
            conv.bias,
            tuple(conv.kernel_size),
            tuple(conv.stride),
            tuple(conv.padding),  # type: ignore[arg-type]
            conv.padding_mode,
            cache,
            tuple(conv.dilation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = len(self.kernel_size)
        if any(self.padding):
            pad = [p for p in reversed(self.padding) for _ in range(2)]
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, pad, mode=mode)
        if self._direct(x):
            direct = conv_cuda if x.device.type == "cuda" else conv_numba
            out = direct(self.layout, x.detach(), self.kernel_size, self.dilation, self.stride).to(x.dtype)
            if self.bias is not None:
                out = out + self.bias.view(1, -1, *([1] * dims))
            return out.contiguous()
        # The patch matrix (C * prod(kernel) rows, a column per output position) is built a slab of
        # the first spatial axis at a time, each at most PATCH_BYTES: whole, I3D's 7x7x7 stem on a
        # 64-frame clip would need 1.7 GB of patches.
        spans = [(size - 1) * gap + 1 for size, gap in zip(self.kernel_size, self.dilation, strict=True)]
        outputs = [(x.shape[2 + axis] - spans[axis]) // self.stride[axis] + 1 for axis in range(dims)]
        column_bytes = 4 * self.layout.shape[1] * x.shape[0] * math.prod(outputs[1:])
        rows = max(1, PATCH_BYTES // max(column_bytes, 1))
        slabs = [
            self._slab(
                x.narrow(2, start * self.stride[0], (min(rows, outputs[0] - start) - 1) * self.stride[0] + spans[0])
            )
            for start in range(0, outputs[0], rows)
        ]
        out = slabs[0] if len(slabs) == 1 else torch.cat(slabs, dim=2)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, *([1] * dims))
        return out.contiguous()

    # The CUDA direct convolution (`conv_cuda`) has not yet run on a GPU: until `pytest -m gpu` and the
    # GPU benchmark have measured it, convolutions on a GPU keep im2col + SpMM unless this is set.
    direct_on_gpu: bool = False

    def kernel(self) -> str:
        if self.codebook.device.type == "cuda":
            return "kernel: CUDA direct convolution" if self.direct_on_gpu else "kernel: im2col + CUDA SpMM"
        if not self.cache and numba_available():
            return "kernel: numba direct convolution on the layout"
        return f"kernel: im2col + {super().kernel().removeprefix('kernel: ')}"

    def _direct(self, x: torch.Tensor) -> bool:
        """Whether this call runs a direct kernel (no im2col): `conv_numba` on the CPU with numba unless
        asked to keep an expanded CSR (`cache=True` keeps im2col + scipy's kernel), `conv_cuda` on a GPU
        when `direct_on_gpu` is set."""
        if x.device.type == "cuda":
            return self.direct_on_gpu
        return not self.cache and x.device.type == "cpu" and numba_available()

    def _slab(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (no bias) of an already padded input: im2col, then Y = W X on the layout."""
        dims = len(self.kernel_size)
        patches = x
        for axis, (size, step, gap) in enumerate(zip(self.kernel_size, self.stride, self.dilation, strict=True)):
            # A dilated window: unfold its full span, then keep every `gap`-th element of it.
            patches = patches.unfold(2 + axis, (size - 1) * gap + 1, step)
            if gap != 1:
                patches = patches[..., ::gap]
        # (N, C, *out_spatial, *kernel) -> (C * prod(kernel), N * prod(out_spatial))
        batch = x.shape[0]
        spatial = patches.shape[2 : 2 + dims]
        order = [1, *range(2 + dims, 2 + 2 * dims), 0, *range(2, 2 + dims)]
        columns = patches.permute(order).reshape(self.layout.shape[1], -1)
        out = self._matmul(columns.contiguous()).to(x.dtype)
        return out.reshape(self.out_channels, batch, *spatial).transpose(0, 1)


# The layer types a sparse module stands in for, with the methods whose stock versions it reproduces: a
# subclass that overrides one of them (TensorFlow-style "same" padding before F.conv2d, a scaled output)
# computes something the stand-in does not, so it stays dense.
_STOCK_METHODS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Linear: ("forward",),
    nn.Conv1d: ("forward", "_conv_forward"),
    nn.Conv2d: ("forward", "_conv_forward"),
    nn.Conv3d: ("forward", "_conv_forward"),
}


def overridden_reason(module: nn.Module) -> str | None:
    """Why a Linear or ConvNd subclass cannot be swapped (it overrides a method the stand-in
    reproduces), or None."""
    for base, methods in _STOCK_METHODS.items():
        if isinstance(module, base):
            changed = [m for m in methods if getattr(type(module), m) is not getattr(base, m)]
            if changed:
                return f"{type(module).__name__} overrides {base.__name__}.{changed[0]}: runs dense"
    return None


def unsupported_reason(module: nn.Module) -> str | None:
    """Why `module` cannot run on the sparse kernels (it then stays dense), or None."""
    reason = _kind_reason(module) or overridden_reason(module)
    if reason is None and (module._forward_hooks or module._forward_pre_hooks):
        reason = "has forward hooks, which a swapped module would not run: runs dense"
    return reason


def _kind_reason(module: nn.Module) -> str | None:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "transposed convolution: runs dense"
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups}): runs dense"
        if isinstance(module.padding, str):
            return f"padding={module.padding!r}: runs dense"
        return None
    if isinstance(module, nn.Embedding | nn.EmbeddingBag):
        return "embedding: a lookup, not a product"
    if isinstance(module, nn.RNNBase | nn.RNNCellBase):
        return f"recurrent layer ({type(module).__name__}): runs dense"
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        return None
    return f"{type(module).__name__}: no sparse module"


@dataclass(frozen=True)
class SparseChoice:
    """What `load_sparse` did with one encoded weight, and why."""

    name: str
    mode: str  # "sparse" or "dense"
    reason: str
    dense_ms: float | None = None  # the probe's times, when one ran
    sparse_ms: float | None = None


class SparseReport(list[SparseChoice]):
    """`load_sparse`'s choices, one per encoded weight (`model.sparse_report_`)."""

    def to_markdown(self) -> str:
        from vidcompress.report import markdown_table

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        rows = [[c.name, c.mode, c.reason, ms(c.dense_ms), ms(c.sparse_ms)] for c in self]
        return markdown_table(["weight", "runs", "why", "dense ms", "sparse ms"], rows)


# A layer goes sparse only when the probe measured it at least this much faster than dense: a smaller
# gain is within the run-to-run noise of a shared machine (+-10% here), and a layer swapped on noise
# can end up slower than the dense one it replaced.
PROBE_MARGIN = 0.10


def _compare_ms(dense: Callable[[], Any], sparse: Callable[[], Any], repeat: int = 7) -> tuple[float, float]:
    """(dense ms, sparse ms): medians of `repeat` interleaved calls after a warm-up of each, so that
    a slow spell of the machine falls on both sides rather than on whichever ran second."""
    dense()
    sparse()
    times: dict[Callable[[], Any], list[float]] = {dense: [], sparse: []}
    for round_ in range(repeat):
        for function in (dense, sparse) if round_ % 2 == 0 else (sparse, dense):
            start = time.perf_counter()
            function()
            times[function].append(time.perf_counter() - start)
    dense_ms, sparse_ms = (1e3 * sorted(times[f])[repeat // 2] for f in (dense, sparse))
    return dense_ms, sparse_ms


def _sparse_module(module: nn.Module, layout: SparseLayout, cache: bool) -> _SparseBase:
    """The sparse stand-in of a Linear, Hugging Face Conv1D or convolution, multiplying by `layout`;
    its `weight` reads back with the replaced weight's shape and dtype."""
    replacement = _stand_in(module, layout, cache)
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    replacement.weight_shape, replacement.weight_dtype = tuple(weight.shape), weight.dtype
    replacement.weight_transposed = is_hf_conv1d(module)
    return replacement


def _stand_in(module: nn.Module, layout: SparseLayout, cache: bool) -> _SparseBase:
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        bias = module.bias
        assert bias is None or isinstance(bias, torch.Tensor)
        return SparseLinear(layout, bias, cache)
    conv: Any = module
    return SparseConv(
        layout,
        conv.bias,
        tuple(conv.kernel_size),
        tuple(conv.stride),
        tuple(conv.padding),
        conv.padding_mode,
        cache,
        tuple(conv.dilation),
    )


def load_sparse(
    container: str | os.PathLike[str],
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    cache: bool = False,
    mode: str = "auto",
    example_inputs: Any = None,
) -> nn.Module:
    """Load a container into `model` and run its encoded layers on the compressed layout, in place.

    Linear layers, Hugging Face Conv1D and Conv1d/2d/3d (any stride, padding, dilation; groups 1) can
    run sparse. `mode="auto"` makes a layer sparse only where a probe on this machine measured the
    layer faster sparse than dense: with `example_inputs` (what `model(*example_inputs)` takes; a
    tensor is one input), each layer is timed whole, dense module against sparse module, on the input
    it receives in that call; without it, a Linear is timed on one vector and a convolution, whose
    dense kernel and input size the probe cannot know, stays dense. `"sparse"` swaps every layer that
    can; `"dense"` none.
    Everything else stays dense: grouped, depthwise and transposed convolutions, embeddings, recurrent
    layers, the projections inside `nn.MultiheadAttention` (which reads their weights directly), a
    subclass that overrides the stock `forward` (TensorFlow-style "same" padding, say) and a layer with
    forward hooks. Every swap is verified: both forms run on the layer's input from `example_inputs`
    (else a small random one) and a layer whose outputs differ by more than VERIFY_TOLERANCE of their
    scale stays dense. What was chosen and why, with the kernel each sparse layer runs, is in
    `model.sparse_report_` (a SparseReport; `.to_markdown()` prints it).

    `cache=True` (CPU): each sparse module keeps its layout expanded to CSR (8 bytes a nonzero more)
    after the first call, so later calls skip the expansion.
    """
    from vidcompress.codec import load_compressed, read_container
    from vidcompress.codec.container import read_layers, unwrap_model

    if mode not in ("auto", "sparse", "dense"):
        raise ConfigError(f"mode {mode!r}: expected 'auto', 'sparse' or 'dense'")
    coded = read_container(container)
    load_compressed(container, model)
    target = unwrap_model(model)
    if device is not None:
        target.to(device)
    owners = dict(target.named_modules())
    parents = {id(child): parent for parent in target.modules() for child in parent.children()}
    choices: list[SparseChoice | None] = []  # in container order; None: a candidate, decided below
    candidates: dict[str, _Candidate] = {}  # by module name
    for entry, data, codebook in read_layers(coded):  # one layer's streams in memory at a time
        name = entry.name
        module_name, _, attribute = name.rpartition(".")
        module = owners.get(module_name)
        if module is None or attribute not in weight_attributes(module):
            choices.append(SparseChoice(name, "dense", "not the weight of a layer module"))
            continue
        reason = unsupported_reason(module)
        if reason is None and isinstance(parents.get(id(module)), nn.MultiheadAttention):
            reason = "inside nn.MultiheadAttention, which reads the weight directly: runs dense"
        if reason is None and not module_name:
            reason = "the model is a bare layer: nothing to swap it in"
        if reason is not None:
            choices.append(SparseChoice(name, "dense", reason))
            continue
        if mode == "dense":
            choices.append(SparseChoice(name, "dense", "mode='dense'"))
            continue
        is_conv = isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        if mode == "auto" and is_conv and example_inputs is None:
            choices.append(SparseChoice(name, "dense", "a convolution with no example_inputs to probe it: runs dense"))
            continue
        layout = SparseLayout.from_container(entry, data, codebook, transpose=is_hf_conv1d(module))
        replacement = _sparse_module(module, layout, cache).to(module.weight.device)
        candidates[module_name] = _Candidate(len(choices), name, module, replacement)
        choices.append(None)
    probed = (
        _probe_in_forward(model, candidates, example_inputs, timed=mode == "auto") if example_inputs is not None else {}
    )
    for module_name, candidate in candidates.items():
        name, module, replacement = candidate.weight_name, candidate.module, candidate.replacement
        dense_ms = sparse_ms = None
        if module_name in probed:
            dense_ms, sparse_ms, mismatch = probed[module_name]
        elif mode == "auto" and isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            why_not = "a convolution not reached by the example input: runs dense"
            choices[candidate.slot] = SparseChoice(name, "dense", why_not)
            continue
        else:  # not reached by an example input, or none given: checked on an input made for it
            mismatch = verify_swap(module, replacement, synthetic_input(module, replacement))
            if mode == "auto":
                dense_ms, sparse_ms = _probe(module, replacement)
        if mismatch is not None:
            choices[candidate.slot] = SparseChoice(name, "dense", mismatch, dense_ms, sparse_ms)
            continue
        if mode == "auto":
            assert dense_ms is not None and sparse_ms is not None
            if sparse_ms > (1 - PROBE_MARGIN) * dense_ms:
                why = (
                    "the probe measured dense faster"
                    if sparse_ms >= dense_ms
                    else f"sparse under {PROBE_MARGIN:.0%} faster"
                )
                choices[candidate.slot] = SparseChoice(name, "dense", f"{why}: runs dense", dense_ms, sparse_ms)
                continue
        why = f"the probe measured sparse at least {PROBE_MARGIN:.0%} faster" if mode == "auto" else "mode='sparse'"
        parent_name, _, child = module_name.rpartition(".")
        setattr(target.get_submodule(parent_name) if parent_name else target, child, replacement)
        choices[candidate.slot] = SparseChoice(name, "sparse", f"{why}; {replacement.kernel()}", dense_ms, sparse_ms)
    model.sparse_report_ = SparseReport(c for c in choices if c is not None)  # type: ignore[assignment]
    return model


@dataclass(frozen=True)
class _Candidate:
    """A layer `load_sparse` may swap: its place in the report, weight name, module and stand-in."""

    slot: int
    weight_name: str
    module: nn.Module
    replacement: _SparseBase


def _probe_in_forward(
    model: nn.Module, candidates: dict[str, _Candidate], example_inputs: Any, timed: bool = True
) -> dict[str, tuple[float | None, float | None, str | None]]:
    """(dense ms, sparse ms, mismatch) per candidate layer reached when the model runs once on
    `example_inputs`: both forms run on the input the layer receives there, their outputs compared
    (`verify_swap`) and, if `timed`, their times measured. Each layer is probed when it is reached, so
    only one layer's input is held at a time (keeping every layer's input to probe them afterwards
    held all of a video model's activations at once: gigabytes for I3D)."""
    inputs = example_inputs if isinstance(example_inputs, tuple | list) else (example_inputs,)
    probed: dict[str, tuple[float | None, float | None, str | None]] = {}
    hooks = []
    for module_name, candidate in candidates.items():

        def probe(
            layer: nn.Module,
            args: tuple[Any, ...],
            name: str = module_name,
            stand_in: _SparseBase = candidate.replacement,
        ) -> None:
            if name not in probed and args and isinstance(args[0], torch.Tensor):  # its first call only
                x = args[0].detach()
                mismatch = verify_swap(layer, stand_in, x)
                dense_ms, sparse_ms = _probe_modules(layer, stand_in, x) if timed else (None, None)
                probed[name] = (dense_ms, sparse_ms, mismatch)

        hooks.append(candidate.module.register_forward_pre_hook(probe))
    try:
        with torch.no_grad():
            model.eval()(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return probed


# A swapped layer's output must equal the dense layer's within this fraction of the dense output's
# largest magnitude (float32 sums taken in another order differ by about 1e-6 of it), or within four
# epsilons of a narrower dtype.
VERIFY_TOLERANCE = 1e-4


def output_mismatch(dense: Any, sparse: Any) -> str | None:
    """Why a sparse layer's output is not the dense layer's (shape, or values beyond VERIFY_TOLERANCE
    of the dense output's scale), or None."""
    if not isinstance(dense, torch.Tensor) or not isinstance(sparse, torch.Tensor):
        return f"the dense layer returns {type(dense).__name__}, not a tensor: runs dense"
    if dense.shape != sparse.shape:
        return f"the sparse output's shape {tuple(sparse.shape)} is not dense's {tuple(dense.shape)}: runs dense"
    if dense.numel() == 0:
        return None
    scale = max(float(dense.abs().max()), torch.finfo(torch.float32).tiny)
    error = float((dense.double() - sparse.double()).abs().max())
    eps = torch.finfo(dense.dtype).eps if dense.is_floating_point() else 0.0
    if not error <= max(VERIFY_TOLERANCE, 4 * eps) * scale:  # NaN fails too
        return f"the sparse output differs from dense by {error / scale:.1e} of its scale: runs dense"
    return None


def verify_swap(module: nn.Module, replacement: _SparseBase, x: torch.Tensor) -> str | None:
    """Run the dense layer and its stand-in on `x` and compare their outputs (`output_mismatch`)."""
    with torch.no_grad():
        dense = module.forward(x)  # not module(x): a probing hook of the dense layer would run again
        try:
            sparse = replacement.forward(x)
        except (RuntimeError, ValueError) as error:
            return f"the sparse module fails on this input ({str(error).splitlines()[0]}): runs dense"
    return output_mismatch(dense, sparse)


def synthetic_input(module: nn.Module, replacement: _SparseBase) -> torch.Tensor:
    """A small random input a layer accepts, for checking a swap when no example input reached it: two
    rows for a Linear, one sample just over the kernel's span (plus a stride) for a convolution."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    generator = torch.Generator().manual_seed(0)
    if isinstance(replacement, SparseConv):
        spatial = [
            (size - 1) * gap + 1 + step
            for size, gap, step in zip(replacement.kernel_size, replacement.dilation, replacement.stride, strict=True)
        ]
        shape = (1, replacement.weight_shape[1], *spatial)
    else:
        shape = (2, replacement.layout.shape[1])
    return torch.randn(shape, generator=generator).to(weight.device, weight.dtype)


def _probe_modules(module: nn.Module, replacement: _SparseBase, x: torch.Tensor) -> tuple[float, float]:
    """(dense ms, sparse ms) of the whole layer on the input it received (`_compare_ms`)."""
    synchronize = torch.cuda.synchronize if x.device.type == "cuda" else lambda: None

    def run(layer: nn.Module) -> Callable[[], None]:
        def call() -> None:
            layer.forward(x)  # not layer(x): the dense layer's probing hook would run again
            synchronize()

        return call

    with torch.no_grad():
        return _compare_ms(run(module), run(replacement))


def _probe(module: nn.Module, replacement: _SparseBase) -> tuple[float, float]:
    """(dense ms, sparse ms) of the layer's matrix product on a probe input (`_compare_ms`)."""
    rows, columns = replacement.layout.shape
    width = 1  # a Linear (or HF Conv1D) at batch 1: convolutions are only probed on a real input
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    weight = weight.detach()
    matrix = (weight.T if is_hf_conv1d(module) else weight).reshape(rows, columns)
    x = torch.randn(columns, width, device=matrix.device, dtype=torch.float32)
    synchronize = torch.cuda.synchronize if matrix.device.type == "cuda" else lambda: None

    def dense() -> None:
        matrix @ x
        synchronize()

    def sparse() -> None:
        replacement._matmul(x)
        synchronize()

    with torch.no_grad():
        return _compare_ms(dense, sparse)
