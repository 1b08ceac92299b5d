"""How much of `lenet_beyond.md`'s result is its retraining seed? The chosen settings, retrained anew.

`benchmarks.lenet --beyond` chose each network's setting on the validation split and measured the test
split once, on one retraining (seed 0). This check retrains the chosen setting (the same dense model,
rates, quantizer, schedule and function matching) with other seeds for the batch order, the random
moves and the centroid fine-tuning, and measures each on both splits. It chooses nothing: the test
split is read here only to show how far one run's test rise can be from another's.

    python -m benchmarks.lenet_seed_check [--network NAME] [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from torch import nn

from benchmarks import lenet
from benchmarks.common import RESULTS, machine, machine_line, write_results
from vidcompress.report import markdown_table

SEED_STEP = 1000  # retraining seed k adds k * SEED_STEP to every epoch's seed (run 0 is the benchmark's)


def retrain(
    name: str, chosen: dict[str, Any], dense: nn.Module, seed: int, data: dict[str, Any], folder: Path
) -> dict[str, Any]:
    """`chosen` (a `lenet_beyond.json` row) retrained from `dense` with `seed`, measured on both splits."""
    spec = lenet.NETWORKS[name]
    plan = spec["beyond"]
    shift = chosen["distillation"]["shift"]
    teacher = copy.deepcopy(dense)
    rates = {**plan["rates"], chosen["scan_layer"]: chosen["chosen_rate"]}
    start = time.perf_counter()
    pruned = lenet.prune(dense, rates, spec["lr"], data["train"], plan["schedule"], teacher, shift, seed)
    path = folder / f"{name}-{seed}.vcz"
    decoded = lenet.quantize_and_encode(
        pruned, spec["build"], chosen["bits"], spec["lr"], data["train"], path, plan["schedule"], teacher, shift, seed
    )
    row: dict[str, Any] = {
        "seed": seed,
        "bytes": path.stat().st_size,
        "ratio": chosen["dense_bytes"] / path.stat().st_size,
    }
    for split in ("validation", "test"):
        rise, standard_error = lenet.paired_rise(lenet.wrong(dense, data[split]), lenet.wrong(decoded, data[split]))
        row[split] = {"rise": rise, "standard_error": standard_error}
    row["seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=list(lenet.NETWORKS), help="one network; the other's rows are kept")
    parser.add_argument("--seeds", type=int, default=3, help="retrainings besides the benchmark's own")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from its .json, no run")
    args = parser.parse_args()
    beyond = json.loads((RESULTS / "lenet_beyond.json").read_text())["rows"]
    previous = RESULTS / "lenet_seed_check.json"
    results: dict[str, Any] = json.loads(previous.read_text())["networks"] if previous.exists() else {}
    if args.report_only:
        write_results("lenet_seed_check", {"networks": results}, "\n".join(report(results)))
        return
    data = lenet.mnist_tensors(quick=False)
    info = machine()
    with tempfile.TemporaryDirectory() as folder:
        for name in [args.network] if args.network else list(lenet.NETWORKS):
            chosen, dense = beyond[name], lenet.dense_lenet(name, data)
            rows = []
            for k in range(1, args.seeds + 1):
                rows.append(retrain(name, chosen, dense, k * SEED_STEP, data, Path(folder)))
                print(name, rows[-1], flush=True)
            results[name] = {
                "machine": machine_line(info),
                "command": "python -m benchmarks.lenet_seed_check" + (f" --network {name}" if args.network else ""),
                "rules": chosen["rules"],
                "bits": chosen["bits"],
                "benchmark_run": {
                    "ratio": chosen["ratio"],
                    "test_rise": lenet.rise_on_test(chosen),
                    "validation_rise": chosen["validation_error_compressed"] - chosen["validation_error_dense"],
                    "validation_se": next(
                        e["standard_error"]
                        for e in chosen["scan"]
                        if e["rate"] == chosen["chosen_rate"] and e["bits"] == chosen["bits"]
                    ),
                },
                "rows": rows,
            }
    write_results("lenet_seed_check", {"networks": results}, "\n".join(report(results)))


def runs_of(checked: dict[str, Any]) -> list[dict[str, Any]]:
    """A network's retrainings, the benchmark's own first: seed, ratio, validation and test rises."""
    own = checked["benchmark_run"]
    runs = [
        {
            "seed": 0,
            "ratio": own["ratio"],
            "validation": own["validation_rise"],
            "test": own["test_rise"],
            "validation_se": own["validation_se"],
        }
    ]
    return runs + [
        {
            "seed": row["seed"],
            "ratio": row["ratio"],
            "validation": row["validation"]["rise"],
            "test": row["test"]["rise"],
            "validation_se": row["validation"]["standard_error"],
            "test_se": row["test"]["standard_error"],
        }
        for row in checked["rows"]
    ]


def report(results: dict[str, Any]) -> list[str]:
    lines = [
        "# LeNets past Deep Compression: the chosen settings retrained with other seeds",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
    ]
    for name, r in results.items():
        goal = lenet.NETWORKS[name]["beyond"]["goal"]
        runs = runs_of(r)
        tests = [run["test"] for run in runs]
        met = sum(lenet.beyond_goal_met(name, run["ratio"], run["test"]) for run in runs)
        lines += [
            f"## {name}",
            "",
            f"Measured on {r['machine']}. Command: `{r['command']}`. Setting: `{r['rules']}`, {r['bits']}.",
            "",
            markdown_table(
                ["seed", "ratio (files)", "validation rise (points)", "test rise (points)", ""],
                [
                    [
                        str(run["seed"]),
                        f"{run['ratio']:.1f}x",
                        f"{run['validation']:+.2f}"
                        + (f" ± {run['validation_se']:.2f}" if "validation_se" in run else ""),
                        f"{run['test']:+.2f}" + (f" ± {run['test_se']:.2f}" if "test_se" in run else ""),
                        "the benchmark's run" if run["seed"] == 0 else "",
                    ]
                    for run in runs
                ],
            ),
            "",
            f"Test rise over the {len(runs)} retrainings: mean {statistics.mean(tests):+.2f}, from {min(tests):+.2f} "
            f"to {max(tests):+.2f} points; {met} of {len(runs)} meet the goal (>= {goal}x, within "
            f"{lenet.ALLOWED_RISE} test points).",
            "",
        ]
    return lines


if __name__ == "__main__":
    main()
