"""vidcompress: Deep Compression (pruning, DSD, weight sharing, Huffman coding) for PyTorch models.

Importing vidcompress never imports CuPy or touches CUDA; the GPU kernels load on first use.
"""

from vidcompress._version import __version__
from vidcompress.errors import ConfigError, FormatError, InputError, VidcompressError
from vidcompress.io import load_state_dict, save_state_dict
from vidcompress.layers import LayerInfo, LayerKind, module_layers, state_dict_layers
from vidcompress.prune import (
    AGPSchedule,
    ConstantSchedule,
    DSDConfig,
    PruneConfig,
    Pruner,
    StepSchedule,
    prune_,
    prune_state_dict,
    run_dsd,
    sensitivity_analysis,
)
from vidcompress.quantize import KMeans1D, QuantizeConfig, finalize_, quantize_, quantize_state_dict
from vidcompress.report import inspect_state_dict
from vidcompress.rules import BITS, INDEX_BITS, SPARSITY, LayerRules

__all__ = [
    "BITS",
    "INDEX_BITS",
    "SPARSITY",
    "AGPSchedule",
    "ConfigError",
    "ConstantSchedule",
    "DSDConfig",
    "FormatError",
    "InputError",
    "KMeans1D",
    "LayerInfo",
    "LayerKind",
    "LayerRules",
    "PruneConfig",
    "Pruner",
    "QuantizeConfig",
    "StepSchedule",
    "VidcompressError",
    "__version__",
    "finalize_",
    "inspect_state_dict",
    "load_state_dict",
    "module_layers",
    "prune_",
    "prune_state_dict",
    "quantize_",
    "quantize_state_dict",
    "run_dsd",
    "save_state_dict",
    "sensitivity_analysis",
    "state_dict_layers",
]
