"""Frame sampling: S clips of k frames per video (the paper's Eq. 4), for training and testing.

A video of N frames is cut into S segments of length L = N / S. From segment s:
- consecutive: k frames at stride o from a start t_s, i.e. t_s, t_s + o, ..., t_s + (k - 1) o, where
  t_s = s L + r and r is uniform in [0, L - (k - 1) o - 1] when training, the centre when testing;
- segment-random: the segment is cut into k sub-fragments of length L / k and one frame is taken from
  each, uniformly when training, the middle one when testing.
At test time `AllClipsSampler` covers the whole video with consecutive clips instead (the paper's
all-clips testing; S is ignored).
For the paper's 300-frame example (S = 3, k = 8, o = 2): segments [0, 100), [100, 200), [200, 300); a
clip spans 15 frames, so a segment's start is drawn from 86 positions (s L + 0 ... s L + 85).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

SAMPLERS = ("consecutive", "segment-random")  # for training and S-clip testing


class ClipIndices(NamedTuple):
    """Frame indices of the sampled clips, shape (clips, k)."""

    frames: np.ndarray


class ClipSampler(ABC):
    """Picks S clips of k frames from a video of `num_frames` frames."""

    def __init__(self, frames_per_clip: int = 8) -> None:
        self.frames_per_clip = frames_per_clip

    @abstractmethod
    def __call__(self, num_frames: int, segments: int, rng: np.random.Generator | None) -> ClipIndices:
        """rng None means test time: deterministic, centred choices."""


class ConsecutiveSampler(ClipSampler):
    def __init__(self, frames_per_clip: int = 8, stride: int = 2) -> None:
        super().__init__(frames_per_clip)
        self.stride = stride

    @property
    def span(self) -> int:
        return (self.frames_per_clip - 1) * self.stride + 1

    def __call__(self, num_frames: int, segments: int, rng: np.random.Generator | None) -> ClipIndices:
        length = num_frames / segments
        room = max(int(length) - self.span, 0)
        offsets = np.full(segments, room // 2) if rng is None else rng.integers(0, room + 1, size=segments)
        starts = np.floor(np.arange(segments) * length).astype(np.int64) + offsets
        frames = starts[:, None] + self.stride * np.arange(self.frames_per_clip)[None, :]
        return ClipIndices(np.minimum(frames, num_frames - 1))  # a short video repeats its last frame


class SegmentRandomSampler(ClipSampler):
    def __call__(self, num_frames: int, segments: int, rng: np.random.Generator | None) -> ClipIndices:
        k = self.frames_per_clip
        length = num_frames / segments
        piece = length / k
        base = np.arange(segments)[:, None] * length + np.arange(k)[None, :] * piece
        frames = base + piece / 2 if rng is None else base + rng.random((segments, k)) * piece
        return ClipIndices(np.minimum(np.floor(frames).astype(np.int64), num_frames - 1))


def all_clips(num_frames: int, frames_per_clip: int = 8, stride: int = 2) -> ClipIndices:
    """Every consecutive, non-overlapping clip of the video (at least one)."""
    span = (frames_per_clip - 1) * stride + 1
    starts = np.arange(0, max(num_frames - span, 0) + 1, span)
    frames = starts[:, None] + stride * np.arange(frames_per_clip)[None, :]
    return ClipIndices(np.minimum(frames, num_frames - 1))


class AllClipsSampler(ClipSampler):
    """Every consecutive, non-overlapping clip of the video, whatever S (test time only)."""

    def __init__(self, frames_per_clip: int = 8, stride: int = 2) -> None:
        super().__init__(frames_per_clip)
        self.stride = stride

    def __call__(self, num_frames: int, segments: int, rng: np.random.Generator | None) -> ClipIndices:
        return all_clips(num_frames, self.frames_per_clip, self.stride)


def make_sampler(name: str, frames_per_clip: int = 8, stride: int = 2) -> ClipSampler:
    if name == "consecutive":
        return ConsecutiveSampler(frames_per_clip, stride)
    if name == "segment-random":
        return SegmentRandomSampler(frames_per_clip)
    raise ValueError(f"sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
