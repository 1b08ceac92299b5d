"""Would context-modelled entropy coding pay on real weights? A bound before any coder is written.

Our containers code each layer's weight symbols with one static Huffman table (about the order-0
entropy per symbol). An adaptive or context-modelled coder (an arithmetic / ANS coder conditioned on the
output channel or on the previous symbol) can at best reach the conditional entropy of the symbols
given that context, and must describe or learn one distribution per context. This measures, on real
quantized weights, the weight streams' Huffman bits, their order-0 entropy, and two conditional
entropies: given the output channel (one table per channel, at the cost of its counts) and given the
previous symbol in the stream (first order). If the best gain is under 2% of the file (issue 16's bar),
such a coder does not pay here.

    python -m benchmarks.context_coding
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import machine, machine_line, write_results
from examples.real import load_ccexam_state_dict
from vidcompress.codec import EncodeConfig, encode, read_container
from vidcompress.codec.container import read_layers
from vidcompress.codec.layer import decode_positions, decode_streams
from vidcompress.quantize import QuantizeConfig, quantize_state_dict
from vidcompress.report import markdown_table

SETTINGS = (("MNIST CNN (ccexam), 5 bits", "ccexam", "conv=5,fc=5"),
            ("I3D, 8 bits", "i3d", "conv=8"), ("I3D, 4 bits", "i3d", "conv=4"))  # fmt: skip


def entropy_bits(counts: np.ndarray) -> float:
    """Total bits of an ideal code for these counts (sum of -log2 p over the symbols)."""
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    return float(-(counts * np.log2(counts / total)).sum()) if total else 0.0


def conditional_bits(contexts: np.ndarray, symbols: np.ndarray, alphabet: int) -> float:
    """Sum over contexts of each context's order-0 bits (ideal, model cost not included)."""
    joint = np.bincount(contexts.astype(np.int64) * alphabet + symbols, minlength=(contexts.max() + 1) * alphabet)
    table = joint.reshape(-1, alphabet)
    return float(sum(entropy_bits(row) for row in table if row.any()))


def measure(tensors: dict[str, torch.Tensor], bits: str, path: str) -> dict[str, Any]:
    quantized, _ = quantize_state_dict(tensors, QuantizeConfig(bits=bits))
    container = encode(quantized, path, EncodeConfig(bits=bits))
    file_bits = 8 * container.file_bytes
    totals = {"huffman": 0.0, "order0": 0.0, "channel": 0.0, "channel_model": 0.0, "previous": 0.0}
    for entry, payload, _ in read_layers(read_container(path)):
        symbols, _ = decode_streams(entry, payload)
        symbols = symbols.astype(np.int64)
        alphabet = max(entry.codebook_size, 2)
        totals["huffman"] += entry.weights.payload_bytes * 8 + entry.weights.table_bytes * 8
        totals["order0"] += entropy_bits(np.bincount(symbols, minlength=alphabet))
        # A stored entry's output channel is its row of W.reshape(out, -1): the real entries' rows come from
        # their positions; fillers (symbol 0) are charged at their order-0 cost.
        rows = entry.shape[0]
        positions, real_symbols = decode_positions(entry, payload)
        channels = positions // (entry.numel // rows)
        counts = np.bincount(symbols, minlength=alphabet)
        filler_bits = entry.fillers * -np.log2(counts[0] / symbols.size) if entry.fillers else 0.0
        totals["channel"] += conditional_bits(channels, real_symbols.astype(np.int64), alphabet) + filler_bits
        totals["channel_model"] += rows * alphabet * np.log2(max(real_symbols.size / rows, 2))  # counts to send
        previous = np.concatenate(([0], symbols[:-1]))
        totals["previous"] += conditional_bits(previous, symbols, alphabet)
    return {"file_bits": file_bits, **totals}


def main() -> None:
    import tempfile

    from examples.i3d.convert import pretrained_i3d

    info = machine()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, model, bits in SETTINGS:
            start = time.perf_counter()
            tensors = load_ccexam_state_dict() if model == "ccexam" else pretrained_i3d().state_dict()
            result = measure({k: v.detach() for k, v in tensors.items()}, bits, f"{folder}/m.vcz")
            rows.append({"setting": label, **result, "seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)
    cells = []
    for r in rows:
        file_bits = r["file_bits"]
        best = min(r["order0"], r["channel"] + r["channel_model"], r["previous"])
        cells.append([
            r["setting"], f"{file_bits / 8:,.0f}", f"{r['huffman'] / 8:,.0f}", f"{r['order0'] / 8:,.0f}",
            f"{(r['channel'] + r['channel_model']) / 8:,.0f}", f"{r['previous'] / 8:,.0f}",
            f"{100 * (r['huffman'] - best) / file_bits:.2f}%",
        ])  # fmt: skip
    lines = [
        "# Would context-modelled entropy coding pay? (weight streams of real quantized networks)",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.context_coding`.",
        "",
        "Bytes of the weight streams under our static Huffman tables (payload + table), their order-0",
        "entropy, the entropy given the output channel (plus the cost of sending one count table per channel;",
        "filler entries at their order-0 cost), and given the previous symbol (the",
        "ideal first-order model, its table not counted: a bound that favours it). The last column is the",
        "most any of these coders could save, as a share of the whole file.",
        "",
        markdown_table(
            [
                "setting",
                "file bytes",
                "Huffman",
                "order-0 entropy",
                "given channel (+ tables)",
                "given previous symbol",
                "best saving of the file",
            ],
            cells,
        ),
    ]
    write_results("context_coding", {"machine": info, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
