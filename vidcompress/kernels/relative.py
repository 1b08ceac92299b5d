"""The relative layout: EIE's packed (index delta, symbol) entries, 2 bytes each, for the CUDA kernels.

Per row, 16-bit entries: the low byte is the column's distance from the previous entry's column (a row
starts at column -1), the high byte the codebook symbol (1..255; codebooks of at most 256 entries). A gap
of more than 255 columns takes filler entries (delta 255, symbol 0), as in Deep Compression's relative
index; each row is padded to a multiple of 8 entries (delta 0, symbol 0) so that a GPU lane reads 8 entries
in one 16-byte load. `group_pointers` (int32) counts those 8-entry groups. Against the CSR layout's 3 bytes
a nonzero this moves 2 bytes per entry, fillers and padding included (`bytes_per_nonzero` counts them).

`to_csr` is the reference decoder: it gives back the CSR layout's columns and symbols exactly, and the
CPU path multiplies through it, so the CUDA kernel has a bit-exact reference to be tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vidcompress.errors import InputError
from vidcompress.kernels.layout import SparseLayout

MAX_DELTA = 255
GROUP = 8  # entries per 16-byte load


@dataclass
class RelativeLayout:
    """W (rows x columns) as per-row runs of packed (delta, symbol) entries."""

    shape: tuple[int, int]
    group_pointers: torch.Tensor  # int32, rows + 1; row r's entries are 8 * [p[r], p[r + 1])
    entries: torch.Tensor  # int16 bit pattern of uint16: delta | symbol << 8
    codebook: torch.Tensor  # float32, at most 256 entries, codebook[0] == 0
    nonzeros: int

    @property
    def device(self) -> torch.device:
        return self.entries.device

    @property
    def size_bytes(self) -> int:
        """Bytes the layout occupies (and a kernel reads for one multiplication)."""
        tensors = (self.group_pointers, self.entries, self.codebook)
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def bytes_per_nonzero(self) -> float:
        """Entry bytes (fillers and padding included) per stored nonzero."""
        return 2 * self.entries.numel() / self.nonzeros if self.nonzeros else 0.0

    def to(self, device: torch.device | str) -> RelativeLayout:
        return RelativeLayout(
            self.shape, self.group_pointers.to(device), self.entries.to(device), self.codebook.to(device), self.nonzeros
        )

    @classmethod
    def from_csr(cls, layout: SparseLayout) -> RelativeLayout:
        """Re-encode a CSR layout (on the CPU); codebooks of more than 256 entries are refused."""
        if layout.codebook.numel() > 256:
            raise InputError(
                f"{layout.codebook.numel()} codebook entries: the relative layout holds 8-bit symbols (at most 256)"
            )
        rows_count = layout.shape[0]
        pointers = layout.row_pointers.cpu().numpy().astype(np.int64)
        columns = layout.column_indices().cpu().numpy().astype(np.int64)
        symbols = layout.symbol_indices().cpu().numpy().astype(np.int64)
        counts = np.diff(pointers)
        rows = np.repeat(np.arange(rows_count), counts)
        previous = np.empty_like(columns)
        previous[1:] = columns[:-1]
        previous[pointers[:-1][counts > 0]] = -1  # each row starts at column -1
        gaps = columns - previous
        fillers = (gaps - 1) // MAX_DELTA
        deltas = gaps - MAX_DELTA * fillers
        used = fillers + 1  # entries per nonzero
        per_row = np.bincount(rows, weights=used, minlength=rows_count).astype(np.int64)
        groups = -(-per_row // GROUP)
        group_pointers = np.zeros(rows_count + 1, dtype=np.int64)
        np.cumsum(groups, out=group_pointers[1:])
        if group_pointers[-1] >= 1 << 31:
            raise InputError(f"{group_pointers[-1]} entry groups: more than int32 pointers can address")
        # Position of each nonzero's own entry: its row's first entry + entries used so far in the row.
        used_before = np.cumsum(used) - used
        row_start_used = np.zeros(rows_count + 1, dtype=np.int64)
        np.cumsum(per_row, out=row_start_used[1:])
        positions = GROUP * group_pointers[:-1][rows] + (used_before - row_start_used[:-1][rows]) + fillers
        entries = np.zeros(GROUP * int(group_pointers[-1]), dtype=np.uint16)
        entries[positions] = (deltas | (symbols << 8)).astype(np.uint16)
        if fillers.any():
            total = int(fillers.sum())
            first = np.repeat(positions - fillers, fillers)
            offsets = np.arange(total) - np.repeat(np.cumsum(fillers) - fillers, fillers)
            entries[first + offsets] = MAX_DELTA
        return cls(
            layout.shape,
            torch.from_numpy(group_pointers.astype(np.int32)),
            torch.from_numpy(entries.view(np.int16)),
            layout.codebook.detach().cpu().to(torch.float32).clone(),
            layout.nonzeros,
        )

    @classmethod
    def from_dense(cls, weight: torch.Tensor) -> RelativeLayout:
        return cls.from_csr(SparseLayout.from_dense(weight))

    def to_csr(self) -> SparseLayout:
        """The reference decoder: the CSR layout these entries stand for, field for field."""
        entries = self.entries.cpu().numpy().view(np.uint16).astype(np.int64)
        group_pointers = self.group_pointers.cpu().numpy().astype(np.int64)
        deltas, symbols = entries & 0xFF, entries >> 8
        entry_rows = np.repeat(np.arange(self.shape[0]), GROUP * np.diff(group_pointers))
        running = np.cumsum(deltas)
        # A row's columns: the running sum of deltas since the row began, minus one (rows start at -1).
        starts = GROUP * group_pointers[:-1]
        padded = np.concatenate(([0], running))
        columns = running - padded[starts][entry_rows] - 1
        keep = symbols != 0
        codebook = self.codebook.cpu().numpy()
        return SparseLayout._build(self.shape, entry_rows[keep], columns[keep], symbols[keep], codebook)
