"""Side by side with NNCodec, the reference implementation of the MPEG neural-network coding standard
(ISO/IEC 15938-17), on the trained MNIST CNN (`ccexam`, 99.05%): file bytes at matched accuracy,
encode and decode time.

Both sides data-free (no retraining, no calibration data): NNCodec 2.1.3's lossy mode (uniform
quantization with dependent quantization, DeepCABAC) over a sweep of its quantization parameter QP,
against `compress_to_budget` (per-layer pruning and quantization chosen for the budget, relative-index
Huffman) over a sweep of target ratios, with k-means and with ECSQ levels. Matched fidelity is chosen
on the validation split: for each method, the smallest file whose validation accuracy is within
MARGINS points of the dense model's; the test split is measured once, on those files.

NNCodec runs in its own virtual environment, never the project's: it pins numpy < 2 and asks for
torchvision, whose PyPI build is a CUDA one that would replace the CPU torch. The environment is built
once under the fixture cache (about 4 minutes: torch's CPU wheel, NNCodec's sdist checked against its
sha256, its C++ extension compiled); torchvision, which NNCodec imports but this comparison never uses,
is a stand-in that raises on use (`benchmarks/nncodec_env/torchvision`). Tensors cross between the two
environments as .safetensors files, never pickles.

    python -m benchmarks.nncodec [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import machine, machine_line, write_results
from benchmarks.mnist_cnn import MNISTNet
from examples.real import cache_dir, load_ccexam_state_dict, load_mnist
from vidcompress import load_compressed
from vidcompress.budget import BudgetConfig, Target, compress_to_budget
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.report import markdown_table

NNCODEC = {
    "name": "nncodec",
    "version": "2.1.3",
    "sha256": "7c95877d2367ef7538aaa150bf01f0cbdb1c6ed2a4db38bb55481881b7c9fd92",
}
# What NNCodec's import needs, held to numpy 1 (its pin) and a CPU torch installed first.
ENVIRONMENT = [
    "numpy<2",
    "pybind11",
    "setuptools",
    "wheel",
    "pandas<2.3",
    "scikit-learn<1.6",
    "h5py<3.12",
    "tqdm",
    "click",
    "opencv-python-headless<4.11",
    "safetensors",
]
HERE = Path(__file__).resolve().parent / "nncodec_env"
QPS = tuple(range(-28, 1, 2))  # NNC: the step size doubles every 4 QP (qp_density 2)
RATIOS = (8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 35.0, 40.0, 50.0, 60.0, 70.0)
ECSQ_LAMBDA = 0.02
MARGINS = (0.1, 0.5)  # points of validation accuracy below the dense model's


def _pip(python: Path, *arguments: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"nncodec environment: pip install {' '.join(arguments)} failed: {tail[0]}")


def environment() -> Path:
    """The Python of NNCodec's own environment, built once under the fixture cache."""
    root = cache_dir() / f"nncodec-{NNCODEC['version']}-venv"
    python = root / "bin" / "python"
    if (root / "ready").exists():
        return python
    print(f"building NNCodec's environment in {root} (once, a few minutes)", flush=True)
    venv.create(root, with_pip=True, clear=True)
    _pip(python, f"torch=={torch.__version__.split('+')[0]}")  # the CPU build, before anything can pull another
    _pip(python, *ENVIRONMENT)
    with tempfile.TemporaryDirectory() as folder:
        spec = f"{NNCODEC['name']}=={NNCODEC['version']}"
        download = subprocess.run(
            [str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", spec, "-d", folder],
            capture_output=True, text=True,
        )  # fmt: skip
        files = list(Path(folder).iterdir())
        if download.returncode != 0 or len(files) != 1:
            raise SystemExit(f"nncodec environment: could not download {spec} (is the package registry reachable?)")
        digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
        if digest != NNCODEC["sha256"]:
            raise SystemExit(f"nncodec environment: {files[0].name} has sha256 {digest}, expected {NNCODEC['sha256']}")
        _pip(python, "--no-deps", "--no-build-isolation", str(files[0]))
    (root / "ready").write_text(json.dumps(NNCODEC))
    return python


def run_nncodec(python: Path, dense: Path, folder: Path, qps: tuple[int, ...]) -> list[dict[str, Any]]:
    """NNCodec over the QPs, in its environment; a row (bytes, times, decoded file) per QP."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    result = subprocess.run(
        [str(python), str(HERE / "run_nncodec.py"), str(dense), str(folder), *map(str, qps)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"NNCodec failed: {result.stderr.strip().splitlines()[-1]}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        row["decoded"] = str(folder / f"qp{row['qp']}.safetensors")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three points a method (not a result)")
    args = parser.parse_args()
    info = machine()
    qps, ratios = (QPS[::3], RATIOS[::3]) if args.quick else (QPS, RATIOS)
    python = environment()
    data = load_mnist()

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = data[name]
        return (torch.from_numpy(images).view(-1, 1, 28, 28) - 0.1307) / 0.3081, torch.from_numpy(labels)

    splits = {"validation": split("validation"), "test": split("test")}

    def accuracy(model: nn.Module, name: str) -> float:
        images, labels = splits[name]
        with torch.no_grad():
            return 100.0 * float((model.eval()(images).argmax(1) == labels).float().mean())

    dense = MNISTNet()
    dense.load_state_dict(load_ccexam_state_dict())
    tensors = {name: t.detach().contiguous() for name, t in dense.state_dict().items()}
    dense_bytes = sum(t.numel() * 4 for t in tensors.values())
    baseline = {"validation": accuracy(dense, "validation"), "test": accuracy(dense, "test")}
    methods: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        dense_path = folder / "dense.safetensors"
        save_state_dict(tensors, dense_path)
        models: dict[tuple[str, int], nn.Module] = {}
        label = f"NNCodec {NNCODEC['version']} (uniform + DQ, DeepCABAC)"
        rows = run_nncodec(python, dense_path, folder, qps)
        for index, row in enumerate(rows):
            model = MNISTNet()
            model.load_state_dict(load_state_dict(row["decoded"])[0])
            models[label, index] = model
            row.update(setting=f"QP {row['qp']}", validation=accuracy(model, "validation"))
        methods[label] = rows
        for label, config in (
            ("ours: budget, k-means", BudgetConfig()),
            (f"ours: budget, ECSQ (lambda {ECSQ_LAMBDA})", BudgetConfig(method="ecsq", lagrangian=ECSQ_LAMBDA)),
        ):
            rows = []
            for index, ratio in enumerate(ratios):
                path = folder / f"ours-{len(methods)}-{ratio:g}.vcz"
                start = time.perf_counter()
                compress_to_budget(tensors, path, Target("ratio", ratio), config)
                encoded = time.perf_counter()
                model = load_compressed(path, MNISTNet())
                decoded = time.perf_counter()
                models[label, index] = model
                rows.append({
                    "setting": f"ratio {ratio:g}", "bytes": path.stat().st_size, "encode_s": encoded - start,
                    "decode_s": decoded - encoded, "validation": accuracy(model, "validation"),
                })  # fmt: skip
            methods[label] = rows
        for label, rows in methods.items():
            print(label, [(r["setting"], r["bytes"], round(r["validation"], 2)) for r in rows], flush=True)
        chosen: dict[str, dict[str, Any]] = {}
        for margin in MARGINS:
            for label, rows in methods.items():
                passing = [i for i, r in enumerate(rows) if r["validation"] >= baseline["validation"] - margin - 1e-9]
                if not passing:
                    continue
                index = min(passing, key=lambda i: rows[i]["bytes"])
                best = models[label, index]
                chosen[f"{margin}|{label}"] = {
                    **rows[index],
                    "test": accuracy(best, "test"),
                    "margin": margin,
                    "method": label,
                }
    result = {
        "machine": info, "dense_bytes": dense_bytes, "baseline": baseline, "nncodec": NNCODEC,
        "methods": methods, "chosen": chosen, "margins": MARGINS,
    }  # fmt: skip
    command = "python -m benchmarks.nncodec" + (" --quick" if args.quick else "")
    lines = [
        "# Side by side with NNCodec (MPEG NNC reference), data-free, on the trained MNIST CNN",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        f"The `ccexam` MNIST CNN: {dense_bytes:,} bytes of fp32 parameters, validation {baseline['validation']:.2f}%, "
        f"test {baseline['test']:.2f}%. Neither side retrains or sees data. NNCodec {NNCODEC['version']} in its own "
        "environment: `nncodec.nn.encode` on the parameter dictionary (uniform quantization, dependent quantization, "
        "DeepCABAC; its defaults), swept over QP. Ours: `compress_to_budget` swept over target ratios (per-layer "
        "sparsity and bits for the budget, relative-index Huffman container). Bytes: the whole file (NNCodec's "
        "bitstream; our container), everything needed to rebuild every parameter. Times on this machine, one "
        "process each; our encode time includes planning the budget.",
        "",
        "## At matched accuracy (chosen on validation, test measured once)",
        "",
        markdown_table(
            [
                "allowed loss (validation)",
                "method",
                "setting",
                "bytes",
                "ratio",
                "validation (%)",
                "test (%)",
                "encode (s)",
                "decode (s)",
            ],
            [
                [
                    f"{row['margin']} points",
                    row["method"],
                    row["setting"],
                    f"{row['bytes']:,}",
                    f"{dense_bytes / row['bytes']:.1f}x",
                    f"{row['validation']:.2f}",
                    f"{row['test']:.2f}",
                    f"{row['encode_s']:.2f}",
                    f"{row['decode_s']:.3f}",
                ]
                for row in chosen.values()
            ],
        ),
        "",
        "## Every point (validation accuracy)",
        "",
    ]
    for label, rows in methods.items():
        lines += [
            f"{label}:",
            "",
            markdown_table(
                ["setting", "bytes", "ratio", "validation (%)", "encode (s)", "decode (s)"],
                [
                    [
                        r["setting"],
                        f"{r['bytes']:,}",
                        f"{dense_bytes / r['bytes']:.1f}x",
                        f"{r['validation']:.2f}",
                        f"{r['encode_s']:.2f}",
                        f"{r['decode_s']:.3f}",
                    ]
                    for r in rows
                ],
            ),
            "",
        ]
    write_results("nncodec_quick" if args.quick else "nncodec", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
