"""Fuzzing the container reader: mutated files must end in the package's error or decode to exactly
the original weights; never another exception, a hang, or memory out of proportion to the file.

Mutations: bit flips, truncations, appended bytes, overwritten runs, and manifest edits (huge declared
sizes, negative or inconsistent counts, wrong shapes, unknown versions and codings, streams pointing
outside the data) written with a consistent CRC, as an attacker would.

    python -m benchmarks.fuzz [--cases 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, machine_line, write_results
from vidcompress import prune_, quantize_state_dict
from vidcompress.codec import EncodeConfig, decode, encode
from vidcompress.errors import FormatError, VidcompressError
from vidcompress.layers import module_layers  # noqa: F401  (keeps import cost out of the timings)
from vidcompress.report import markdown_table
from vidcompress.testing import MUTATIONS, edit_manifest, mutate, state_dicts_bits_equal

MANIFEST_FIELDS = [
    ("shape", lambda r: [int(r.integers(0, 1 << 40)), int(r.integers(1, 1 << 20))]),
    ("shape", lambda r: [int(x) for x in r.integers(1, 64, size=int(r.integers(1, 6)))]),
    ("shape", lambda r: "abc"),
    ("nonzeros", lambda r: int(r.integers(-(1 << 40), 1 << 40))),
    ("fillers", lambda r: int(r.integers(-5, 1 << 20))),
    ("bits", lambda r: int(r.integers(-2, 40))),
    ("index_bits", lambda r: int(r.integers(-2, 70))),
    ("codebook_size", lambda r: int(r.integers(0, 1 << 17))),
    ("dtype", lambda r: str(r.choice(["float32", "int8", "float16", "complex64", ""]))),
    ("kind", lambda r: str(r.choice(["conv", "fc", "rnn"]))),
    ("weights.count", lambda r: int(r.integers(0, 1 << 45))),
    ("indices.count", lambda r: int(r.integers(0, 1 << 45))),
    ("weights.bit_length", lambda r: int(r.integers(0, 1 << 62))),
    ("indices.payload_bytes", lambda r: int(r.integers(0, 1 << 50))),
    ("weights.table_bytes", lambda r: int(r.integers(0, 1 << 20))),
    ("weights.coding", lambda r: str(r.choice(["constant", "huffman", "packed", "raw", "zip"]))),
    ("indices.coding", lambda r: str(r.choice(["constant", "huffman", "packed", "raw"]))),
    ("weights.constant", lambda r: int(r.integers(0, 1 << 20))),
    ("weights.alphabet", lambda r: int(r.integers(0, 1 << 17))),
    ("weights.group", lambda r: int(r.integers(0, 10))),  # format 4: symbols a Huffman codeword codes
    ("indices.group", lambda r: int(r.choice([0, 2, 3, 4, 8, 9, 1 << 40]))),
]


def make_container() -> bytes:
    torch.manual_seed(0)
    from torch import nn

    model = nn.Sequential(nn.Conv3d(3, 8, 3), nn.BatchNorm3d(8), nn.Conv3d(8, 16, 3), nn.Flatten(), nn.Linear(64, 10))
    prune_(model, "conv=0.8,fc=0.9")
    state, _ = quantize_state_dict(model.state_dict(), None)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.vcz"
        encode(state, path, EncodeConfig(index_bits="conv=3,fc=2"))
        return path.read_bytes()


def edit_fields(blob: bytes, rng: np.random.Generator) -> bytes:
    """A consistent forgery of one to three manifest fields (the CRC32 recomputed)."""

    def edit(manifest: dict) -> None:
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.15:
                key = str(rng.choice(["format_version", "order", "raw_crc32", "layers"]))
                manifest[key] = [] if rng.random() < 0.5 else 7
                continue
            if not manifest.get("layers") or not isinstance(manifest["layers"], list):
                return
            layer = manifest["layers"][int(rng.integers(len(manifest["layers"])))]
            field, value = MANIFEST_FIELDS[int(rng.integers(len(MANIFEST_FIELDS)))]
            target = layer
            *parents, key = field.split(".")
            for parent in parents:
                target = target[parent]
            target[key] = value(rng)

    return edit_manifest(blob, edit)


def mutate_blob(blob: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A byte-level mutation (as the tests draw them) or a manifest forgery, chosen at random."""
    kind = str(rng.choice([*MUTATIONS, "manifest"]))
    if kind == "manifest":
        return kind, edit_fields(blob, rng)
    return kind, mutate(
        blob,
        kind,
        lambda low, high: int(rng.integers(low, high + 1)),
        lambda size: rng.bytes(int(rng.integers(1, size + 1))),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    info = machine()
    blob = make_container()
    rng = np.random.default_rng(args.seed)
    outcomes: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    unexpected: list[str] = []
    slowest = 0.0
    with tempfile.TemporaryDirectory() as folder:
        original_path = Path(folder) / "original.vcz"
        original_path.write_bytes(blob)
        reference = decode(original_path)
        path = Path(folder) / "mutated.vcz"
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start_all = time.perf_counter()
        for _ in range(args.cases):
            kind, mutated = mutate_blob(blob, rng)
            by_kind[kind] += 1
            path.write_bytes(mutated)
            start = time.perf_counter()
            try:
                decoded = decode(path)
                same = state_dicts_bits_equal(decoded, reference)
                outcomes["decoded identical" if same else "decoded DIFFERENT"] += 1
            except FormatError:
                outcomes["FormatError"] += 1
            except VidcompressError as error:
                outcomes[type(error).__name__] += 1
            except Exception:
                outcomes["unexpected"] += 1
                unexpected.append(traceback.format_exc(limit=3))
            slowest = max(slowest, time.perf_counter() - start)
        elapsed = time.perf_counter() - start_all
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = {
        "machine": info,
        "cases": args.cases,
        "seed": args.seed,
        "container_bytes": len(blob),
        "mutations": dict(by_kind),
        "outcomes": dict(outcomes),
        "unexpected_examples": unexpected[:5],
        "slowest_case_seconds": slowest,
        "total_seconds": elapsed,
        "peak_rss_growth_kib": rss_after - rss_before,
    }
    lines = [
        "# Fuzzing the container reader",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.fuzz --cases {args.cases} --seed {args.seed}`.",
        "",
        f"{args.cases:,} mutations of a {len(blob):,}-byte container in {elapsed:.0f} s; slowest case "
        f"{1000 * slowest:.1f} ms; peak memory grew by {(rss_after - rss_before) / 1024:.1f} MiB over the run.",
        "",
        markdown_table(["mutation", "cases"], [[k, f"{v:,}"] for k, v in sorted(by_kind.items())]),
        "",
        markdown_table(["outcome", "cases"], [[k, f"{v:,}"] for k, v in sorted(outcomes.items())]),
        "",
        '"decoded identical": the mutation touched nothing the decoder reads (for example the stage record in',
        'the metadata, or JSON whitespace) and the weights came out bit for bit. A "decoded DIFFERENT" or',
        '"unexpected" row would be a bug.',
    ]
    write_results("fuzz", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
