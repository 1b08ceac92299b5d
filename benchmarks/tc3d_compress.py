"""The demo as a benchmark: T-C3D trained on the synthetic set and compressed through the five steps.

Writes benchmarks/results/tc3d_compress.{json,md} and the report's plots.

    python -m benchmarks.tc3d_compress [--out runs/bench] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, machine_line, write_results
from examples.tc3d.compress import DEMO_SIZE, DEMO_WIDTH, compress_run, default_run_config, demo_compress_config
from examples.tc3d.report import write_report
from examples.tc3d.synthetic import DEMO_TEST_GROUPS, DEMO_VIDEOS_PER_CLASS, generate
from examples.tc3d.train import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench", help="work folder (data, run, compressed files)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--report-only", action="store_true",
        help="rewrite the Markdown and plots from results/tc3d_compress.json and the files in --out (no training)",
    )  # fmt: skip
    args = parser.parse_args()
    out = Path(args.out)
    if args.report_only:
        summary = json.loads((RESULTS / "tc3d_compress.json").read_text())
        publish(summary, out, summary.pop("machine"), summary.pop("wall_seconds"))
        return
    info = machine()
    start = time.perf_counter()
    if not (out / "data" / "ucfTrainTestlist" / "classInd.txt").exists():
        generate(out / "data", classes=8, videos_per_class=DEMO_VIDEOS_PER_CLASS, test_groups=DEMO_TEST_GROUPS)
    config = default_run_config(str(out / "data"), str(out / "train"), DEMO_WIDTH, DEMO_SIZE, args.epochs)
    config.progress = False
    trained = not (out / "train" / "model.safetensors").exists()
    if trained:
        run_training(config)
    summary = compress_run(out / "train", out / "compressed", demo_compress_config(progress=False))
    summary["wall_covers"] = "data, training, compression" if trained else "compression only; data and training reused"
    publish(summary, out, info, time.perf_counter() - start)


def publish(
    summary: dict[str, Any],
    out: Path,
    info: dict[str, Any],
    wall: float,
    *,
    name: str = "tc3d_compress",
    extra: str = "",
) -> None:
    """The run's report and plots into benchmarks/results/<name>.* (`extra`: Markdown appended)."""
    report = write_report(summary, out / "compressed", machine=machine_line(info), wall_seconds=wall)
    text = report.read_text().replace("](", f"]({name}_")
    for png in ("accuracy_vs_size.png", "layers.png", "histogram.png"):
        shutil.copy(out / "compressed" / png, RESULTS / f"{name}_{png}")
    summary["machine"] = info
    summary["wall_seconds"] = wall
    covers = summary.get("wall_covers", "data, training, compression")
    text = text.replace("Wall time of the whole demo", f"Wall time ({covers})")
    text += extra + f"\nCommand: `python -m benchmarks.{name}`.\n"
    write_results(name, json.loads(json.dumps(summary)), text)
    print(text)


if __name__ == "__main__":
    main()
