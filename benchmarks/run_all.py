"""Run every benchmark, then write benchmarks/results/summary.md (with plots) from their JSON files.

python -m benchmarks.run_all            # all of them (several hours on 2 CPU cores; the real fixtures first)
python -m benchmarks.run_all --summary  # only rebuild summary.md from the existing results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import RESULTS

SCRIPTS = (
    "kmeans", "codec", "container_costs", "cli_memory", "spmv", "conv_cpu", "inference", "lenet", "lenet --beyond", "lenet_seed_check", "mnist_cnn", "i3d",
    "i3d_distill", "i3d_sensitivity", "fuzz", "tc3d_tables", "tc3d_hard", "budget", "context_coding", "entropy_gap", "walks",
    "budget_half_bits", "nncodec", "nncodec --model lenet-300-100", "nncodec --model lenet-5", "nncodec --model i3d",
    "tc3d_compress",
)  # fmt: skip


def run_all() -> None:
    subprocess.run([sys.executable, "-m", "examples.real", "fetch"], check=True)  # lenet and i3d need them
    for name in SCRIPTS:
        module, *arguments = name.split()
        print(f"== benchmarks.{name}", flush=True)
        subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *arguments], check=True)


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_summary() -> Path:
    from examples.tc3d.report import rules_text, signed_points
    from vidcompress.plots import pyplot, save_figure
    from vidcompress.report import markdown_table

    lines = ["# Benchmark summary", "", "Built by `python -m benchmarks.run_all --summary` from the JSON files beside it;",
             "each section names its source file, which names its machine and command.", ""]  # fmt: skip
    compress = _load("tc3d_compress")
    if compress:
        first, last = compress["steps"][0], compress["steps"][-1]
        lines += [
            "## T-C3D compressed end to end (`tc3d_compress.md`)",
            "",
            f"{first['bytes']:,} -> {last['bytes']:,} bytes: **{compress['ratio']:.1f}x** "
            f"({compress['bits_per_parameter']:.3f} bits per parameter), accuracy "
            f"{100 * first['accuracy']:.1f}% -> {100 * last['accuracy']:.1f}% "
            f"({signed_points(compress['accuracy_drop_points'])} points), bits {rules_text(compress['compress_config']['quantize']['bits'])}. "
            "Paper: 28.9x, 92.5% -> 92.4%.",
            "",
        ]
        paired = compress.get("paired")
        if paired and paired["right_to_wrong"] + paired["wrong_to_right"] == 0:
            lines += [
                f"Every one of the {compress['test_videos']} test videos gets the same answer before and after.",
                "",
            ]
        elif paired:
            lines += [
                f"Of {compress['test_videos']} test videos, {paired['right_to_wrong']} went right to wrong and "
                f"{paired['wrong_to_right']} wrong to right (McNemar's exact test p = {paired['mcnemar_p']:.2f}).",
                "",
            ]
        other = compress.get("comparison")
        if other:
            lines += [
                f"The same pruned model at {other['bits']} (the paper's bits): {other['bytes']:,} bytes, "
                f"{first['bytes'] / other['bytes']:.1f}x, {100 * other['accuracy']:.1f}%.",
                "",
            ]
    lenet, beyond = _load("lenet"), _load("lenet_beyond")
    if lenet or beyond:
        from benchmarks.lenet import (  # import torch: only when there is a report
            NETWORKS,
            beyond_goal_met,
            passes,
            rise_on_test,
            weights_only_ratio,
        )
    if lenet:
        lines += ["## Deep Compression's Table 1 on real MNIST (`lenet.md`)", ""]
        for name, row in lenet["rows"].items():
            paper = row["paper"]
            lines.append(
                f"- {name}: **{row['ratio']:.1f}x** files, {weights_only_ratio(row):.1f}x weights only (paper "
                f"{paper['ratio']}x, weights only), test error "
                f"{row['test_error_dense']:.2f}% -> {row['test_error_compressed']:.2f}% (paper "
                f"{paper['error_before']:.2f}% -> {paper['error_after']:.2f}%), {100 * row['weights_kept']:.1f}% of the "
                f"weights kept; largest layer's rate {row['chosen_rate']:g} and bits {row['bits']}, "
                + (
                    "chosen on the validation split"
                    if passes(row["scan"][0])
                    else "the paper's setting (none passed the validation rule)"
                )
            )
        lines.append("")
    if beyond:
        lines += [
            "## Past Deep Compression on real MNIST: deeper pruning, function matching and ECSQ (`lenet_beyond.md`)",
            "",
        ]
        for name, row in beyond["rows"].items():
            lines.append(
                f"- {name}: **{row['ratio']:.1f}x** files, {weights_only_ratio(row):.1f}x weights only, test error "
                f"{row['test_error_dense']:.2f}% -> "
                f"{row['test_error_compressed']:.2f}%, {100 * row['weights_kept']:.2f}% of the weights kept; "
                f"largest layer's rate {row['chosen_rate']:g} and {row['bits']}, "
                + (
                    "chosen on the validation split"
                    if passes(row["scan"][0])
                    else "the scan's first setting (none passed the validation rule)"
                )
                + f"; goal >= {NETWORKS[name]['beyond']['goal']}x within 0.1 points: "
                + ("met" if beyond_goal_met(name, row["ratio"], rise_on_test(row)) else "not met")
            )
        seeds = _load("lenet_seed_check")
        if seeds:
            from benchmarks.lenet_seed_check import runs_of

            for name, checked in seeds["networks"].items():
                runs = runs_of(checked)
                lines.append(
                    f"- {name}, the chosen setting retrained with {len(runs) - 1} other seeds "
                    "(`lenet_seed_check.md`): test rises "
                    + ", ".join(f"{run['test']:+.2f}" for run in runs)
                    + f" points, ratios {min(run['ratio'] for run in runs):.1f}-{max(run['ratio'] for run in runs):.1f}x; "
                    f"{sum(beyond_goal_met(name, run['ratio'], run['test']) for run in runs)} of {len(runs)} meet the goal"
                )
        lines.append("")
    i3d = _load("i3d")
    if i3d:
        lines += ["## I3D on Kinetics-400 clips, compressed after training (`i3d.md`)", ""]
        for row in i3d["rows"]:
            lines.append(
                f"- {row['setting']}: {row['bits_per_parameter']:.3f} bits a parameter ({row['ratio']:.1f}x), "
                f"agreement with the dense model {100 * row['agreement']:.0f}%, KL {row['kl']:.3f}, top-1 on the "
                f"labelled clips {100 * row['top1_labelled']:.0f}%"
            )
        lines.append("")
    codec = _load("codec")
    if codec:
        rows = [[r["name"].strip(), f"{r['bytes']:,}", f"{r['ratio_to_dense_fp32']:.1f}x"] for r in codec["rows"]]
        lines += [
            "## Codec on full-size T-C3D (`codec.md`)",
            "",
            markdown_table(["file", "bytes", "vs dense fp32"], rows),
        ]
        lines += [
            "",
            f"Decoding takes {codec['decode_vs_zstd3']:.2f}x the time of zstd -3 decompressing the fp32 file "
            f"({codec['machine']['cores']} threads; "
            f"{codec.get('decode_one_thread_vs_zstd3', float('nan')):.2f}x in one thread).",
            "",
        ]
        plt = pyplot()
        figure, axes = plt.subplots(figsize=(7, 3.5))
        names = [r["name"].strip().replace("that file, ", "") for r in codec["rows"]]
        axes.barh(names, [r["bytes"] / 1e6 for r in codec["rows"]], color="#4878a8")
        axes.set_xscale("log")
        axes.set_xlabel("MB on disk (log scale)")
        axes.invert_yaxis()
        save_figure(figure, RESULTS / "codec.png")
        lines += ["![codec sizes](codec.png)", ""]
    walks = _load("walks")
    if walks:
        lines += ["## The row walk (container format 5) on real networks (`walks.md`)", ""]
        for row in walks["rows"]:
            columns, best = row["columns"]["file_bytes"], row["best"]["file_bytes"]
            layouts = list(row["best"]["layouts"].values())
            lines.append(
                f"- {row['subject']}: {columns:,} -> {best:,} bytes ({100 * (1 - best / columns):.1f}% saved), "
                f"{layouts.count('rows')} of {len(layouts)} layers walking rows"
            )
        lines.append("")
    kmeans = _load("kmeans")
    if kmeans:
        model = kmeans["model"]
        lines += [
            "## k-means (`kmeans.md`)",
            "",
            f"All layers of a pruned full-size R3D-18: **{model['speedup']:.0f}x** faster than scikit-learn from the "
            f"same initial centroids, SSE {model['sse_ratio']:.3f} of scikit-learn's.",
            *[
                f"- 3 M Laplacian samples, k = {r['k']}, {r['init']}: {r['speedup']:.0f}x, SSE ratio {r['sse_ratio']:.4f}"
                for r in kmeans["laplace"]
            ],
            "",
        ]
    tables = _load("tc3d_tables")
    if tables:
        families = ("all", "appearance", "motion", "composition", "order")
        rows = [
            [name, *(f"{100 * statistics.fmean(row[k]):.1f}" for k in families)] for name, row in tables["rows"].items()
        ]
        lines += [f"## T-C3D Tables I and II on the synthetic set (`tc3d_tables.md`, mean of {tables['seeds']} seeds)", "",
                  markdown_table(["configuration", *families], rows), ""]  # fmt: skip
        fps = tables["table_iv"]
        lines += [
            "Table IV analogue (FPS at batch 1 on this CPU): "
            + "; ".join(
                f"{key} {row['fps']:.0f} FPS, {100 * row['all']:.1f}%" for key, row in fps.items() if ", " in key
            ),
            "",
        ]
    for name in ("spmv_cpu", "spmv_gpu"):
        spmv = _load(name)
        if spmv:
            versus_scipy = [r["scipy_csr_s"] / r["ours_cpu_s"] for r in spmv["rows"]]
            versus_dense = [r["torch_dense_s"] / r["ours_cpu_s"] for r in spmv["rows"] if r["batch"] == 1]
            lines += [
                f"## Sparse kernels (`{name}.md`)",
                "",
                f"CPU, ours (the layout as stored, 3 bytes a nonzero against CSR's 8) vs scipy's prebuilt CSR: "
                f"{min(versus_scipy):.2f}x to {max(versus_scipy):.2f}x; batch 1 vs torch dense: "
                f"{min(versus_dense):.2f}x to {max(versus_dense):.2f}x.",
            ]
            if spmv.get("gpu"):
                gpu = [r["cusparse_csr_s"] / r["ours_gpu_s"] for r in spmv["rows"] if r["batch"] == 1]
                lines.append(f"GPU, batch 1, ours vs cuSPARSE: {min(gpu):.2f}x to {max(gpu):.2f}x.")
            else:
                lines.append("No GPU rows: no GPU was available to the run.")
            lines.append("")
    conv = _load("conv_cpu")
    if conv:
        lines += ["## Sparse convolutions on the CPU (`conv_cpu.md`)", ""]
        for model in dict.fromkeys(r["model"] for r in conv["rows"]):
            speedups = [r["dense_s"] / r["direct_s"] for r in conv["rows"] if r["model"] == model]
            lines.append(
                f"- {model}: the direct kernel {min(speedups):.2f}x to {max(speedups):.2f}x torch's dense "
                f"convolution over its {len(speedups)} geometries at {conv['sparsity']} sparsity"
            )
        lines.append("")
    inference = _load("inference")
    if inference:
        lines += ["## End to end on the CPU, dense against `load_sparse` (`inference.md`, batch 1)", ""]
        lines += [
            f"- {r['model']}: {r['dense']['fps']:.0f} -> {r['sparse']['fps']:.0f} FPS (**{r['speedup']:.2f}x**), "
            f"{len(r['sparse_layers'])} layers sparse, peak {r['dense']['maxrss_mb']:.0f} -> "
            f"{r['sparse']['maxrss_mb']:.0f} MB"
            for r in inference["rows"]
        ]
        lines.append("")
    for path in sorted(RESULTS.glob("spmv_gpu_*.json")):
        if "probe" in path.name:
            continue
        gpu = json.loads(path.read_text())
        ratios = []
        for r in gpu["rows"]:
            if r["batch"] != 1 or r["matrix"].startswith("T-C3D"):
                continue
            best = min(r["ours_csr_gpu_s"], r["ours_relative_gpu_s"])
            peers = [t for t in (r["cusparse_csr_gpu_s"], r["torch_csr_gpu_s"]) if t == t]
            ratios.append((min(peers) / best, r["ours_csr_bandwidth_fraction"]))
        lines += [
            f"## GPU kernels (`{path.stem}.md`, {gpu['machine'].get('gpu', 'a GPU')})",
            "",
            f"Batch-1 SpMV on the Deep Compression matrices: {min(x for x, _ in ratios):.2f}x to "
            f"{max(x for x, _ in ratios):.2f}x cuSPARSE CSR fp32; {min(b for _, b in ratios):.2f} to "
            f"{max(b for _, b in ratios):.2f} of the peak memory bandwidth on the bytes moved.",
            "",
        ]
    hard = _load("tc3d_hard")
    if hard:
        first, last = hard["steps"][0], hard["steps"][-1]
        paired = hard["paired"]
        low, high = (100 * v for v in paired["change_interval_95"])
        lines += [
            "## T-C3D on the hard synthetic set (`tc3d_hard.md`)",
            "",
            f"{first['bytes']:,} -> {last['bytes']:,} bytes: **{hard['ratio']:.1f}x**, test accuracy "
            f"{100 * first['accuracy']:.1f}% -> {100 * last['accuracy']:.1f}% "
            f"({signed_points(hard['accuracy_drop_points'])} points, 95% interval [{low:+.2f}, {high:+.2f}]; "
            f"{paired['right_to_wrong']} videos right to wrong, {paired['wrong_to_right']} wrong to right).",
            "",
        ]
    subjects = (
        ("nncodec", "MNIST CNN"),
        ("nncodec_lenet_300_100", "LeNet-300-100"),
        ("nncodec_lenet_5", "LeNet-5"),
        ("nncodec_i3d", "I3D"),
    )
    for name, subject in subjects:
        nncodec = _load(name)
        if not nncodec:
            continue
        lines += [f"## Side by side with NNCodec (`{name}.md`, {subject}, data-free)", ""]
        for row in nncodec["chosen"].values():
            level = row.get("level") or f"validation within {row['margin']} points"
            fidelity = (
                f"test {row['test']:.2f}%"
                if "test" in row
                else f"agreement {100 * row['agreement']:.0f}%, KL {row['kl']:.3f}"
            )
            lines.append(
                f"- {level}, {row['method']}: {row['bytes']:,} bytes "
                f"({nncodec['dense_bytes'] / row['bytes']:.1f}x), {fidelity}"
            )
        lines.append("")
    budget = _load("budget")
    if budget:
        mnist = budget["mnist_cnn"]
        lines += ["## Size budgets (`budget.md`)", "",
                  f"MNIST CNN, dense test accuracy {mnist['baseline']['test']:.2f}%:"]  # fmt: skip
        for row in mnist["rows"]:
            single, allocated = row["one setting"], row["budget, k-means"]
            lines.append(
                f"- {row['ratio_target']:g}x: one setting for all layers {single['test']:.2f}%, the budget's "
                f"allocation {allocated['test']:.2f}% (ECSQ {row['budget, ECSQ']['test']:.2f}%, with importance "
                f"{row['budget, k-means + importance']['test']:.2f}%)"
            )
        lines.append("")
    fuzz = _load("fuzz")
    if fuzz:
        outcomes = ", ".join(f"{k}: {v:,}" for k, v in sorted(fuzz["outcomes"].items()))
        lines += [
            "## Fuzzing the container reader (`fuzz.md`)",
            "",
            f"{fuzz['cases']:,} mutated containers: {outcomes}; slowest case {1000 * fuzz['slowest_case_seconds']:.1f} ms.",
            "",
        ]
    path = RESULTS / "summary.md"
    text = "\n".join(lines).rstrip() + "\n"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", action="store_true", help="only rebuild summary.md")
    args = parser.parse_args()
    if not args.summary:
        run_all()
    print("wrote", write_summary())


if __name__ == "__main__":
    main()
