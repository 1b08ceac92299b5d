"""The runtime layout the kernels multiply by: CSR rows of (narrow column index, codebook symbol).

Decoded once from a container layer (or built from a quantized dense matrix): per nonzero a one-byte
codebook symbol (two bytes above 256 levels) and a two-byte column index (four above 65,536 columns),
plus int32 row pointers and the codebook itself (at most 2^16 floats; the CUDA kernels keep it in
shared memory). That is 3 bytes per nonzero against CSR fp32's 8 (+ row pointers either way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vidcompress.codec.layer import check_codebook, decode_layer, decode_positions
from vidcompress.codec.manifest import LayerEntry
from vidcompress.errors import InputError


@dataclass
class SparseLayout:
    """W (rows x columns) as CSR over codebook symbols."""

    shape: tuple[int, int]
    row_pointers: torch.Tensor  # int32, rows + 1
    columns: torch.Tensor  # int16 bit pattern of uint16 (<= 65536 columns) or int32
    symbols: torch.Tensor  # uint8 (<= 256 codebook entries) or int16 bit pattern of uint16
    codebook: torch.Tensor  # float32
    # numpy views of the four tensors as the CPU kernels read them, made on first use (see host_arrays)
    _host: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def nonzeros(self) -> int:
        return int(self.symbols.numel())

    @property
    def device(self) -> torch.device:
        return self.symbols.device

    @property
    def size_bytes(self) -> int:
        """Bytes the layout occupies (and a kernel reads for one multiplication)."""
        tensors = (self.row_pointers, self.columns, self.symbols, self.codebook)
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def bytes_per_nonzero(self) -> float:
        return (self.columns.element_size() + self.symbols.element_size()) if self.nonzeros else 0.0

    def to(self, device: torch.device | str) -> SparseLayout:
        return SparseLayout(
            self.shape,
            self.row_pointers.to(device),
            self.columns.to(device),
            self.symbols.to(device),
            self.codebook.to(device),
        )

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row pointers, columns, symbols, codebook) as numpy views of the CPU tensors, uint16 fields
        viewed back from their int16 storage; no copy. Made once per layout: at batch 1 on a small layer
        the conversions cost a quarter of the multiplication."""
        if self._host is None:
            if self.device.type != "cpu":
                raise InputError(f"the layout is on {self.device}: host arrays need it on the CPU")
            columns, symbols = self.columns.numpy(), self.symbols.numpy()
            columns = columns.view(np.uint16) if columns.dtype == np.int16 else columns
            symbols = symbols.view(np.uint16) if symbols.dtype == np.int16 else symbols
            self._host = (self.row_pointers.numpy(), columns, symbols, self.codebook.numpy())
        return self._host

    def column_indices(self) -> torch.Tensor:
        """Column indices widened to int32 (undoing the uint16-in-int16 storage)."""
        columns = self.columns.int()
        return columns & 0xFFFF if self.columns.dtype == torch.int16 else columns

    def symbol_indices(self) -> torch.Tensor:
        """Codebook symbols widened to int32 (undoing the uint16-in-int16 storage)."""
        symbols = self.symbols.int()
        return symbols & 0xFFFF if self.symbols.dtype == torch.int16 else symbols

    def row_indices(self) -> torch.Tensor:
        counts = (self.row_pointers[1:] - self.row_pointers[:-1]).long()
        return torch.repeat_interleave(torch.arange(self.shape[0], device=self.device), counts)

    def to_dense(self) -> torch.Tensor:
        dense = torch.zeros(self.shape, dtype=torch.float32, device=self.device)
        dense[self.row_indices(), self.column_indices().long()] = self.codebook[self.symbol_indices().long()]
        return dense

    @classmethod
    def from_dense(cls, weight: torch.Tensor) -> SparseLayout:
        """From a quantized weight of any shape, viewed as `weight.reshape(out, -1)`."""
        matrix = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1)
        values = matrix.numpy()
        distinct = np.unique(values[values != 0])
        if distinct.size >= 1 << 16:
            raise InputError(f"{distinct.size} distinct values: quantize the layer before building a layout")
        codebook = np.concatenate(([0.0], distinct)).astype(np.float32)
        rows, cols = np.nonzero(values)  # row-major order: CSR
        symbols = np.searchsorted(codebook[1:], values[rows, cols]) + 1
        return cls._build((int(matrix.shape[0]), int(matrix.shape[1])), rows, cols, symbols, codebook)

    @classmethod
    def from_container(
        cls,
        entry: LayerEntry,
        data: bytes | memoryview,
        codebook: torch.Tensor,
        *,
        transpose: bool = False,
    ) -> SparseLayout:
        """A container layer decoded straight into the layout (no dense matrix), viewed as
        `weight.reshape(out, -1)`, or as the transpose of the 2-D weight (`transpose=True`: Hugging Face
        Conv1D stores (in, out)). A raw layer (no codebook) goes through its dense values."""
        check_codebook(entry, codebook)
        if entry.bits == 0:
            weight = decode_layer(entry, data, codebook)
            return cls.from_dense(weight.T if transpose else weight)
        positions, symbols = decode_positions(entry, data)
        rows, columns = entry.shape[0], entry.numel // max(entry.shape[0], 1)
        row, column = np.divmod(positions, max(columns, 1))
        if transpose:
            rows, columns, row, column = columns, rows, column, row
        order = np.lexsort((column, row))  # CSR: by row, then column
        return cls._build(
            (rows, columns), row[order], column[order], symbols[order].astype(np.int64), codebook.float().numpy()
        )

    @classmethod
    def _build(
        cls, shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, symbols: np.ndarray, codebook: np.ndarray
    ) -> SparseLayout:
        pointers = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=pointers[1:])
        if pointers[-1] >= 1 << 31:
            raise InputError(f"{pointers[-1]} nonzeros: more than int32 row pointers can address")
        narrow_columns = shape[1] <= 1 << 16
        columns = cols.astype(np.uint16).view(np.int16) if narrow_columns else cols.astype(np.int32)
        narrow_symbols = codebook.size <= 256
        coded = symbols.astype(np.uint8) if narrow_symbols else symbols.astype(np.uint16).view(np.int16)
        return cls(
            (int(shape[0]), int(shape[1])),
            torch.from_numpy(pointers.astype(np.int32)),
            torch.from_numpy(np.ascontiguousarray(columns)),
            torch.from_numpy(np.ascontiguousarray(coded)),
            torch.from_numpy(codebook),
        )
