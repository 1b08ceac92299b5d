"""CUDA multiplication on the layout through CuPy; CuPy is imported on first use only."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from vidcompress.errors import ConfigError
from vidcompress.kernels.layout import SparseLayout
from vidcompress.kernels.relative import RelativeLayout

SOURCE = Path(__file__).with_name("spmv.cu")
THREADS = 256  # 8 warps per block
TARGET_WARPS = 8192  # about what an H100 / H200 keeps resident (132 SMs x 64 warps)
MIN_ROW_STEPS = 4  # each warp of a shared row still takes at least this many steps of 32 nonzeros


def cuda_available() -> bool:
    """True when CuPy imports and a CUDA device is present."""
    try:
        _cupy()
    except ConfigError:
        return False
    return torch.cuda.is_available()


def _cupy() -> Any:
    try:
        import cupy
    except ImportError:
        raise ConfigError("the CUDA kernels need CuPy: pip install 'vidcompress[cuda]'") from None
    return cupy


@functools.cache
def _module() -> Any:
    cupy = _cupy()
    return cupy.RawModule(code=SOURCE.read_text(), options=("--std=c++14",))


@functools.cache
def _kernel(name: str) -> Any:
    return _module().get_function(name)


def _suffix(layout: SparseLayout) -> str:
    column = "u16" if layout.columns.dtype == torch.int16 else "i32"
    symbol = "u8" if layout.symbols.dtype == torch.uint8 else "u16"
    return f"{column}_{symbol}"


def _layout_arguments(layout: SparseLayout | RelativeLayout) -> tuple[str, list[Any]]:
    """(kernel suffix, the layout's kernel arguments up to and including the codebook's size)."""
    cupy = _cupy()
    if isinstance(layout, RelativeLayout):
        return "rel", [
            cupy.asarray(layout.group_pointers),
            cupy.asarray(layout.entries),
            cupy.asarray(layout.codebook),
            cupy.int32(layout.codebook.numel()),
        ]
    return _suffix(layout), [
        cupy.asarray(layout.row_pointers),
        cupy.asarray(layout.columns),
        cupy.asarray(layout.symbols),
        cupy.asarray(layout.codebook),
        cupy.int32(layout.codebook.numel()),
    ]


def warps_per_row(rows: int, nonzeros: int) -> int:
    """Warps that share one CSR row: more for short matrices, so that they still fill the GPU."""
    warps = 1
    per_row = nonzeros / max(rows, 1)
    while warps < 8 and rows * warps < TARGET_WARPS and per_row / (64 * warps) >= MIN_ROW_STEPS:
        warps *= 2
    return warps


def spmm_cuda(layout: SparseLayout | RelativeLayout, x: torch.Tensor) -> torch.Tensor:
    """W @ X on the GPU for X of shape (columns,) or (columns, batch); fp32 accumulation.

    Runs on torch's current stream, so it orders with the surrounding torch work and can be captured
    in a CUDA graph.
    """
    if not torch.cuda.is_available():
        raise ConfigError("the CUDA path needs a CUDA device; none is available")
    cupy = _cupy()
    if layout.device.type != "cuda" or x.device != layout.device:
        raise ConfigError(f"layout on {layout.device} and input on {x.device}: move both to the same GPU")
    vector = x.ndim == 1
    dense = x.reshape(layout.shape[1], -1).to(torch.float32).contiguous()
    batch = dense.shape[1]
    out = torch.empty(layout.shape[0], batch, dtype=torch.float32, device=x.device)
    rows = layout.shape[0]
    relative = isinstance(layout, RelativeLayout)
    sharing = 1 if relative else warps_per_row(rows, layout.nonzeros)
    rows_per_block = THREADS // 32 // sharing
    blocks = max(1, min((rows + rows_per_block - 1) // rows_per_block, 65535))
    shared = layout.codebook.numel() * 4
    suffix, args = _layout_arguments(layout)
    args += [cupy.asarray(dense), cupy.asarray(out), cupy.int32(rows)]
    name = f"spmv_{suffix}" if batch == 1 else f"spmm_{suffix}"
    if batch != 1:
        args.append(cupy.int32(batch))
    if not relative:
        args.append(cupy.int32(sharing))
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream)
    with stream:
        _kernel(name)((blocks,), (THREADS,), tuple(args), shared_mem=shared)
    return out.reshape(-1) if vector else out
