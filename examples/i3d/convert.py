"""The verified I3D checkpoint as a PyTorch state dict, converted once and cached as safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from examples.i3d.model import I3D, flax_name
from examples.real import cache_dir, load_i3d_arrays
from vidcompress.io import load_state_dict, save_state_dict

CONVERTED = "i3d_kinetics400_rgb.safetensors"


def convert() -> dict[str, torch.Tensor]:
    """Flax kernels (T, H, W, Cin, Cout) become Conv3d weights (Cout, Cin, T, H, W); batch statistics
    (1, 1, 1, 1, C) become vectors. Every tensor of the model is filled and every array used."""
    arrays = load_i3d_arrays()
    model = I3D()
    state: dict[str, torch.Tensor] = {}
    used = set()
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = tensor
            continue
        key = flax_name(name)
        value = arrays[key]
        used.add(key)
        if value.ndim == 5 and name.endswith("conv.weight"):
            value = np.transpose(value, (4, 3, 0, 1, 2))
        value = np.ascontiguousarray(value.reshape(tensor.shape) if value.ndim == 5 and "bn" in name else value)
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: checkpoint {key} has shape {value.shape}, the model {tuple(tensor.shape)}")
        state[name] = torch.from_numpy(value.astype(np.float32))
    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"I3D checkpoint arrays with no place in the model: {unused[:5]}")
    return state


def pretrained_i3d() -> I3D:
    """The Kinetics-400 I3D with DeepMind's weights, in eval mode (converted on first use, then cached)."""
    path = Path(cache_dir()) / CONVERTED
    if not path.is_file():
        save_state_dict(convert(), path)
    model = I3D()
    model.load_state_dict(load_state_dict(path)[0])
    return model.eval()
