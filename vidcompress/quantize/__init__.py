"""Per-layer k-means weight sharing with centroid fine-tuning."""

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
from vidcompress.quantize.kmeans import INITS, KMeans1D, initial_centroids
from vidcompress.quantize.sharing import SharedWeights, WeightSharing, share_weights

__all__ = [
    "DEFAULT_BITS",
    "INITS",
    "PAPER_BITS",
    "KMeans1D",
    "LayerQuantization",
    "QuantizeConfig",
    "QuantizeReport",
    "SharedWeights",
    "WeightSharing",
    "finalize_",
    "initial_centroids",
    "quantize_",
    "quantize_state_dict",
    "share_weights",
]
