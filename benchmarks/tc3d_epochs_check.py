"""One Tables I/II row trained once with a chosen learning rate and length: the check that found why
the appearance pair failed at 15 epochs (`benchmarks/results/tc3d_epochs_check.md`).

The data are `benchmarks.tc3d_tables`' videos (same seed, same splits), written once under FOLDER;
the run's per-epoch validation accuracy and training loss, and its test accuracy per class family,
are printed as one JSON line. One thread, as each row of the tables runs.

    python -m benchmarks.tc3d_epochs_check FOLDER NAME LR EPOCHS SEED SEGMENTS FUSION
    e.g.  python -m benchmarks.tc3d_epochs_check /tmp/check lr01_e30_s1 0.01 30 1 3 average
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.tc3d_tables import FRAMES, TEST_GROUPS, VALIDATION_GROUPS, VIDEOS_PER_CLASS, family_accuracy
from examples.tc3d.synthetic import generate
from examples.tc3d.train import TrainConfig, run_training


def main() -> None:
    folder, name = Path(sys.argv[1]), sys.argv[2]
    lr, epochs, seed, segments, fusion = (
        float(sys.argv[3]),
        int(sys.argv[4]),
        int(sys.argv[5]),
        int(sys.argv[6]),
        sys.argv[7],
    )
    torch.set_num_threads(1)
    root = folder / "synthetic"
    if not (root / "done").exists():
        generate(root, classes=8, frames=FRAMES, videos_per_class=VIDEOS_PER_CLASS, test_groups=TEST_GROUPS,
                 validation_groups=VALIDATION_GROUPS)  # fmt: skip
        (root / "done").write_text("")
    config = TrainConfig(
        data=str(root), width=8, size=48, frames=8, stride=2, epochs=epochs, batch_size=8, lr=lr,
        lr_steps=[int(epochs * 0.67), int(epochs * 0.87)], dropout=0.5, workers=0, progress=False,
        segments=segments, fusion=fusion, seed=seed, out=str(folder / name),
    )  # fmt: skip
    start = time.perf_counter()
    history = run_training(config)["history"]
    print(name, json.dumps({
        "seconds": time.perf_counter() - start,
        "val": [round(e["video_accuracy"], 3) for e in history],
        "loss": [round(e["train_loss"], 3) for e in history],
        **family_accuracy(config),
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
