"""What the command line needs to calibrate a weights file: the model's architecture from the user's
own code (`pkg.module:build`) and calibration batches from a safetensors file of input tensors.

A calibration file holds tensors only (safetensors: nothing in it can run). Its tensors are taken in
name order. If every name is a parameter of the model's `forward` (`input_ids`, `attention_mask`), each
batch is a dict of those keywords, all split together along the first dimension; otherwise each tensor
holds samples of the model's single input. Either way a tensor is split into batches of at most
`batch_size` samples.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidcompress.errors import InputError

DEFAULT_BATCH_SIZE = 16


def build_model(spec: str) -> nn.Module:
    """Call `build` of `pkg.module` (`pkg.module:build`, importable from the current folder) with no
    arguments; the nn.Module it returns."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise InputError(f"--model {spec!r}: expected MODULE:CALLABLE, e.g. mypackage.models:build")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's own modules import from here
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module failing to import, for any reason: say so in one line
        raise InputError(f"--model {spec}: cannot import {module_name} ({type(error).__name__}: {error})") from None
    build = getattr(module, attribute, None)
    if not callable(build):
        raise InputError(f"--model {spec}: {module_name} has no callable {attribute!r}")
    try:
        model = build()
    except Exception as error:
        raise InputError(f"--model {spec}: {attribute}() failed ({type(error).__name__}: {error})") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"--model {spec}: {attribute}() returned a {type(model).__name__}, not an nn.Module")
    return model.eval()


def load_weights(model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str, spec: str) -> None:
    """`model.load_state_dict(tensors)`, strictly; a mismatch is one error naming what does not fit."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{name} {tuple(tensors[name].shape)} vs {tuple(expected[name].shape)}"
        for name in expected
        if name in tensors and tuple(tensors[name].shape) != tuple(expected[name].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)):
            if names:
                more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
                parts.append(f"{label} {', '.join(names[:3])}{more}")
        raise InputError(f"{source} does not fit the model {spec} builds: {'; '.join(parts)}")
    model.load_state_dict(dict(tensors))


def read_calibration(path: str | os.PathLike[str], model: nn.Module, batch_size: int = DEFAULT_BATCH_SIZE) -> list[Any]:
    """The calibration batches in a safetensors file of input tensors (see the module's docstring)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if batch_size < 1:
        raise InputError(f"calibration batch size {batch_size}: must be at least 1")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such calibration file")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors file of calibration inputs ({error})") from None
    if not tensors:
        raise InputError(f"{path}: holds no tensors; give at least one batch of model inputs")
    names = sorted(tensors)
    empty = [name for name in names if tensors[name].ndim == 0 or tensors[name].shape[0] == 0]
    if empty:
        raise InputError(f"{path}: {empty[0]} holds no samples (a scalar or an empty first dimension)")
    parameters = set(inspect.signature(model.forward).parameters)
    if set(names) <= parameters:
        count = {tensors[name].shape[0] for name in names}
        if len(count) != 1:
            raise InputError(f"{path}: keyword inputs {', '.join(names)} hold different numbers of samples")
        total = count.pop()
        return [
            {name: tensors[name][start : start + batch_size] for name in names} for start in range(0, total, batch_size)
        ]
    return [chunk for name in names for chunk in tensors[name].split(batch_size)]
