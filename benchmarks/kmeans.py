"""k-means: vidcompress's exact 1-D Lloyd against scikit-learn's KMeans, same init, same run.

(a) every compressible layer of a full-size R3D-18 (T-C3D's backbone, 101 classes, Kaiming-initialised
    weights: no trained full-size weights can be downloaded here), pruned to 0.9 conv / 0.95 fc, at
    8 bits conv / 5 bits fc (255 / 31 centroids over the nonzeros, the paper's settings);
(b) 3 M Laplacian samples at k = 32 and k = 256.
Both sides start from the same centroids with n_init=1 and a cap of 300 iterations; scikit-learn uses
its default tolerance, ours runs to a fixed point of the assignment. Times are of the fits; computing
the initial centroids is timed on its own (`ours_init_seconds`).

    python -m benchmarks.kmeans [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.cluster import KMeans

from benchmarks.common import machine, machine_line, timed, write_results
from examples.tc3d import r3d18
from vidcompress import prune_
from vidcompress.layers import module_layers
from vidcompress.quantize import KMeans1D, initial_centroids
from vidcompress.report import markdown_table


def compare(values: np.ndarray, k: int, init: str) -> dict:
    k = min(k, int(np.unique(values).size))  # a tiny layer has fewer values than levels
    init_time, start = timed(lambda: initial_centroids(values, k, init, seed=0))
    # Both fits start from the same centroids; our initialisation time is reported on its own.
    # "ours" stops by scikit-learn's rule (tol=1e-4 of the variance); "fixed point" runs to convergence.
    ours_time, ours = timed(lambda: KMeans1D(k, init=start, max_iter=300, tol=1e-4).fit(values))
    fixed_time, fixed = timed(lambda: KMeans1D(k, init=start, max_iter=300).fit(values))
    column = values.reshape(-1, 1)
    sk_time, sk = timed(lambda: KMeans(k, init=start.reshape(-1, 1), n_init=1, max_iter=300).fit(column))
    return {
        "n": int(values.size),
        "k": k,
        "init": init,
        "ours_seconds": ours_time,
        "ours_init_seconds": init_time,
        "fixed_point_seconds": fixed_time,
        "fixed_point_sse": fixed.inertia_,
        "fixed_point_iterations": fixed.n_iter_,
        "sklearn_seconds": sk_time,
        "speedup": sk_time / ours_time,
        "ours_sse": ours.inertia_,
        "sklearn_sse": float(sk.inertia_),
        "sse_ratio": ours.inertia_ / float(sk.inertia_) if sk.inertia_ else 1.0,
        "ours_iterations": ours.n_iter_,
        "sklearn_iterations": int(sk.n_iter_),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    args = parser.parse_args()
    torch.manual_seed(0)
    info = machine()

    model = r3d18(width=32 if args.quick else 64)
    prune_(model, "conv=0.9,fc=0.95")
    state = model.state_dict()
    layers = []
    for layer in module_layers(model):
        weight = state[layer.name].numpy().ravel()
        nonzero = weight[weight != 0].astype(np.float64)
        k = 255 if layer.kind == "conv" else 31
        row = compare(nonzero, k, "linear")
        row["layer"] = layer.name
        layers.append(row)
        print(f"{layer.name}: n={row['n']} ours {row['ours_seconds']:.3f}s sklearn {row['sklearn_seconds']:.2f}s")
    model_total = {
        "ours_seconds": sum(r["ours_seconds"] for r in layers),
        "sklearn_seconds": sum(r["sklearn_seconds"] for r in layers),
        "ours_sse": sum(r["ours_sse"] for r in layers),
        "sklearn_sse": sum(r["sklearn_sse"] for r in layers),
        "layers_with_higher_sse": sum(r["ours_sse"] > r["sklearn_sse"] * (1 + 1e-9) for r in layers),
    }
    model_total["speedup"] = model_total["sklearn_seconds"] / model_total["ours_seconds"]
    model_total["sse_ratio"] = model_total["ours_sse"] / model_total["sklearn_sse"]

    samples = np.random.default_rng(0).laplace(scale=0.02, size=300_000 if args.quick else 3_000_000)
    synthetic = []
    for k in (32, 256):
        for init in ("linear", "k-means++"):
            row = compare(samples, k, init)
            synthetic.append(row)
            print(f"laplace k={k} {init}: speedup {row['speedup']:.1f}x, SSE ratio {row['sse_ratio']:.4f}")

    data = {
        "machine": info,
        "quick": args.quick,
        "model": model_total,
        "layers": layers,
        "laplace": synthetic,
    }
    model_total["fixed_point_seconds"] = sum(r["fixed_point_seconds"] for r in layers)
    model_total["fixed_point_sse_ratio"] = sum(r["fixed_point_sse"] for r in layers) / model_total["sklearn_sse"]
    command = "python -m benchmarks.kmeans" + (" --quick" if args.quick else "")
    width = "half" if args.quick else "full"
    lines = [
        "# k-means: vidcompress KMeans1D vs scikit-learn KMeans",
        "",
        f"Machine: {machine_line(info)}. Command: `{command}`.",
        "",
        "Both start from the same centroids, n_init=1, at most 300 iterations; times are of the fit (our",
        "initialisation is timed apart, `init (s)`). *ours* stops by scikit-learn's own rule (squared centroid",
        "shift <= 1e-4 x variance), so both follow the same Lloyd path; *fixed point* is our default, run until",
        "no assignment changes. SSE ratios below 1 mean ours is better.",
        "",
        f"## (a) R3D-18 ({width} width), pruned 0.9 conv / 0.95 fc, 8 / 5 bits, linear init",
        "",
        markdown_table(
            [
                "layer",
                "nonzeros",
                "k",
                "ours (s)",
                "scikit-learn (s)",
                "speedup",
                "SSE ours / sklearn",
                "fixed point (s)",
                "SSE fixed point / sklearn",
            ],
            [
                [
                    r["layer"],
                    f"{r['n']:,}",
                    r["k"],
                    f"{r['ours_seconds']:.4f}",
                    f"{r['sklearn_seconds']:.3f}",
                    f"{r['speedup']:.0f}x",
                    f"{r['sse_ratio']:.4f}",
                    f"{r['fixed_point_seconds']:.4f}",
                    f"{r['fixed_point_sse'] / r['sklearn_sse']:.4f}",
                ]
                for r in layers
            ]
            + [
                [
                    "**all layers**",
                    "",
                    "",
                    f"{model_total['ours_seconds']:.3f}",
                    f"{model_total['sklearn_seconds']:.2f}",
                    f"**{model_total['speedup']:.0f}x**",
                    f"{model_total['sse_ratio']:.4f}",
                    f"{model_total['fixed_point_seconds']:.3f}",
                    f"{model_total['fixed_point_sse_ratio']:.4f}",
                ]
            ],
        ),
    ]
    lines += [
        "",
        "Layers where our SSE (scikit-learn's stopping rule) is above scikit-learn's: "
        f"{model_total['layers_with_higher_sse']}.",
        "",
        f"## (b) {samples.size:,} Laplacian samples",
        "",
        markdown_table(
            [
                "k",
                "init",
                "init (s)",
                "ours (s)",
                "scikit-learn (s)",
                "speedup",
                "SSE ours / sklearn",
                "iterations ours / sklearn",
                "fixed point (s)",
                "SSE fixed point / sklearn",
            ],
            [
                [
                    r["k"],
                    r["init"],
                    f"{r['ours_init_seconds']:.3f}",
                    f"{r['ours_seconds']:.3f}",
                    f"{r['sklearn_seconds']:.2f}",
                    f"{r['speedup']:.0f}x",
                    f"{r['sse_ratio']:.4f}",
                    f"{r['ours_iterations']} / {r['sklearn_iterations']}",
                    f"{r['fixed_point_seconds']:.3f}",
                    f"{r['fixed_point_sse'] / r['sklearn_sse']:.4f}",
                ]
                for r in synthetic
            ],
        ),
    ]
    name = "kmeans_quick" if args.quick else "kmeans"
    paths = write_results(name, data, "\n".join(lines))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
