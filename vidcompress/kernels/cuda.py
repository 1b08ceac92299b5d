"""CUDA multiplication on the layout through CuPy; CuPy is imported on first use only."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import torch

from vidcompress.errors import ConfigError
from vidcompress.kernels.conv_plan import plan_for
from vidcompress.kernels.layout import SparseLayout
from vidcompress.kernels.relative import RelativeLayout

SOURCE = Path(__file__).with_name("spmv.cu")
THREADS = 256  # 8 warps per block
STAGED_THREADS = 1024  # the kernels with a block-wide shared table: one copy serves 32 warps
STATIC_SHARED = 1024  # bytes of shared memory the kernels declare themselves (with room to spare)
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
    return cupy.RawModule(code=SOURCE.read_text(), options=("--std=c++17",))


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


class _StreamHandle:
    """A raw CUDA stream handle behind the CUDA stream protocol, for `cupy.cuda.Stream.from_external`."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


@functools.cache
def _cupy_stream(handle: int, device: int) -> Any:
    """CuPy's view of one of torch's streams (cached: torch's streams live as long as the process)."""
    cupy = _cupy()
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None:  # CuPy 14 and later; ExternalStream is deprecated there
        try:
            return from_external(_StreamHandle(handle))
        except (TypeError, ValueError):  # a CuPy whose from_external wants another protocol version
            pass
    return cupy.cuda.ExternalStream(handle, device)


def torch_stream(device: torch.device) -> Any:
    """CuPy's handle on torch's current stream on `device`: launch under it (`with ...:`) to order CuPy work
    with torch's."""
    stream = torch.cuda.current_stream(device)
    return _cupy_stream(stream.cuda_stream, stream.device_index)


@functools.cache
def _device_limits(device: int) -> tuple[int, int]:
    """(multiprocessors, shared memory bytes a block may opt in to) of a CUDA device."""
    runtime = _cupy().cuda.runtime
    optin = runtime.deviceGetAttribute(getattr(runtime, "cudaDevAttrMaxSharedMemoryPerBlockOptin", 97), device)
    return torch.cuda.get_device_properties(device).multi_processor_count, int(optin)


# The batch-1 CSR kernels: x read through the cache or staged in shared memory by every block; the layout
# read one nonzero or 8-nonzero vectors at a time. (A variant with the codebook replicated 32 times against
# shared-memory bank conflicts was measured slower on every matrix and removed:
# benchmarks/results/spmv_gpu_replicated_probe_nvidia-h200.md.)
SPMV_KERNELS = {  # variant: (kernel name prefix, stages x, vector loads)
    "cached": ("spmv_", False, False),
    "staged": ("spmv_sx_", True, False),
    "staged_vector": ("spmv_sxv_", True, True),
}
SPMV_VARIANTS = tuple(SPMV_KERNELS)


def _aligned(layout: SparseLayout) -> bool:
    return all(t.data_ptr() % (8 * t.element_size()) == 0 for t in (layout.columns, layout.symbols))


def _spmv_shared_bytes(layout: SparseLayout, variant: str) -> int:
    """Dynamic shared memory of a batch-1 kernel: the codebook, then x when staged."""
    _, staged, _ = SPMV_KERNELS[variant]
    return 4 * ((layout.codebook.numel() + 3) & ~3) + (4 * layout.shape[1] if staged else 0)


def spmv_unusable(layout: SparseLayout, variant: str, device: int) -> str | None:
    """Why `variant` cannot run `layout` on `device` (None: it can)."""
    _, _, vector = SPMV_KERNELS[variant]
    if vector and not _aligned(layout):
        return "vector loads need the column and symbol arrays to start 16-byte aligned"
    _, optin = _device_limits(device)
    if _spmv_shared_bytes(layout, variant) + STATIC_SHARED > optin:
        return f"x of {layout.shape[1]} floats does not fit in shared memory ({optin} bytes)"
    return None


# Fastest first, as measured on an H200 (spmv_gpu_nvidia-h200.md): the vector kernel is 5-20% faster than
# the cached one on every matrix but one; staging x alone gains almost nothing, the vector loads need it.
SPMV_PREFERENCE = ("staged_vector", "staged", "cached")


def spmv_variant(layout: SparseLayout, device: int) -> str:
    """The batch-1 CSR kernel for `layout`: the first of SPMV_PREFERENCE that can run it."""
    return next(v for v in SPMV_PREFERENCE if spmv_unusable(layout, v, device) is None)


def spmm_cuda(layout: SparseLayout | RelativeLayout, x: torch.Tensor) -> torch.Tensor:
    """W @ X on the GPU for X of shape (columns,) or (columns, batch); fp32 accumulation.

    Runs on torch's current stream, so it orders with the surrounding torch work and can be captured
    in a CUDA graph.
    """
    return _spmm_cuda(layout, x, variant=None)


