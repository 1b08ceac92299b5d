"""Size budgets on real trained networks: `compress_to_budget` against one setting for every layer.

For each target size, four ways to meet it with no retraining:
- one setting for all layers (the pipeline before budgets): of a grid of (sparsity, bits) applied to every
  layer, the one with the least validation damage whose file fits;
- the budget's allocation with k-means levels (data-free damage: each layer's relative squared error);
- the same with ECSQ levels (lambda chosen on the validation split);
- the budget's allocation with k-means and importance from calibration batches (squared gradients).

MNIST CNN (`ccexam`, 99.05%): targets as ratios of its fp32 file; every choice on the validation split
(MNIST's 10,000 validation images), the test split measured once per row. I3D (`--i3d`, slow): top-1
agreement and KL with the dense model on the 20 views of `benchmarks.i3d`; importance from the end
crops (views the evaluation does not use), with the dense model's own answers as labels.

    python -m benchmarks.budget [--i3d | --i3d-only]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import RESULTS, machine, machine_line, write_results
from benchmarks.mnist_cnn import MNISTNet
from examples.real import load_ccexam_state_dict, load_mnist
from vidcompress import encode, load_compressed
from vidcompress.budget import BudgetConfig, Target, compress_to_budget
from vidcompress.codec import EncodeConfig
from vidcompress.quantize import estimate_importance
from vidcompress.report import markdown_table

MNIST_RATIOS = (20.0, 40.0, 60.0, 80.0)
LAMBDAS = (0.005, 0.02, 0.05)
SINGLE_SETTINGS = [(s, b) for s in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95) for b in (2, 3, 4, 5, 6, 8)]


def one_setting(tensors: dict[str, torch.Tensor], sparsity: float, bits: int, config: BudgetConfig) -> dict:
    """Every compressed layer at the same sparsity and bits (the candidates' own pruning and k-means)."""
    from vidcompress.budget import _select, compressed_weight, layer_candidates

    result = dict(tensors)
    chosen = {}
    for layer in _select(tensors, config):
        width = config.index_bits.resolve([layer])[layer.name]
        (candidate,) = layer_candidates(
            layer.name, tensors[layer.name], config, width, sparsities=(sparsity,), bits=(bits,)
        )
        result[layer.name] = compressed_weight(tensors[layer.name], candidate, config)
        chosen[layer.name] = candidate
    return {"tensors": result, "chosen": chosen}


def single_setting_row(
    tensors: dict[str, torch.Tensor], budget: int, folder: Path, score: Callable[[Path], dict[str, float]]
) -> dict[str, Any]:
    """The best single (sparsity, bits) for every layer that fits `budget`, chosen by validation score."""
    config = BudgetConfig()
    best: dict[str, Any] | None = None
    for sparsity, bits in SINGLE_SETTINGS:
        setting = one_setting(tensors, sparsity, bits, config)
        path = folder / "single.vcz"
        encoding = EncodeConfig(
            bits={name: bits for name in setting["chosen"]},
            index_bits={name: c.index_bits for name, c in setting["chosen"].items()},
        )
        encode(setting["tensors"], path, encoding)
        size = path.stat().st_size
        if size > budget:
            continue
        scores = score(path)
        if best is None or scores["validation"] > best["validation"]:
            best = {"setting": f"all layers {sparsity:g} / {bits} bits", "bytes": size, **scores}
    return best or {"setting": "no single setting fits", "bytes": 0, "validation": float("nan"), "test": float("nan")}


def mnist(folder: Path) -> dict[str, Any]:
    data = load_mnist()

    def tensors_of(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = data[split]
        return (torch.from_numpy(images).view(-1, 1, 28, 28) - 0.1307) / 0.3081, torch.from_numpy(labels)

    validation, test, train = tensors_of("validation"), tensors_of("test"), tensors_of("train")

    def accuracy(model: nn.Module, split: tuple[torch.Tensor, torch.Tensor]) -> float:
        with torch.no_grad():
            return 100.0 * float((model.eval()(split[0]).argmax(1) == split[1]).float().mean())

    def score(path: Path) -> dict[str, float]:
        model = load_compressed(path, MNISTNet())
        return {"validation": accuracy(model, validation), "test": accuracy(model, test)}

    dense = MNISTNet()
    dense.load_state_dict(load_ccexam_state_dict())
    tensors = {name: t.detach() for name, t in dense.state_dict().items()}
    dense_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    calibration = [(train[0][i : i + 256], train[1][i : i + 256]) for i in range(0, 2048, 256)]
    importance = estimate_importance(dense, calibration, lambda m, b: F.cross_entropy(m(b[0]), b[1]))
    baseline = {"validation": accuracy(dense, validation), "test": accuracy(dense, test)}
    rows = []
    for ratio in MNIST_RATIOS:
        target = Target("ratio", ratio)
        budget = target.bytes(dense_bytes, sum(t.numel() for t in tensors.values()))
        start = time.perf_counter()
        row: dict[str, Any] = {"ratio_target": ratio, "budget": budget,
                               "one setting": single_setting_row(tensors, budget, folder, score)}  # fmt: skip
        path = folder / "budget.vcz"
        allocation, _ = compress_to_budget(tensors, path, target)
        row["budget, k-means"] = {"bytes": path.stat().st_size, **score(path), "damage": allocation.damage}
        best = None
        for lam in LAMBDAS:  # lambda on validation
            allocation, _ = compress_to_budget(tensors, path, target, BudgetConfig(method="ecsq", lagrangian=lam))
            scores = score(path)
            if best is None or scores["validation"] > best["validation"]:
                best = {"bytes": path.stat().st_size, **scores, "lambda": lam, "damage": allocation.damage}
        row["budget, ECSQ"] = best
        allocation, _ = compress_to_budget(tensors, path, target, importance=importance)
        row["budget, k-means + importance"] = {"bytes": path.stat().st_size, **score(path)}
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(ratio, {k: v for k, v in row.items() if isinstance(v, dict)}, flush=True)
    return {"dense_bytes": dense_bytes, "baseline": baseline, "rows": rows}


METHODS = ("one setting", "budget, k-means", "budget, ECSQ", "budget, k-means + importance")


def mnist_table(result: dict[str, Any]) -> str:
    cells = []
    for row in result["rows"]:
        for method in METHODS:
            entry = row[method]
            extra = entry.get("setting", "") or (f"lambda {entry['lambda']:g}" if "lambda" in entry else "")
            cells.append([
                f"{row['ratio_target']:g}x ({row['budget']:,} B)", method + (f" ({extra})" if extra else ""),
                f"{entry['bytes']:,}", f"{result['dense_bytes'] / entry['bytes']:.1f}x" if entry["bytes"] else "-",
                f"{entry['validation']:.2f}", f"{entry['test']:.2f}",
            ])  # fmt: skip
    return markdown_table(["target", "method", "bytes", "ratio", "validation acc. (%)", "test acc. (%)"], cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--i3d", action="store_true", help="also I3D (slow: minutes a setting)")
    parser.add_argument("--i3d-only", action="store_true", help="only I3D; the MNIST rows kept from budget.json")
    parser.add_argument("--report-only", action="store_true", help="rewrite budget.md from budget.json")
    parser.add_argument(
        "--i3d-smaller", action="store_true", help="add I3D rows at smaller targets (k-means) to budget.json"
    )
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((RESULTS / "budget.json").read_text())
        write_results("budget", result, report(result))
        return
    if args.i3d_smaller:
        from benchmarks.budget_i3d import i3d_budget, smaller_targets

        result = json.loads((RESULTS / "budget.json").read_text())
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            added = i3d_budget(Path(folder), targets=smaller_targets(), kmeans_only=True)
        sizes = {row["target_bytes"] for row in added["rows"]}  # a rerun replaces its own rows
        result["i3d"]["rows"] = [row for row in result["i3d"]["rows"] if row["target_bytes"] not in sizes]
        result["i3d"]["rows"] += added["rows"]
        result["i3d_smaller"] = {"command": "python -m benchmarks.budget --i3d-smaller", "machine": machine(),
                                 "wall_seconds": time.perf_counter() - start}  # fmt: skip
        write_results("budget", result, report(result))
        print(report(result))
        return
    info = machine()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if args.i3d_only:
            stored = json.loads((RESULTS / "budget.json").read_text())
            result = {"mnist_cnn": stored["mnist_cnn"], "mnist_machine": stored.get("mnist_machine", stored["machine"])}
        else:
            result = {"mnist_cnn": mnist(Path(folder)), "mnist_machine": info}
        if args.i3d or args.i3d_only:
            from benchmarks.budget_i3d import i3d_budget

            result["i3d"] = i3d_budget(Path(folder))
    command = "python -m benchmarks.budget" + (" --i3d" if args.i3d else "") + (" --i3d-only" if args.i3d_only else "")
    result.update(machine=info, command=command, wall_seconds=time.perf_counter() - start)
    write_results("budget", result, report(result))
    print(report(result))


def report(result: dict[str, Any]) -> str:
    base = result["mnist_cnn"]["baseline"]
    command = result.get("command", "python -m benchmarks.budget --i3d-only")
    wall = f" Wall time {result['wall_seconds'] / 60:.1f} minutes." if "wall_seconds" in result else ""
    reused = " The MNIST rows are from the run before it, on the same machine." if "--i3d-only" in command else ""
    lines = [
        "# Size budgets on real trained networks",
        "",
        f"Machine: {machine_line(result['machine'])}. Command: `{command}`.{wall}{reused}",
        "",
        "No retraining anywhere: pruning by magnitude and quantization after training, each file within its",
        "target. 'One setting' is the pipeline before budgets: the same sparsity and bits for every layer, the",
        "best (on validation) of a grid that fits. The budget rows choose each layer's sparsity and bits from",
        "exact coded sizes (data-free damage, or squared-gradient importance on 2,048 training images).",
        "",
        f"## MNIST CNN (`ccexam`), dense: validation {base['validation']:.2f}%, test {base['test']:.2f}%",
        "",
        mnist_table(result["mnist_cnn"]),
        "",
        "One setting for every layer has to prune the 288-weight first convolution as hard as the 401,408-weight",
        "first FC layer, which holds 95% of the parameters; from 40x on, the only single settings that fit prune",
        "90-95% everywhere and the network collapses. The budget spends its bytes where they buy accuracy.",
    ]
    if "i3d" in result:
        from benchmarks.budget_i3d import i3d_table

        lines += ["", "## I3D (Kinetics-400)", "", i3d_table(result["i3d"])]
        smaller = result.get("i3d_smaller")
        if smaller:
            lines += ["", f"The rows below the 4-bit file's size come from `{smaller['command']}` "
                      f"({smaller['wall_seconds'] / 60:.1f} minutes, {machine_line(smaller['machine'])})."]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
