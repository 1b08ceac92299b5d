"""Per-layer weight sharing (k-means, uniform or ECSQ levels) with centroid fine-tuning."""

from vidcompress.quantize.api import (
    DEFAULT_BITS,
    PAPER_BITS,
    LayerQuantization,
    QuantizeConfig,
    QuantizeReport,
    finalize_,
    quantize_,
    quantize_state_dict,
)
from vidcompress.quantize.importance import estimate_importance
from vidcompress.quantize.kmeans import INITS, KMeans1D, initial_centroids
from vidcompress.quantize.scalar import METHODS, Levels, fit_levels
from vidcompress.quantize.sharing import SharedWeights, WeightSharing, share_weights

__all__ = [
    "DEFAULT_BITS",
    "INITS",
    "METHODS",
    "PAPER_BITS",
    "KMeans1D",
    "LayerQuantization",
    "Levels",
    "QuantizeConfig",
    "QuantizeReport",
    "SharedWeights",
    "WeightSharing",
    "estimate_importance",
    "finalize_",
    "fit_levels",
    "initial_centroids",
    "quantize_",
    "quantize_state_dict",
    "share_weights",
]