def _spmm_cuda(layout: SparseLayout | RelativeLayout, x: torch.Tensor, *, variant: str | None) -> torch.Tensor:
    """spmm_cuda with the batch-1 CSR kernel chosen by `variant` (one of SPMV_VARIANTS; None: spmv_variant's
    choice); the benchmark times each."""
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
    device = x.device.index if x.device.index is not None else torch.cuda.current_device()
    suffix, args = _layout_arguments(layout)
    args += [cupy.asarray(dense), cupy.asarray(out), cupy.int32(rows)]
    threads, shared = THREADS, layout.codebook.numel() * 4
    if relative:
        name, sharing = f"spmv_{suffix}" if batch == 1 else f"spmm_{suffix}", 1
        if batch != 1:
            args.append(cupy.int32(batch))
    elif batch != 1:
        sharing = warps_per_row(rows, layout.nonzeros)
        name = f"spmm_{suffix}"
        args += [cupy.int32(batch), cupy.int32(sharing)]
    else:
        assert isinstance(layout, SparseLayout)
        variant = variant or spmv_variant(layout, device)
        if variant not in SPMV_KERNELS:
            raise ConfigError(f"unknown SpMV variant {variant!r}; one of {', '.join(SPMV_VARIANTS)}")
        reason = spmv_unusable(layout, variant, device)
        if reason is not None:
            raise ConfigError(f"SpMV variant {variant!r} cannot run this layout: {reason}")
        sharing = warps_per_row(rows, layout.nonzeros)
        name = SPMV_KERNELS[variant][0] + suffix
        args += [cupy.int32(sharing), cupy.int32(layout.shape[1])]
        if variant != "cached":
            threads, shared = STAGED_THREADS, _spmv_shared_bytes(layout, variant)
    rows_per_block = threads // 32 // sharing
    blocks = max(1, min((rows + rows_per_block - 1) // rows_per_block, 65535))
    kernel = _kernel(name)
    if threads == STAGED_THREADS:
        multiprocessors, _ = _device_limits(device)
        blocks = min(blocks, 2 * multiprocessors)  # every block stages x once, then strides over rows
        if shared > 48 * 1024:
            kernel.max_dynamic_shared_size_bytes = shared
    with torch_stream(x.device):
        kernel((blocks,), (threads,), tuple(args), shared_mem=shared)
    return out.reshape(-1) if vector else out


CONV_THREADS = 256
CONV_PER_THREAD = 4  # output positions a thread keeps (CONV_PER_THREAD in spmv.cu)
CONV_STATIC_SHARED = 256 * (4 + 8)  # the conv kernel's staged chunk: CONV_CHUNK values and offsets


def conv_cuda(
    layout: SparseLayout,
    x: torch.Tensor,
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """A convolution (no bias) of an already padded input x (N, C, *padded) on the GPU by W held as the
    layout (out, C * prod(kernel)), with no im2col (`conv_plan`): the output (N, out, *outputs) as a
    strided view, fp32. Runs on torch's current stream."""
    if not torch.cuda.is_available():
        raise ConfigError("the CUDA path needs a CUDA device; none is available")
    cupy = _cupy()
    if layout.device.type != "cuda" or x.device != layout.device:
        raise ConfigError(f"layout on {layout.device} and input on {x.device}: move both to the same GPU")
    plan = plan_for(layout.shape, tuple(x.shape), kernel, dilation, stride)
    rows, samples = layout.shape[0], int(x.shape[0])
    if rows > 65535 or samples > 65535:
        raise ConfigError(
            f"{rows} output channels and {samples} samples: the CUDA convolution takes at most 65,535 each"
        )
    device = x.device.index if x.device.index is not None else torch.cuda.current_device()
    _, optin = _device_limits(device)
    shared = 4 * layout.codebook.numel()
    if shared + CONV_STATIC_SHARED > optin:
        raise ConfigError(
            f"a codebook of {layout.codebook.numel()} values does not fit in shared memory ({optin} bytes)"
        )
    table = plan.device_tables.get(x.device)
    if table is None:
        table = plan.device_tables[x.device] = torch.from_numpy(plan.table).to(x.device)
    split = plan.split(x.to(torch.float32))
    plane = math.prod(plan.grid)
    out = torch.empty(samples, rows, plane, dtype=torch.float32, device=x.device)
    suffix, args = _layout_arguments(layout)
    args += [cupy.asarray(table), cupy.asarray(split), cupy.asarray(out), cupy.int32(rows),
             cupy.int64(plan.sample_size), cupy.int64(plane), cupy.int64(plan.length)]  # fmt: skip
    function = _kernel(f"conv_{suffix}")
    if shared + CONV_STATIC_SHARED > 48 * 1024:
        function.max_dynamic_shared_size_bytes = shared
    blocks = -(-plan.length // (CONV_THREADS * CONV_PER_THREAD))
    with torch_stream(x.device):
        function((blocks, rows, samples), (CONV_THREADS,), tuple(args), shared_mem=shared)
    return out.view(samples, rows, *plan.grid)[plan.edges()]
