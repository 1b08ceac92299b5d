"""The I3D part of `benchmarks.budget`: budgets at the size of a row of `i3d.md`.

The target is the file size of i3d.md's 'dense weights, 4 bits' row, read from i3d.json (so it follows
the container format that run used), so each budget row sits beside a one-setting row of the same size
(one target: each row takes minutes on 2 cores). Agreement and KL with the dense model on the same 20
views (centre and start crops of the 10 clips). ECSQ's lambda is fixed at 0.02 (no validation split
here). `importance=True` adds a row with importance from 5 end crops (views the evaluation never sees),
the dense model's top-1 as the label: five backward passes through I3D, so it is off by default on a
CPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS
from examples.i3d.clips import CROPS, load_clips
from examples.i3d.convert import pretrained_i3d
from examples.i3d.evaluate import compare, make_views, predict
from vidcompress import load_compressed
from vidcompress.budget import BudgetConfig, Candidate, compress_to_budget
from vidcompress.quantize import estimate_importance
from vidcompress.report import markdown_table

TARGET_ROW = "dense weights, 4 bits"  # the i3d.md row whose file size is the budget
SMALLER_FRACTION = 0.85  # `--i3d-smaller`: how far below that file the allocation keeps its agreement
CALIBRATION_VIEWS = 5


def one_setting_rows() -> dict[str, dict[str, Any]]:
    """i3d.md's rows by setting (from i3d.json), whose sizes the budgets take."""
    path = RESULTS / "i3d.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python -m benchmarks.i3d` first (the budget takes its sizes)")
    return {row["setting"]: row for row in json.loads(path.read_text())["rows"]}


def budget_targets() -> tuple[tuple[str, int, float | None], ...]:
    """(label, bytes, the one-setting row's agreement): the size of i3d.md's 4-bit file."""
    row = one_setting_rows()[TARGET_ROW]
    return ((TARGET_ROW, int(row["bytes"]), float(row["agreement"])),)


def smaller_targets() -> tuple[tuple[str, int, float | None], ...]:
    """A target with no one-setting row of its size: how far below the 4-bit file the budget's allocation
    keeps that row's agreement (`--i3d-smaller`, k-means only)."""
    size = int(one_setting_rows()[TARGET_ROW]["bytes"])
    return ((f"{100 * (1 - SMALLER_FRACTION):.0f}% under the 4-bit file", round(SMALLER_FRACTION * size), None),)


def i3d_budget(
    folder: Path,
    importance: bool = False,
    targets: tuple[tuple[str, int, float | None], ...] | None = None,
    kmeans_only: bool = False,
) -> dict[str, Any]:
    targets = targets if targets is not None else budget_targets()
    clips = load_clips()
    views, inputs = make_views(clips, CROPS[:2])
    dense_model = pretrained_i3d()
    dense = predict(dense_model, inputs)
    tensors = {name: t.detach() for name, t in dense_model.state_dict().items()}
    dense_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    methods: dict[str, tuple[BudgetConfig, dict[str, torch.Tensor] | None]] = {
        "budget, k-means": (BudgetConfig(), None),
        "budget, ECSQ (lambda 0.02)": (BudgetConfig(method="ecsq", lagrangian=0.02), None),
    }
    if kmeans_only:
        del methods["budget, ECSQ (lambda 0.02)"]
    importance_seconds = None
    if importance:
        _, calibration_inputs = make_views(clips[:CALIBRATION_VIEWS], ("end",))
        with torch.no_grad():
            pseudo = [int(dense_model.eval()(x[None]).argmax(1)) for x in calibration_inputs]
        began = time.perf_counter()
        weights = estimate_importance(
            dense_model, list(zip(calibration_inputs, pseudo, strict=True)),
            lambda model, batch: F.cross_entropy(model(batch[0][None]), torch.tensor([batch[1]])),
        )  # fmt: skip
        importance_seconds = time.perf_counter() - began
        methods["budget, k-means + importance"] = (BudgetConfig(), weights)
    caches: dict[str, dict[str, list[Candidate]]] = {name: {} for name in methods}
    rows = []
    for label, size, agreement in targets:
        for method, (config, layer_importance) in methods.items():
            began = time.perf_counter()
            path = folder / "i3d_budget.vcz"
            allocation, _ = compress_to_budget(
                tensors, path, size, config, importance=layer_importance, cache=caches[method]
            )
            decoded = load_compressed(path, pretrained_i3d())
            row = {
                "target": label, "target_bytes": size, "one_setting_agreement": agreement, "method": method,
                "bytes": path.stat().st_size, "ratio": dense_bytes / path.stat().st_size,
                **compare(dense, predict(decoded, inputs), views), "seconds": time.perf_counter() - began,
                "allocation": allocation.to_dict(),
            }  # fmt: skip
            rows.append(row)
            print({k: v for k, v in row.items() if k != "allocation"}, flush=True)
    return {"dense_bytes": dense_bytes, "importance_seconds": importance_seconds, "rows": rows}


def i3d_table(result: dict[str, Any]) -> str:
    """The budget rows beside i3d.md's rows of the same size (their agreement and KL from i3d.json)."""
    one_setting = one_setting_rows()
    cells = []
    labels = {r["target_bytes"]: (r["target"], r["one_setting_agreement"]) for r in result["rows"]}
    for size, (label, agreement) in labels.items():
        row = one_setting.get(label) if agreement is not None else None
        kl = f"{row['kl']:.3f} ({row['kl_max']:.2f})" if row else "-"
        top1 = f"{100 * row['top1_labelled']:.0f}%" if row else "-"
        if agreement is not None:
            cells.append([f"{size:,} B", f"one setting: {label} (i3d.md)", f"{size:,}",
                          f"{result['dense_bytes'] / size:.1f}x", f"{100 * agreement:.0f}%", kl, top1])  # fmt: skip
        for row in (r for r in result["rows"] if r["target_bytes"] == size):
            cells.append([f"{size:,} B", row["method"], f"{row['bytes']:,}", f"{row['ratio']:.1f}x",
                          f"{100 * row['agreement']:.0f}%", f"{row['kl']:.3f} ({row['kl_max']:.2f})",
                          f"{100 * row['top1_labelled']:.0f}%"])  # fmt: skip
    table = markdown_table(
        ["target", "method", "bytes", "ratio", "agreement", "KL mean (max)", "top-1 labelled"], cells
    )
    return (
        "20 views (centre and start crops of the 10 clips); agreement and KL against the dense model, top-1 on\n"
        "the 8 views of the 4 labelled clips. No retraining.\n\n" + table
    )
