"""The demo's report: Table VIII (accuracy and size per step) in Markdown, and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from examples.tc3d.compress import PAPER
from vidcompress.codec import decode
from vidcompress.plots import plot_weight_histogram, pyplot, save_figure
from vidcompress.report import machine_line, markdown_table


def signed_points(drop: float) -> str:
    """An accuracy drop in points as a signed change: 0.5 -> '-0.50', 0 -> '+0.00' (never '-0.00')."""
    return f"{round(-drop, 2) + 0.0:+.2f}"  # + 0.0 turns -0.0 (from rounding -1e-9, say) into 0.0


def write_report(
    summary: dict[str, Any], out: str | Path, *, machine: str = "", wall_seconds: float | None = None
) -> Path:
    """Write report.md and three PNGs into `out`; return the report's path."""
    out = Path(out)
    steps = summary["steps"]
    original = steps[0]
    _plot_accuracy_vs_size(steps, out / "accuracy_vs_size.png")
    _plot_layers(summary, out / "layers.png")
    largest = max(summary["quantization"]["layers"], key=lambda layer: layer["parameters"])
    pruned = decode(out / "3_prune.vcz")[largest["name"]]
    plot_weight_histogram(
        pruned.float().numpy(), largest["codebook"], out / "histogram.png",
        f"{largest['name']}: pruned weights and the {largest['bits']}-bit codebook",
    )  # fmt: skip
    rows = []
    for step in steps:
        paper = PAPER.get(step["step"], {})
        paper_cells = [f"{paper['accuracy']:.1f}", f"{paper['megabytes']:.1f} MB"] if paper else ["not given here"] * 2
        rows.append([
            step["step"], f"{100 * step['accuracy']:.1f}", f"{step['bytes']:,}",
            f"{original['bytes'] / step['bytes']:.1f}x", f"{step['sparsity']:.3f}", f"`{step['file']}`", *paper_cells,
        ])  # fmt: skip
    headers = [
        "step",
        "accuracy (%)",
        "bytes on disk",
        "vs original",
        "sparsity",
        "file",
        "paper accuracy",
        "paper size",
    ]
    train = summary["train_config"]
    compress = summary["compress_config"]
    dsd = compress["dsd"]
    lines = [
        "# T-C3D compressed end to end (the paper's Table VIII)",
        "",
        f"Machine: {machine}." if machine else "",
        f"Wall time of the whole demo: {wall_seconds / 60:.1f} minutes." if wall_seconds else "",
        *_setting_lines(summary),
        "",
        f"Model: T-C3D width {train['width']}, {train['size']} x {train['size']} input, {train['segments']} segments, "
        f"{train['fusion']} fusion, {summary['parameters']:,} parameters; trained {train['epochs']} epochs"
        + (
            f" (the fusion's weights held at their start for the first {train['fusion_warmup']})"
            if train.get("fusion_warmup")
            else ""
        )
        + " on the "
        f"{summary.get('data_description', 'synthetic action set')} ({len(summary['classes'])} classes). Accuracy: "
        f"video-level, test split ({summary.get('test_videos', '?')} videos), {train['segments']} centred clips.",
        _monitor_line(summary),
        f"Steps: sparse to {rules_text(dsd['sparse_sparsity'])} ({_schedule(dsd['schedule'])}, {dsd['sparse_epochs']} "
        f"epochs), dense {_epochs(dsd['dense_epochs'])} at lr x {dsd['dense_lr_factor']:g}, prune to "
        f"{rules_text(dsd['final_sparsity'])} ({dsd['final_epochs']} epochs; those after the targets are reached "
        f"at lr x {dsd['recovery_lr_factor']:g}), quantize {rules_text(compress['quantize']['bits'])} with "
        f"{_epochs(compress['finetune_epochs'])} of centroid fine-tuning, Huffman with index bits "
        f"{rules_text(compress['encode']['index_bits'])}.",
        "",
        markdown_table(headers, rows),
        "",
        f"Result: **{summary['ratio']:.1f}x** smaller ({summary['bits_per_parameter']:.3f} bits per parameter) "
        f"with an accuracy change of **{signed_points(summary['accuracy_drop_points'])} points**. The paper: "
        "127 MB -> 4.4 MB (28.9x), 92.5% -> 92.4% on UCF101.",
        _bits_line(summary),
        _comparison_line(summary),
        *_paired_lines(summary),
        "",
        "Sizes: Original and Dense are fp32 safetensors files; Sparse and Prune are containers holding the "
        "nonzero values as they are with Huffman-coded relative indices; Quantize is a container with every "
        "stream packed (no Huffman); Huffman is the final container, and its accuracy is that of the model "
        "decoded from it.",
        "",
        "![accuracy vs size](accuracy_vs_size.png)",
        "",
        "![per-layer sparsity and bits](layers.png)",
        "",
        "![weight histogram with centroids](histogram.png)",
    ]
    path = out / "report.md"
    path.write_text("\n".join(line for line in lines if line is not None) + "\n")
    return path


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def _setting_lines(summary: dict[str, Any]) -> list[str]:
    """Which demo setting ran and, for the quick one, what the paper setting measured."""
    setting = summary.get("setting")
    if not setting:
        return []
    lines = [f"Setting: **{setting['name']}**, {setting['description']}."]
    reference = summary.get("reference")
    if setting["name"] == "quick":
        measured = (
            f" measured {reference['ratio']:.1f}x at {signed_points(reference['accuracy_drop_points'])} points "
            f"(original {100 * reference['original_accuracy']:.1f}%) in {reference['minutes']:.1f} minutes on "
            f"{machine_line(reference['machine']) if reference.get('machine') else 'the machine its file names'} "
            f"(`{reference['file']}`)"
            if reference
            else ""
        )
        lines.append(
            "It is the paper's pipeline at a size that fits a few minutes: a smaller model and data set, +0.3 "
            "sparsity an epoch instead of +0.1 and one epoch where the paper's setting has several. The paper "
            f"setting (`python -m examples.tc3d demo --paper`){measured}; `--full` runs the paper's full-size "
            "model (for a GPU)."
        )
    return lines


