"""The ten real clips as I3D inputs: 64 frames, short side 256, a 224 x 224 crop, values in [-1, 1]."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from examples.real import kinetics_classes, video_clips

FRAMES = 64
SHORT_SIDE = 256
CROP = 224
# The clips whose action is a Kinetics-400 class (the others have none, or no label: agreement only).
LABELS = {
    "v_SoccerJuggling_g23_c01.avi": "juggling soccer ball",
    "v_SoccerJuggling_g24_c01.avi": "juggling soccer ball",
    "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi": "cartwheeling",
    "basketball.mp4": "dunking basketball",
}
CROPS = ("centre", "start", "end")  # along the long side


@dataclass(frozen=True)
class Clip:
    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8, every decoded frame
    label: int | None  # Kinetics class index, where the action is one


def decode(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if not frames:
        raise ValueError("no frames decoded")
    return np.stack(frames)


def load_clips() -> list[Clip]:
    classes = kinetics_classes()
    return [
        Clip(name, decode(data), classes.index(LABELS[name]) if name in LABELS else None)
        for name, data in video_clips().items()
    ]


def prepare(frames: np.ndarray, *, crop: str = "centre", start: int | None = None, flip: bool = False) -> torch.Tensor:
    """(3, 64, 224, 224) in [-1, 1]: 64 frames from `start` (default: the window at the clip's centre;
    a shorter clip loops), resized to a short side of 256, cropped at the centre or either end of the
    long side."""
    start = max((len(frames) - FRAMES) // 2, 0) if start is None else start
    index = (start + np.arange(FRAMES)) % len(frames)
    video = torch.from_numpy(frames[index]).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    height, width = video.shape[2:]
    scale = SHORT_SIDE / min(height, width)
    size = (max(SHORT_SIDE, round(height * scale)), max(SHORT_SIDE, round(width * scale)))
    video = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
    offsets = []
    for length in size:
        room = length - CROP
        offsets.append({"centre": room // 2, "start": 0, "end": room}[crop] if room else 0)
    top, left = offsets if size[0] > size[1] else ((size[0] - CROP) // 2, offsets[1])
    if size[0] > size[1]:
        left = (size[1] - CROP) // 2
    video = video[:, :, top : top + CROP, left : left + CROP]
    if flip:
        video = video.flip(-1)
    return (video / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()
