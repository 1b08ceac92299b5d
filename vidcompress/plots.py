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