def _monitor_line(summary: dict[str, Any]) -> str | None:
    if summary.get("monitored_split") != "validation":
        return None
    return (
        f"Every epoch log (training, DSD, fine-tuning) is on the validation split ({summary['validation_videos']} "
        "videos, held out of training); each row of the table is the test split, measured once for that step's model."
    )


def _bits_line(summary: dict[str, Any]) -> str | None:
    per = summary.get("weight_bits_per_nonzero")
    if not per:
        return None
    return (
        f"Per stored nonzero the final container spends {per['weights']:.2f} bits on the weight and "
        f"{per['indices']:.2f} on its relative index (fillers included)."
    )


def _comparison_line(summary: dict[str, Any]) -> str | None:
    other = summary.get("comparison")
    if not other:
        return None
    original = summary["steps"][0]
    per = other["weight_bits_per_nonzero"]
    return (
        f"The same pruned model quantized at {other['bits']} instead (same fine-tuning, `{other['file']}`): "
        f"{100 * other['accuracy']:.1f}%, {other['bytes']:,} bytes, {original['bytes'] / other['bytes']:.1f}x "
        f"({other['bits_per_parameter']:.3f} bits per parameter; {per['weights']:.2f} bits per nonzero on "
        f"weights, {per['indices']:.2f} on indices)."
    )


def _paired_lines(summary: dict[str, Any]) -> list[str]:
    """The original and the final model compared video by video, and class by class."""
    paired = summary.get("paired")
    if not paired:
        return []
    rows = [
        [name, entry["videos"], f"{100 * entry['original']:.1f}", f"{100 * entry['compressed']:.1f}"]
        for name, entry in paired["per_class"].items()
    ]
    table = markdown_table(["class", "test videos", "original (%)", "compressed (%)"], rows)
    return ["", _paired_sentence(paired), "", table]


def _paired_sentence(paired: dict[str, Any]) -> str:
    lost, gained = paired["right_to_wrong"], paired["wrong_to_right"]
    if all(entry["original"] == 1.0 for entry in paired["per_class"].values()):
        ceiling = " The original classifies every test video right, so this test can show a loss but not a gain."
    else:
        ceiling = ""
    if lost + gained == 0:
        return (
            "Video by video: every test video gets the same answer from the original and the compressed model."
            + ceiling
        )
    interval = ""
    if "change_interval_95" in paired:  # records written before the interval existed lack it
        low, high = (100 * v for v in paired["change_interval_95"])
        interval = (
            f" The accuracy change is {signed_points(-100 * paired['change'])} points, 95% interval "
            f"[{low:+.2f}, {high:+.2f}] (exact, conditional on the {lost + gained} videos that changed)."
        )
    return (
        f"Video by video: {lost} test videos the original classified right are wrong after compression and "
        f"{gained} the other way round (McNemar's exact test: p = {paired['mcnemar_p']:.2f}; a small p would say "
        "the changes lean one way more than chance)." + interval + ceiling
    )


def _plot_accuracy_vs_size(steps: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4))
    sizes = [s["bytes"] / 1e6 for s in steps]
    accuracy = [100 * s["accuracy"] for s in steps]
    axes.plot(sizes, accuracy, "-o", color="#4878a8")
    for step, x, y in zip(steps, sizes, accuracy, strict=True):
        axes.annotate(step["step"], (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("size on disk (MB, log scale)")
    axes.set_ylabel("video accuracy (%)")
    axes.set_title("Accuracy and size after each step")
    axes.grid(alpha=0.3)
    save_figure(figure, path)


def _plot_layers(summary: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    layers = summary["container"]["layers"]
    names = [layer["name"].replace("backbone.", "").replace(".weight", "") for layer in layers]
    sparsity = [1 - layer["nonzeros"] / layer["parameters"] for layer in layers]
    figure, axes = plt.subplots(figsize=(9, 4))
    bars = axes.bar(range(len(names)), sparsity, color="#6a9f58")
    for bar, layer in zip(bars, layers, strict=True):
        axes.annotate(f"{layer['bits']}b", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=6)  # fmt: skip
    axes.set_xticks(range(len(names)), names, rotation=75, fontsize=6)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("sparsity")
    axes.set_title("Per-layer sparsity (bars) and codebook bits (labels)")
    save_figure(figure, path)


def rules_text(rules: dict[str, Any]) -> str:
    """A rules field of a config's dict form, as its rule string (`conv=0.9,fc=0.95`)."""
    return ",".join(f"{pattern}={value}" for pattern, value in rules.items())


def _schedule(schedule: dict[str, Any]) -> str:
    if schedule.get("type") == "step":
        return f"+{schedule['increment']:g} per epoch"
    return ", ".join(f"{key} {value}" for key, value in schedule.items())
