"""The demo in three sizes, and the one function that runs it: data, training, the five steps, a report.

- `quick` (the default): the whole pipeline in a few minutes on a 2-core CPU, so a newcomer sees every
  step and the report while they watch. Smaller model and data, a coarser pruning schedule (+0.3 an
  epoch instead of +0.1), one epoch where the paper's setting has several.
- `paper` (`--paper`): the paper's schedule (+0.1 an epoch, 9 / 3 / 16 epochs, 3 of centroid
  fine-tuning) on the CPU-sized model of `benchmarks/results/tc3d_compress.md` (about half an hour).
- `full` (`--full`): the paper's full-size model, width 64 on 112 x 112 input, for a GPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.tc3d.compress import CompressConfig, compress_run, default_run_config
from examples.tc3d.synthetic import generate
from examples.tc3d.train import run_training
from vidcompress import DSDConfig, StepSchedule
from vidcompress.prune import PAPER_SPARSITY, SPARSE_PHASE_SPARSITY
from vidcompress.quantize import PAPER_BITS, QuantizeConfig

# The measured run of the paper setting, which the quick demo's report quotes.
PAPER_SETTING_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "tc3d_compress.json"


@dataclass(frozen=True)
class DemoSetting:
    """One size of the demo.

    Args:
        name: quick, paper or full.
        description: one line for the report.
        width, size: the network's width (64 = the paper's) and input side.
        frame_size: the side of the generated videos.
        videos_per_class, test_groups: the synthetic set (groups of 4 videos a class for testing).
        epochs: training epochs.
        compress: the five steps' settings, given whether to show per-batch progress bars.
        cache_frames: decode each video once and train in the main process (small sets only).
    """

    name: str
    description: str
    width: int
    size: int
    frame_size: int
    videos_per_class: int
    test_groups: int
    epochs: int
    compress: Callable[[bool], CompressConfig]
    cache_frames: bool = False


def quick_compress_config(progress: bool = True) -> CompressConfig:
    """The paper's five steps and targets on a coarse schedule: +0.3 an epoch to 0.85 / 0.9 (3 epochs),
    1 dense epoch, +0.3 an epoch to 0.9 / 0.95 then 5 epochs of recovery at that sparsity (8 in all),
    1 epoch of centroid fine-tuning; conv at 5 bits, the paper's 8 / 5 reported beside."""
    dsd = DSDConfig(
        sparse_sparsity=SPARSE_PHASE_SPARSITY, final_sparsity=PAPER_SPARSITY, schedule=StepSchedule(0.3),
        sparse_epochs=3, dense_epochs=1, final_epochs=8, recovery_lr_factor=0.1,
    )  # fmt: skip
    return CompressConfig(
        dsd=dsd, quantize=QuantizeConfig(bits="conv=5,fc=5"), compare=QuantizeConfig(bits=PAPER_BITS),
        finetune_epochs=1, progress=progress,
    )  # fmt: skip


def paper_compress_config(progress: bool = True) -> CompressConfig:
    """The paper's schedule and targets (`paper_dsd`) with conv weights at 5 bits (why: docs/tc3d.md)."""
    return CompressConfig(
        quantize=QuantizeConfig(bits="conv=5,fc=5"), compare=QuantizeConfig(bits=PAPER_BITS), progress=progress
    )


def full_compress_config(progress: bool = True) -> CompressConfig:
    """Everything the paper's: schedule, targets and 8 / 5 bits."""
    return CompressConfig(progress=progress)


SETTINGS = {
    "quick": DemoSetting(
        "quick", "the default, sized to finish in a few minutes on a 2-core CPU",
        width=16, size=32, frame_size=32, videos_per_class=40, test_groups=3, epochs=20,
        compress=quick_compress_config, cache_frames=True,
    ),
    "paper": DemoSetting(
        "paper", "the paper's pruning schedule on a CPU-sized model (--paper)",
        width=24, size=48, frame_size=64, videos_per_class=56, test_groups=6, epochs=15,
        compress=paper_compress_config,
    ),
    "full": DemoSetting(
        "full", "the paper's full-size model and bits, for a GPU (--full)",
        width=64, size=112, frame_size=128, videos_per_class=56, test_groups=6, epochs=30,
        compress=full_compress_config,
    ),
}  # fmt: skip


def run_demo(
    setting: DemoSetting,
    out: str | Path,
    *,
    epochs: int | None = None,
    fusion: str | None = None,
    retrain: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate the data (unless `out/data` has it), train (unless `out/train` has a model or
    `retrain`), compress through the five steps into `out/compressed`; return the run's summary.
    `wall_seconds` and `wall_covers` in it say what the time includes."""
    out = Path(out)
    start = time.perf_counter()
    data, train = out / "data", out / "train"
    generated = not (data / "ucfTrainTestlist" / "classInd.txt").exists()
    if generated:
        log(f"1/4 generating the synthetic action set in {data}")
        generate(
            data, classes=8, videos_per_class=setting.videos_per_class, test_groups=setting.test_groups, frames=48,
            size=setting.frame_size, progress=progress,
        )  # fmt: skip
    chosen = {"fusion": fusion} if fusion else {}
    config = default_run_config(str(data), str(train), setting.width, setting.size, epochs or setting.epochs, **chosen)
    config.progress = progress
    if setting.cache_frames:
        config.workers, config.cache_frames = 0, True
    trained = retrain or not (train / "model.safetensors").exists()
    if trained:
        log(
            f"2/4 training T-C3D (width {config.width}, {config.size} x {config.size}, {config.fusion} fusion, "
            f"{config.epochs} epochs)"
        )
        run_training(
            config,
            on_epoch=lambda r: log(
                f"  epoch {r['epoch']}: loss {r['train_loss']:.3f}, video accuracy {100 * r['video_accuracy']:.1f}%"
            ),
        )
    log("3/4 compressing: sparse, dense, prune, quantize, Huffman")
    summary = compress_run(train, out / "compressed", setting.compress(progress), log=log)
    summary["setting"] = {"name": setting.name, "description": setting.description}
    summary["reference"] = paper_setting_reference() if setting.name == "quick" else None
    summary["wall_seconds"] = time.perf_counter() - start
    summary["wall_covers"] = (
        "data, training, compression" if generated and trained else "compression; data or training reused"
    )
    return summary


def paper_setting_reference() -> dict[str, Any] | None:
    """What the paper setting measured (ratio, accuracy change, minutes, machine), from its results file."""
    if not PAPER_SETTING_RESULTS.exists():
        return None
    run = json.loads(PAPER_SETTING_RESULTS.read_text())
    return {
        "ratio": run["ratio"],
        "accuracy_drop_points": run["accuracy_drop_points"],
        "original_accuracy": run["steps"][0]["accuracy"],
        "minutes": run["wall_seconds"] / 60,
        "machine": run.get("machine", {}),
        "file": "benchmarks/results/tc3d_compress.md",
    }
