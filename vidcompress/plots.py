"""Plot helpers; matplotlib is optional (`pip install vidcompress[plots]`) and imported lazily."""

from __future__ import annotations

from typing import Any

from vidcompress.errors import ConfigError


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a clear error if it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'vidcompress[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_weight_histogram(weight: Any, codebook: Any, path: Any, title: str = "", bins: int = 200) -> None:
    """Histogram of a layer's nonzero weights with its centroids marked, written as a PNG."""
    import numpy as np

    plt = pyplot()
    values = np.asarray(weight, dtype=np.float64).ravel()
    values = values[values != 0]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.hist(values, bins=bins, color="#4878a8", alpha=0.8, label="nonzero weights")
    centroids = np.unique(np.asarray(codebook, dtype=np.float64)[1:])
    for i, centroid in enumerate(centroids):
        axes.axvline(centroid, color="#d1495b", lw=0.6, alpha=0.7, label="centroids" if i == 0 else None)
    axes.set_xlabel("weight value")
    axes.set_ylabel("count")
    axes.set_title(title or f"{values.size:,} nonzero weights, {centroids.size} centroids")
    axes.legend(fontsize=8)
    save_figure(figure, path)


def save_figure(figure: Any, path: Any, dpi: int = 120, format: str | None = None) -> None:
    """Lay a figure out, write it atomically (`format`, else by the suffix, PNG if none) and free it:
    every plot of the package ends here."""
    from pathlib import Path

    from vidcompress.io import write_atomic

    path = Path(path)
    figure.tight_layout()
    try:
        kind = format or path.suffix[1:] or "png"
        write_atomic(path, lambda temporary: figure.savefig(temporary, dpi=dpi, format=kind))
    finally:
        pyplot().close(figure)
