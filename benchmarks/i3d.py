"""A real trained 3D CNN: DeepMind's Kinetics-400 I3D compressed after training, measured on real clips.

Fixtures: `python -m examples.real fetch i3d clips`. Each setting prunes (one-shot, by magnitude) and
quantizes (k-means per layer, no fine-tuning: no labelled training data here) the pretrained I3D,
encodes it, decodes the container and compares the decoded model with the dense one on every view
(each of the ten clips at two crops, 64 centred frames): top-1 on the four clips whose action is a
Kinetics class, top-1 agreement with the dense model, and KL(dense || compressed).

    python -m benchmarks.i3d [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, machine, machine_line, write_results
from examples.i3d.clips import CROPS, LABELS, load_clips
from examples.i3d.compress import PAPER_BITS, PAPER_SPARSITY, compress_i3d
from examples.i3d.convert import pretrained_i3d
from examples.i3d.evaluate import compare, make_views, predict
from vidcompress.io import save_state_dict
from vidcompress.report import markdown_table

SETTINGS = [
    # (label, sparsity rules or None, bits rules)
    ("dense weights, 8 bits", None, "conv=8"),
    ("dense weights, 4 bits", None, "conv=4"),
    ("conv 0.5, 8 bits", "conv=0.5", "conv=8"),
    ("conv 0.5, 4 bits", "conv=0.5", "conv=4"),
    ("conv 0.7, 6 bits", "conv=0.7", "conv=6"),
    ("conv 0.9, 8 bits", "conv=0.9", "conv=8"),
    ("conv 0.9, 4 bits", "conv=0.9", "conv=4"),
    ("paper: conv 0.9 / logits 0.95, 8 / 5 bits", PAPER_SPARSITY, PAPER_BITS),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two clips, one crop, two settings (a smoke run)")
    args = parser.parse_args()
    info = machine()
    clips = load_clips()
    crops: tuple[str, ...] = CROPS[:2]
    settings = SETTINGS
    if args.quick:
        clips, crops, settings = clips[-2:], CROPS[:1], [SETTINGS[0], SETTINGS[-1]]
    views, inputs = make_views(clips, crops)
    start = time.perf_counter()
    dense_model = pretrained_i3d()
    dense = predict(dense_model, inputs)
    dense_seconds = (time.perf_counter() - start) / len(inputs)
    name = "i3d_quick" if args.quick else "i3d"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        dense_file = Path(folder) / "i3d.safetensors"
        save_state_dict(dense_model.state_dict(), dense_file)
        dense_bytes = dense_file.stat().st_size
        baseline: dict[str, Any] = {
            "setting": "fp32 (the checkpoint)",
            "bytes": dense_bytes,
            "bits_per_parameter": 32.0,
            **compare(dense, dense, views),
        }
        print(baseline, flush=True)
        for label, sparsity, bits in settings:
            began = time.perf_counter()
            decoded, figures = compress_i3d(pretrained_i3d(), sparsity, bits, Path(folder) / "i3d.vcz")
            row = {
                "setting": label,
                "sparsity": sparsity,
                "bits": bits,
                **figures,
                **compare(dense, predict(decoded, inputs), views),
            }
            row["ratio"] = dense_bytes / row["bytes"]
            row["seconds"] = time.perf_counter() - began
            rows.append(row)
            print(row, flush=True)
            (RESULTS / f"{name}.partial.json").write_text(json.dumps(rows, indent=2))
    command = "python -m benchmarks.i3d" + (" --quick" if args.quick else "")
    labelled = sorted({view.clip for view in views if view.label is not None})
    lines = [
        "# I3D (Kinetics-400, DeepMind's weights) compressed after training",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"{len(clips)} real clips x {len(crops)} crops ({', '.join(crops)}) = {len(views)} views of 64 centred frames, "
        f"short side 256, 224 x 224, values in [-1, 1]. Top-1 is over the views of the {len(labelled)} clips whose "
        f"action is a Kinetics class ({', '.join(sorted(set(LABELS.values())))}); agreement and KL compare each "
        "compressed model's answer with the dense model's on every view. No fine-tuning: pruning by magnitude "
        f"and k-means weight sharing after training. Dense inference: {dense_seconds:.1f} s a view on this CPU.",
        "",
        markdown_table(
            ["setting", "bytes", "ratio", "bits / parameter", "weights kept", "top-1 labelled", "agreement", "KL mean (max)"],
            [[baseline["setting"], f"{dense_bytes:,}", "1.0x", "32", "100%", f"{100 * baseline['top1_labelled']:.0f}%", "100%", "0"]]
            + [
                [
                    r["setting"], f"{r['bytes']:,}", f"{r['ratio']:.1f}x", f"{r['bits_per_parameter']:.3f}",
                    f"{100 * r['weights_kept']:.1f}%", f"{100 * r['top1_labelled']:.0f}%", f"{100 * r['agreement']:.0f}%",
                    f"{r['kl']:.3f} ({r['kl_max']:.2f})",
                ]
                for r in rows
            ],
        ),
        "",
        "The paper's T-C3D result is 127 MB -> 4.4 MB, about 1.1 bits a parameter, after retraining; the row "
        "marked paper applies its sparsities and bits to I3D without any retraining.",
    ]  # fmt: skip
    write_results(
        name,
        {"machine": info, "command": command, "views": [v.__dict__ for v in views], "baseline": baseline, "rows": rows},
        "\n".join(lines),
    )
    (RESULTS / f"{name}.partial.json").unlink(missing_ok=True)
    print("\n".join(lines))


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    main()
