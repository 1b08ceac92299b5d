"""Video data: UCF101 and HMDB51 split files, videos decoded with PyAV or folders of frame images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from examples.tc3d.sampling import ClipSampler
from examples.tc3d.transforms import video_transform

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class VideoItem:
    path: Path
    label: int


def read_class_index(path: str | Path) -> list[str]:
    """UCF101's classInd.txt ("1 ApplyEyeMakeup" per line) as a list of class names."""
    names = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            number, name = line.split()
            names[int(number) - 1] = name
    return [names[i] for i in range(len(names))]


def ucf101_split(
    root: str | Path, split: int = 1, train: bool = True, *, subset: str | None = None
) -> tuple[list[VideoItem], list[str]]:
    """Items of a UCF101 split: <root>/UCF-101/<Class>/<video> listed in <root>/ucfTrainTestlist/.

    `subset` ("train", "validation" or "test") overrides `train`; UCF101 itself has no validation list,
    the synthetic set writes vallist01.txt when asked to (`has_validation`)."""
    root = Path(root)
    lists = root / "ucfTrainTestlist"
    classes = read_class_index(lists / "classInd.txt")
    index = {name: i for i, name in enumerate(classes)}
    subset = subset or ("train" if train else "test")
    prefixes = {"train": "trainlist", "validation": "vallist", "test": "testlist"}
    if subset not in prefixes:
        raise ValueError(f"subset {subset!r}: one of {', '.join(prefixes)}")
    items = []
    listing = lists / f"{prefixes[subset]}{split:02d}.txt"
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        relative = line.split()[0]
        items.append(VideoItem(root / "UCF-101" / relative, index[relative.split("/")[0]]))
    return items, classes


def has_validation(root: str | Path, split: int = 1) -> bool:
    """Whether the data set under `root` has a validation list for `split`."""
    return (Path(root) / "ucfTrainTestlist" / f"vallist{split:02d}.txt").exists()


def hmdb51_split(
    video_root: str | Path, split_dir: str | Path, split: int = 1, train: bool = True
) -> tuple[list[VideoItem], list[str]]:
    """Items of an HMDB51 split: files <class>_test_split<N>.txt with "<video> <0|1|2>" lines
    (1 train, 2 test, 0 unused); classes in alphabetical order; videos at <video_root>/<class>/."""
    files = sorted(Path(split_dir).glob(f"*_test_split{split}.txt"))
    classes = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    wanted = "1" if train else "2"
    items = []
    for label, (name, file) in enumerate(zip(classes, files, strict=True)):
        for line in file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == wanted:
                items.append(VideoItem(Path(video_root) / name / parts[0], label))
    return items, classes


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of a video file (PyAV) or a folder of images, as (T, H, W, 3) uint8."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"{path}: no frame images")
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in images])
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(frames)


class VideoDataset(Dataset):
    """Videos as (clips, 3, k, size, size) tensors with their labels.

    Training (`train=True`): S clips from the sampler with random offsets and augmentation, seeded per
    (seed, epoch, index) so that a run is reproducible whatever the number of workers. Testing: S
    centred clips (or, with an `AllClipsSampler`, every clip of the video).

    `cache_frames` keeps every decoded video in memory, so that a small data set is decoded once rather
    than every epoch (decoding was about half of an epoch of the synthetic tables' training). Each
    loader worker holds its own cache, so it pays only with `workers=0` or persistent workers.
    """

    def __init__(
        self,
        items: list[VideoItem],
        sampler: ClipSampler,
        *,
        segments: int = 3,
        size: int = 112,
        train: bool = True,
        seed: int = 0,
        cache_frames: bool = False,
    ) -> None:
        self.items = items
        self.sampler = sampler
        self.segments = segments
        self.size = size
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.cache: dict[int, np.ndarray] | None = {} if cache_frames else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        frames = None if self.cache is None else self.cache.get(index)
        if frames is None:
            frames = read_frames(item.path)
            if self.cache is not None:
                self.cache[index] = frames
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        indices = self.sampler(len(frames), self.segments, rng).frames
        return video_transform(frames[indices], self.size, rng), item.label
