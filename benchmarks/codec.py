"""The codec: container size and speed against general-purpose compressors, in one run.

Full-size T-C3D (R3D-18 backbone, 101 classes, 33.2 M parameters; Kaiming-initialised weights, as no
trained full-size weights can be downloaded here) pruned to 0.9 conv / 0.95 fc and quantized to
8 / 5 bits (the paper's settings). Compared, all as files on disk: the dense fp32 safetensors file, the
compressed weights as an fp32 safetensors file and that file under gzip, lzma and zstd, an int8 copy
of the dense model (per-tensor symmetric), and our container (index bits 8 / 5 and `auto`). Also
measured: the column-pointer layout that the container does not use (see docs/format.md).

    python -m benchmarks.codec
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zstandard

from benchmarks.common import machine, machine_line, timed, write_results
from examples.tc3d import build_tc3d
from vidcompress import PAPER_BITS, PAPER_SPARSITY, QuantizeConfig, prune_, quantize_state_dict
from vidcompress.codec import EncodeConfig, decode, encode, inspect_container, read_container
from vidcompress.codec.layer import coded_bytes, layer_codebook
from vidcompress.codec.relative_index import column_major, relative_index_encode
from vidcompress.io import load_state_dict, safetensors_bytes
from vidcompress.layers import state_dict_layers
from vidcompress.report import markdown_table
from vidcompress.testing import state_dicts_bits_equal


def int8_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-tensor symmetric int8 of every compressible weight, with its fp32 scale."""
    out = {}
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.ndim >= 2:
            scale = tensor.abs().max().clamp(min=1e-12) / 127
            out[name] = torch.round(tensor / scale).to(torch.int8)
            out[f"{name}.scale"] = scale.reshape(1).float()
        else:
            out[name] = tensor
    return out


