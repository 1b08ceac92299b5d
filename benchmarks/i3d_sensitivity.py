"""Which parts of the pretrained I3D cannot lose weights: each block pruned alone, by magnitude, with
no retraining, and the model compared with the dense one on every clip (centre crop, 64 centred frames).

    python -m benchmarks.i3d_sensitivity [--sparsity 0.5]
"""

from __future__ import annotations

import argparse
import fnmatch
from typing import Any

from benchmarks.common import machine, machine_line, write_results
from examples.i3d.clips import load_clips
from examples.i3d.convert import pretrained_i3d
from examples.i3d.evaluate import compare, make_views, predict
from examples.i3d.model import BLOCKS
from vidcompress import PruneConfig, prune_
from vidcompress.report import markdown_table

GROUPS = {"stem": "conv3d_*", **{name: f"{name}.*" for name in BLOCKS}, "logits": "logits.*"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()
    info = machine()
    views, inputs = make_views(load_clips(), ("centre",))
    dense = predict(pretrained_i3d(), inputs)
    rows: list[dict[str, Any]] = []
    for group, pattern in GROUPS.items():
        model = pretrained_i3d()
        prune_(model, PruneConfig(sparsity=f"{pattern}={args.sparsity}"))
        parameters = sum(
            p.numel() for n, p in model.named_parameters() if n.endswith("conv.weight") and _in(n, pattern)
        )
        rows.append({"group": group, "parameters": parameters, **compare(dense, predict(model, inputs), views)})
        print(rows[-1], flush=True)
    command = f"python -m benchmarks.i3d_sensitivity --sparsity {args.sparsity}"
    total = sum(r["parameters"] for r in rows)
    lines = [
        "# I3D: sensitivity of each block to pruning, without retraining",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"Each group's convolution weights pruned alone to {args.sparsity} by magnitude (the rest dense, fp32), "
        f"compared with the dense model on {len(views)} views (each clip, centre crop, 64 centred frames).",
        "",
        markdown_table(
            ["group", "conv weights", "share", "agreement", "KL mean (max)", "top-1 labelled"],
            [[r["group"], f"{r['parameters']:,}", f"{100 * r['parameters'] / total:.1f}%", f"{100 * r['agreement']:.0f}%",
              f"{r['kl']:.3f} ({r['kl_max']:.2f})", f"{100 * r['top1_labelled']:.0f}%"] for r in rows],
        ),
    ]  # fmt: skip
    write_results("i3d_sensitivity", {"machine": info, "command": command, "rows": rows}, "\n".join(lines))
    print("\n".join(lines))


def _in(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


if __name__ == "__main__":
    main()
