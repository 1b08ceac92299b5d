"""The demo as a benchmark: T-C3D trained on the synthetic set and compressed through the five steps.

`--setting paper` (the default here) writes benchmarks/results/tc3d_compress.{json,md} and the report's
plots; `--setting quick` (the default demo's) writes tc3d_compress_quick.*.

    python -m benchmarks.tc3d_compress [--setting paper|quick] [--out runs/bench] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, machine_line, write_results
from examples.tc3d.demo import SETTINGS, run_demo
from examples.tc3d.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=["paper", "quick"], default="paper")
    parser.add_argument("--out", help="work folder (data, run, compressed files) [default: runs/bench-SETTING]")
    parser.add_argument("--epochs", type=int, help="training epochs [default: the setting's]")
    parser.add_argument(
        "--report-only", action="store_true",
        help="rewrite the Markdown and plots from the stored JSON and the files in --out (no training)",
    )  # fmt: skip
    args = parser.parse_args()
    out = Path(args.out or f"runs/bench-{args.setting}")
    name = "tc3d_compress" if args.setting == "paper" else f"tc3d_compress_{args.setting}"
    command = f"python -m benchmarks.tc3d_compress --setting {args.setting}"
    if args.report_only:
        summary = json.loads((RESULTS / f"{name}.json").read_text())
        publish(summary, out, summary.pop("machine"), summary.pop("wall_seconds"), name=name, command=command)
        return
    info = machine()
    summary = run_demo(SETTINGS[args.setting], out, epochs=args.epochs, progress=False)
    publish(summary, out, info, summary.pop("wall_seconds"), name=name, command=command)


def publish(
    summary: dict[str, Any],
    out: Path,
    info: dict[str, Any],
    wall: float,
    *,
    name: str = "tc3d_compress",
    extra: str = "",
    command: str | None = None,
) -> None:
    """The run's report and plots into benchmarks/results/<name>.* (`extra`: Markdown appended;
    `command`: the one that reruns it, by default `python -m benchmarks.<name>`)."""
    report = write_report(summary, out / "compressed", machine=machine_line(info), wall_seconds=wall)
    text = report.read_text().replace("](", f"]({name}_")
    for png in ("accuracy_vs_size.png", "layers.png", "histogram.png"):
        shutil.copy(out / "compressed" / png, RESULTS / f"{name}_{png}")
    summary["machine"] = info
    summary["wall_seconds"] = wall
    covers = summary.get("wall_covers", "data, training, compression")
    text = text.replace("Wall time of the whole demo", f"Wall time ({covers})")
    text += extra + f"\nCommand: `{command or f'python -m benchmarks.{name}'}`.\n"
    write_results(name, json.loads(json.dumps(summary)), text)
    print(text)


if __name__ == "__main__":
    main()
