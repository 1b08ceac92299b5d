"""vidcompress: Deep Compression (pruning, DSD, weight sharing, Huffman coding) for PyTorch models.

`import vidcompress` is light: every name below is loaded from its module on first use, so the command
line starts without importing torch, and nothing imports CuPy or touches CUDA until the GPU kernels
are asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vidcompress._version import __version__

_EXPORTS = {
    "vidcompress.errors": ("ConfigError", "FormatError", "InputError", "VidcompressError"),
    "vidcompress.io": ("load_state_dict", "save_state_dict"),
    "vidcompress.layers": ("LayerInfo", "LayerKind", "module_layers", "state_dict_layers"),
    "vidcompress.attach": ("plain_state_dict",),
    "vidcompress.fold": ("fold_bn_",),
    "vidcompress.calibrate": ("CalibrateConfig", "CalibrateReport", "calibrate_", "distill_", "recalibrate_bn_"),
    "vidcompress.prune": (
        "AGPSchedule",
        "ConstantSchedule",
        "DSDConfig",
        "PruneConfig",
        "Pruner",
        "StepSchedule",
        "layer_sparsity",
        "overall_sparsity",
        "prune_",
        "prune_state_dict",
        "run_dsd",
        "sensitivity_analysis",
    ),
    "vidcompress.prune.pruner": ("DEFAULT_SPARSITY", "PAPER_SPARSITY"),
    "vidcompress.quantize": (
        "KMeans1D",
        "QuantizeConfig",
        "estimate_importance",
        "finalize_",
        "quantize_",
        "quantize_state_dict",
    ),
    "vidcompress.quantize.api": ("DEFAULT_BITS", "PAPER_BITS"),
    "vidcompress.codec": ("decode", "encode", "load_compressed"),
    "vidcompress.kernels": ("load_sparse",),
    "vidcompress.report": ("inspect_state_dict",),
    "vidcompress.rules": ("BITS", "INDEX_BITS", "SPARSITY", "LayerRules"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_MODULE_OF)]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` loads on demand
    from vidcompress.attach import plain_state_dict
    from vidcompress.calibrate import CalibrateConfig, CalibrateReport, calibrate_, distill_, recalibrate_bn_
    from vidcompress.codec import decode, encode, load_compressed
    from vidcompress.errors import ConfigError, FormatError, InputError, VidcompressError
    from vidcompress.fold import fold_bn_
    from vidcompress.io import load_state_dict, save_state_dict
    from vidcompress.kernels import load_sparse
    from vidcompress.layers import LayerInfo, LayerKind, module_layers, state_dict_layers
    from vidcompress.prune import (
        AGPSchedule,
        ConstantSchedule,
        DSDConfig,
        PruneConfig,
        Pruner,
        StepSchedule,
        layer_sparsity,
        overall_sparsity,
        prune_,
        prune_state_dict,
        run_dsd,
        sensitivity_analysis,
    )
    from vidcompress.prune.pruner import DEFAULT_SPARSITY, PAPER_SPARSITY
    from vidcompress.quantize import (
        KMeans1D,
        QuantizeConfig,
        estimate_importance,
        finalize_,
        quantize_,
        quantize_state_dict,
    )
    from vidcompress.quantize.api import DEFAULT_BITS, PAPER_BITS
    from vidcompress.report import inspect_state_dict
    from vidcompress.rules import BITS, INDEX_BITS, SPARSITY, LayerRules


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'vidcompress' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
