"""Clip augmentation: multi-scale crop with aspect jitter, resize, horizontal flip, normalisation.

All clips of one video get the same crop and flip, so that the temporal encoding sees one scene.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCALES = (1.0, 0.875, 0.75)
MEAN = torch.tensor([0.45, 0.45, 0.45]).view(3, 1, 1, 1)
STD = torch.tensor([0.225, 0.225, 0.225]).view(3, 1, 1, 1)


def video_transform(
    frames: np.ndarray, size: int, rng: np.random.Generator | None, scales: tuple[float, ...] = SCALES
) -> torch.Tensor:
    """(clips, k, H, W, 3) uint8 -> (clips, 3, k, size, size) float, normalised.

    Training (rng given): crop width and height are each the short side times a scale from `scales`
    (at most one step apart, the aspect jitter of TSN), at a random position, then a flip with
    probability 1/2. Testing (rng None): the centre square of the short side.
    """
    height, width = frames.shape[2:4]
    base = min(height, width)
    if rng is None:
        crop_h = crop_w = base
        top, left = (height - base) // 2, (width - base) // 2
        flip = False
    else:
        i = int(rng.integers(len(scales)))
        j = int(np.clip(i + rng.integers(-1, 2), 0, len(scales) - 1))
        crop_h, crop_w = int(base * scales[i]), int(base * scales[j])
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        flip = bool(rng.random() < 0.5)
    clip = torch.from_numpy(np.ascontiguousarray(frames[:, :, top : top + crop_h, left : left + crop_w]))
    clips, k = clip.shape[:2]
    x = clip.permute(0, 1, 4, 2, 3).reshape(clips * k, 3, crop_h, crop_w).float() / 255.0
    if (crop_h, crop_w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if flip:
        x = x.flip(-1)
    x = x.view(clips, k, 3, size, size).permute(0, 2, 1, 3, 4)
    return (x - MEAN) / STD
