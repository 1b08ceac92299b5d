"""The geometry of a convolution run directly on the layout (no im2col), shared by the CPU and CUDA kernels.

Per sample the padded input is flattened and the output computed on a grid with the input's row
lengths, so that each nonzero (channel, tap) of W.reshape(out, -1) is one contiguous axpy of the
output plane against the input shifted by that tap's offset (`table[column]`); grid positions past
the output's edges are computed and dropped. A strided convolution first splits its input into
phases (element p of an axis of stride s goes to phase p % s at position p // s), after which each
tap reads one phase at stride 1; an axis whose kernel has one tap just takes every s-th element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True, eq=False)
class ConvPlan:
    """How one input geometry runs: `every` the step taken along each axis before splitting, `stride`
    the strides left for the phases, `phase` a phase's shape, `outputs` the convolution's output shape,
    `grid` the shape computed (`outputs[0]`, then the phase's row lengths), `length` the positions of the
    grid each axpy covers, `table` each column's offset in one sample's split input."""

    every: tuple[int, ...]
    stride: tuple[int, ...]
    phase: tuple[int, ...]
    outputs: tuple[int, ...]
    grid: tuple[int, ...]
    length: int
    table: np.ndarray
    sample_size: int  # floats of one sample's split input
    device_tables: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)  # `table` on each GPU

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *padded) -> (N, C * prod(stride) * prod(phase)), contiguous: the kernels' input."""
        dims = len(self.stride)
        if any(step > 1 for step in self.every):
            steps: tuple[Any, ...] = (Ellipsis, *(slice(None, None, step) for step in self.every))
            x = x[steps]
        if all(step == 1 for step in self.stride):
            return x.contiguous().reshape(x.shape[0], -1)
        pad: list[int] = []
        for size, step, phase in zip(reversed(x.shape[2:]), reversed(self.stride), reversed(self.phase), strict=True):
            pad += [0, phase * step - size]
        full = F.pad(x, pad)
        split = full.reshape(*x.shape[:2], *(v for pair in zip(self.phase, self.stride, strict=True) for v in pair))
        order = [0, 1, *(3 + 2 * axis for axis in range(dims)), *(2 + 2 * axis for axis in range(dims))]
        return split.permute(order).contiguous().reshape(x.shape[0], -1)

    def edges(self) -> tuple[Any, ...]:
        """The index that keeps the output's positions of a (N, out, *grid) view."""
        return (Ellipsis, *(slice(0, o) for o in self.outputs))


def tap_offsets(
    channels: int, kernel: tuple[int, ...], dilation: tuple[int, ...], stride: tuple[int, ...], phase: tuple[int, ...]
) -> np.ndarray:
    """For each column (channel, then taps in order), its offset in one sample's input split into phases
    (channels, *stride, *phase). A tap k of an axis reads input s*o + k*g for output o, which is phase
    (k*g) % s at position o + (k*g) // s."""
    plane = math.prod(phase)
    offsets = np.arange(channels, dtype=np.int64) * math.prod(stride) * plane
    for axis, (size, gap, step) in enumerate(zip(kernel, dilation, stride, strict=True)):
        shift = np.arange(size, dtype=np.int64) * gap
        within = (shift % step) * math.prod(stride[axis + 1 :]) * plane  # which phase
        along = (shift // step) * math.prod(phase[axis + 1 :])  # where in it
        offsets = (offsets[:, None] + within + along).reshape(-1)
    return offsets


@lru_cache(maxsize=256)
def conv_plan(
    channels: int,
    padded: tuple[int, ...],
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
) -> ConvPlan:
    """The plan of a convolution of an already padded input (N, channels, *padded); a ValueError when the
    kernel's span exceeds the input."""
    if any(size < (k - 1) * gap + 1 for size, k, gap in zip(padded, kernel, dilation, strict=True)):
        raise ValueError(f"a kernel of {kernel} (dilation {dilation}) is larger than the padded input {padded}")
    every = tuple(step if k == 1 else 1 for k, step in zip(kernel, stride, strict=True))
    sizes = tuple(-(-size // step) for size, step in zip(padded, every, strict=True))
    stride = tuple(1 if k == 1 else step for k, step in zip(kernel, stride, strict=True))
    outputs = tuple(
        (size - (k - 1) * gap - 1) // step + 1
        for size, k, gap, step in zip(sizes, kernel, dilation, stride, strict=True)
    )
    phase = tuple(-(-size // step) for size, step in zip(sizes, stride, strict=True))
    grid = (outputs[0], *phase[1:])
    length = sum((o - 1) * math.prod(phase[axis + 1 :]) for axis, o in enumerate(outputs)) + 1
    table = tap_offsets(channels, kernel, dilation, stride, phase)
    sample_size = channels * math.prod(stride) * math.prod(phase)
    # The kernels read without bounds checks: the last position of the farthest tap stays in the sample
    # (it does by construction; checked anyway, and not with `assert`, which -O would drop).
    if table.size and int(table.max()) + length > sample_size:
        raise RuntimeError(f"conv_plan: a tap would read past its sample ({padded}, {kernel}, {stride})")
    table.setflags(write=False)
    return ConvPlan(every, stride, phase, outputs, grid, length, table, sample_size)


def plan_for(
    weight_shape: tuple[int, int],
    x_shape: tuple[int, ...],
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...] | None,
) -> ConvPlan:
    """The plan of W (out, C * prod(kernel)) over an already padded input of `x_shape`; a ValueError when
    they disagree (the kernels read without bounds checks, so a mismatch must never reach them)."""
    plan = conv_plan(
        int(x_shape[1]), tuple(int(v) for v in x_shape[2:]), kernel, dilation, stride or tuple(1 for _ in kernel)
    )
    if weight_shape[1] != plan.table.size:
        raise ValueError(f"a convolution of {tuple(weight_shape)} does not fit an input of shape {tuple(x_shape)}")
    return plan