def column_pointer_bytes(state: dict[str, torch.Tensor], index_bits: dict[str, int], bits: dict[str, int]) -> dict:
    """Coded bytes of both layouts: the index running across columns (ours) and per-column indices
    that restart at each column plus a column-pointer array (entries per column, coded the same way)."""
    flat_total = column_total = 0
    for name, b in index_bits.items():
        _, symbols = layer_codebook(state[name], bits[name], name)
        flat = column_major(symbols, tuple(state[name].shape))
        alphabet = int(flat.max()) + 1
        span = 1 << b
        entries = relative_index_encode(flat, b)
        flat_total += coded_bytes(entries.symbols, alphabet) + coded_bytes(entries.codes, span)
        rows = state[name].shape[0]
        positions = np.flatnonzero(flat)
        column = positions // rows
        start = np.r_[True, column[1:] != column[:-1]]
        distance = np.where(start, positions % rows + 1, np.diff(positions, prepend=-1))
        fillers = (distance - 1) // span
        count = fillers + 1
        codes = np.full(int(count.sum()), span - 1, dtype=np.int64)
        symbols = np.zeros(codes.size, dtype=np.int64)
        real_at = np.cumsum(count) - 1
        codes[real_at] = distance - fillers * span - 1
        symbols[real_at] = flat[positions]
        owner = np.repeat(column, count)
        per_column = np.bincount(owner, minlength=flat.size // rows)
        column_total += (
            coded_bytes(symbols, alphabet)
            + coded_bytes(codes, span)
            + coded_bytes(per_column, int(per_column.max()) + 1)
        )
    return {"relative_across_columns": flat_total, "column_pointers": column_total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64, help="network width (64 = the paper's)")
    args = parser.parse_args()
    torch.manual_seed(0)
    info = machine()
    model = build_tc3d(num_classes=101, width=args.width)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    prune_(model, PAPER_SPARSITY)
    quantized, _ = quantize_state_dict(model.state_dict(), QuantizeConfig(bits=PAPER_BITS))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)

        def add(name: str, size: int, **extra) -> None:
            rows.append({"name": name, "bytes": size, **extra})

        dense_bytes = safetensors_bytes(dense)
        add("dense fp32 safetensors", len(dense_bytes))
        raw = safetensors_bytes(quantized)
        (work / "q.safetensors").write_bytes(raw)
        add("pruned + quantized, fp32 safetensors", len(raw))
        load_time, _ = timed(lambda: load_state_dict(work / "q.safetensors"), repeat=3)
        for label, compress, decompress in (
            ("gzip -6", lambda b: gzip.compress(b, 6), gzip.decompress),
            ("lzma -6", lambda b: lzma.compress(b, preset=6), lzma.decompress),
            ("zstd -3", zstandard.ZstdCompressor(level=3).compress, zstandard.ZstdDecompressor().decompress),
            ("zstd -19", zstandard.ZstdCompressor(level=19).compress, zstandard.ZstdDecompressor().decompress),
        ):
            encode_time, packed = timed(compress, raw)
            decode_time, _ = timed(decompress, packed, repeat=5)
            add(f"  that file, {label}", len(packed), encode_seconds=encode_time, decode_seconds=decode_time)
        int8 = safetensors_bytes(int8_copy(dense))
        add("dense int8 copy (per-tensor scale)", len(int8))
        for label, index_bits in (("8 / 5", "conv=8,fc=5"), ("auto", "conv=auto,fc=auto")):
            path = work / f"c-{index_bits}.vcz"
            start = time.perf_counter()
            encode(quantized, path, EncodeConfig(bits="conv=8,fc=5", index_bits=index_bits))
            encode_time = time.perf_counter() - start
            decode_time, decoded = timed(decode, path, repeat=5)
            one_thread_time, _ = timed(decode, path, 1, repeat=5)
            exact = state_dicts_bits_equal(decoded, quantized)
            report = inspect_container(read_container(path))
            add(
                f"vidcompress container, index bits {label}",
                path.stat().st_size,
                encode_seconds=encode_time,
                decode_seconds=decode_time,
                decode_one_thread_seconds=one_thread_time,
                bit_exact=exact,
                breakdown=report.breakdown,
                bits_per_parameter=report.totals()["bits_per_parameter"],
            )
    layers = {layer.name: layer.kind.value for layer in state_dict_layers(quantized)}
    widths = {name: 8 if kind == "conv" else 5 for name, kind in layers.items()}
    layouts = column_pointer_bytes(quantized, widths, widths)
    parameters = sum(t.numel() for t in dense.values())
    for row in rows:
        row["ratio_to_dense_fp32"] = rows[0]["bytes"] / row["bytes"]
        row["bits_per_parameter"] = 8 * row["bytes"] / parameters
    zstd = next(r for r in rows if r["name"].endswith("zstd -3"))
    ours = next(r for r in rows if r["name"].endswith("index bits 8 / 5"))
    data = {
        "machine": info,
        "width": args.width,
        "parameters": parameters,
        "rows": rows,
        "layouts": layouts,
        "safetensors_load_seconds": load_time,
        "decode_vs_zstd3": ours["decode_seconds"] / zstd["decode_seconds"],
        "decode_one_thread_vs_zstd3": ours["decode_one_thread_seconds"] / zstd["decode_seconds"],
        "decode_vs_zstd3_plus_load": ours["decode_seconds"] / (zstd["decode_seconds"] + load_time),
    }
    lines = [
        "# Codec: the container against general-purpose compressors",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.codec`.",
        "",
        f"T-C3D at width {args.width}, 101 classes, {parameters:,} values (parameters and BN buffers), Kaiming-"
        "initialised, pruned to 0.9 conv / 0.95 fc, quantized to 8 / 5 bits (no fine-tuning: no data here).",
        f"Sizes are of files on disk; times are the best of 5 (decoding) or one run (encoding). The container "
        f"decodes its layers in {info['cores']} threads (one per core); zstd, gzip and lzma decompress in one.",
        "",
        markdown_table(
            ["file", "bytes", "vs dense fp32", "bits / parameter", "encode (s)", "decode (s)"],
            [
                [
                    r["name"],
                    f"{r['bytes']:,}",
                    f"{r['ratio_to_dense_fp32']:.1f}x",
                    f"{r['bits_per_parameter']:.3f}",
                    f"{r['encode_seconds']:.2f}" if "encode_seconds" in r else "-",
                    f"{r['decode_seconds']:.3f}" if "decode_seconds" in r else "-",
                ]
                for r in rows
            ],
        ),
    ]
    lines += [
        "",
        f"Decoding the container is bit-exact: {ours['bit_exact']}. It takes {data['decode_vs_zstd3']:.2f}x the time "
        f"of zstd -3 decompressing the fp32 file, {data['decode_vs_zstd3_plus_load']:.2f}x that plus reading the "
        f"decompressed safetensors ({load_time:.3f} s). In one thread it takes {ours['decode_one_thread_seconds']:.3f} s, "
        f"{data['decode_one_thread_vs_zstd3']:.2f}x zstd -3.",
        "",
        "Bytes of the container (index bits 8 / 5) by component:",
        "",
        markdown_table(["component", "bytes"], [[k, f"{v:,}"] for k, v in ours["breakdown"].items()]),
        "",
        "Layout choice, coded streams of the compressed layers only:",
        "",
        markdown_table(
            ["layout", "bytes"],
            [
                ["relative index across column boundaries (used)", f"{layouts['relative_across_columns']:,}"],
                ["per-column relative index + column pointers", f"{layouts['column_pointers']:,}"],
            ],
        ),
    ]
    write_results("codec", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
