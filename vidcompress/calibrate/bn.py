"""BatchNorm re-estimation: after compression a layer's outputs have shifted in mean and variance, and
the running statistics the model was trained with no longer normalise them. Running the calibration
inputs through the compressed model with the BatchNorm layers collecting fresh statistics (a cumulative
average over all batches, Li et al.'s AdaBN / the "BN recalibration" of post-training quantization)
puts them right without labels or gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidcompress.calibrate.stats import Forward, as_batches, default_forward, run_batches
from vidcompress.errors import InputError, check_module


def recalibrate_bn_(model: nn.Module, inputs: Any, *, forward: Forward | None = None) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance on `inputs`, in place.

    Every other module stays in eval mode (dropout off); the model's modes and each BatchNorm's momentum
    are restored after; on an error the old statistics are put back. Returns the number of BatchNorm
    layers re-estimated.
    """
    check_module(model, "model")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        raise InputError("recalibrate_bn_: the model has no BatchNorm layer that tracks running statistics")
    batches = as_batches(inputs)
    modes = {module: module.training for module in model.modules()}
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]  # type: ignore[union-attr]
    model.eval()
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the calibration batches
            norm.train()
        run_batches(model, batches, forward or default_forward)
    except BaseException:
        with torch.no_grad():
            for norm, (_, mean, var, count) in zip(norms, saved, strict=True):
                norm.running_mean.copy_(mean)  # type: ignore[union-attr]
                norm.running_var.copy_(var)  # type: ignore[union-attr]
                norm.num_batches_tracked.copy_(count)  # type: ignore[union-attr]
        raise
    finally:
        for norm, (momentum, *_rest) in zip(norms, saved, strict=True):
            norm.momentum = momentum
        for module, mode in modes.items():
            module.train(mode)
    return len(norms)
