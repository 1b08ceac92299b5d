"""What distillation from the dense I3D recovers, with no labels: the same compressed setting with
and without it, measured like `benchmarks/i3d.py` (agreement and KL with the dense model, top-1 on the
labelled clips). The student trains on augmented windows of the same ten clips it is measured on
(other windows, crops and flips; the only video at hand), so the recovery is an upper bound of what
unseen clips would show.

    python -m benchmarks.i3d_distill [--sparsity conv=0.7] [--bits conv=6] [--steps 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, machine_line, write_results
from examples.i3d.clips import CROPS, load_clips
from examples.i3d.compress import compress_i3d
from examples.i3d.convert import pretrained_i3d
from examples.i3d.distill import TRAIN_FRAMES, prune_and_distill
from examples.i3d.evaluate import compare, make_views, predict
from vidcompress import encode, load_compressed
from vidcompress.codec import inspect_container, read_container
from vidcompress.report import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", default="conv=0.7")
    parser.add_argument("--bits", default="conv=6")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    info = machine()
    clips = load_clips()
    views, inputs = make_views(clips, CROPS[:2])
    teacher = pretrained_i3d()
    dense = predict(teacher, inputs)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        plain, figures = compress_i3d(pretrained_i3d(), args.sparsity, args.bits, Path(folder) / "plain.vcz")
        rows.append({"method": "post-training (no data)", **figures, **compare(dense, predict(plain, inputs), views)})
        print(rows[-1], flush=True)
        start = time.perf_counter()
        student = pretrained_i3d()
        losses = prune_and_distill(student, teacher, clips, args.sparsity, args.bits, steps=args.steps, lr=args.lr)
        seconds = time.perf_counter() - start
        path = Path(folder) / "distilled.vcz"
        encode(student, path)
        totals = inspect_container(read_container(path)).totals()
        decoded = load_compressed(path, pretrained_i3d())
        rows.append({
            "method": f"distilled ({args.steps} + {max(args.steps // 3, 1)} steps)", "bytes": path.stat().st_size,
            "bits_per_parameter": totals["bits_per_parameter"], **compare(dense, predict(decoded, inputs), views),
        })  # fmt: skip
        print(rows[-1], flush=True)
    command = f"python -m benchmarks.i3d_distill --sparsity {args.sparsity} --bits {args.bits} --steps {args.steps}"
    lines = [
        "# I3D: recovering a compressed model by distillation, without labels",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"Setting: sparsity `{args.sparsity}`, bits `{args.bits}`. The student is pruned (masks held), trained "
        f"{args.steps} steps (one augmented {TRAIN_FRAMES}-frame window a step, SGD lr {args.lr}, KL at "
        f"temperature 2 against the dense model), quantized, and its centroids trained {max(args.steps // 3, 1)} "
        f"more steps at lr / 10: {seconds / 60:.1f} minutes on this CPU. Measured on {len(views)} views "
        "(ten clips, two crops, 64 centred frames) of the same clips it trained on, with other windows: an upper "
        "bound of what unseen clips would show.",
        "",
        markdown_table(
            ["method", "bytes", "bits / parameter", "top-1 labelled", "agreement", "KL mean (max)"],
            [
                [
                    r["method"],
                    f"{r['bytes']:,}",
                    f"{r['bits_per_parameter']:.3f}",
                    f"{100 * r['top1_labelled']:.0f}%",
                    f"{100 * r['agreement']:.0f}%",
                    f"{r['kl']:.3f} ({r['kl_max']:.2f})",
                ]
                for r in rows
            ],
        ),
        "",
        f"Distillation loss (KL at temperature 2), first and last five steps of the pruned phase: "
        f"{', '.join(f'{v:.3f}' for v in losses['pruned'][:5])} ... {', '.join(f'{v:.3f}' for v in losses['pruned'][-5:])}.",
    ]
    write_results(
        "i3d_distill", {"machine": info, "command": command, "rows": rows, "losses": losses}, "\n".join(lines)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
