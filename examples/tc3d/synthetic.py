"""A synthetic action data set, written as real video files in the UCF101 layout.

Its classes need different cues, so that the paper's claims can be checked where no public data set
can be downloaded:
- appearance: a coloured object drifting slowly (colour and shape tell the class);
- short-term motion: the same grey disk moving fast up, down, or shaking, seen within 8 frames;
- long-term composition: a run-up across the frame for two thirds of the video, then a rise
  (HighJump) or a fall (LongJump): a clip from the run-up, two thirds of the video, cannot tell them
  apart; clips from every segment can;
- long-term order: a rise, a pause, a fall (RiseThenFall) or the reverse (FallThenRise), each part
  starting at a fresh random place so that position gives nothing away. The pause is as long as a
  segment, so no clip sees both movements: only a fusion that knows which segment a score came from
  (the weighted fusion) can tell them apart. With average, max or attention fusion these two classes
  are at chance level whatever S is, and that is honest: those fusions are symmetric in the clips.
Every video has its own background, object size, start position and noise; everything is seeded.
`Difficulty` makes the set harder without changing its classes: distractor objects of random colour and
shape that drift, rise, fall or shake beside the actor, static clutter in the background, and stronger
pixel noise (`HARD` is the preset the hard benchmark uses; the default reproduces the demo's videos bit
for bit).

Layout: <root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi and <root>/ucfTrainTestlist/{classInd,
trainlist01, testlist01}.txt (and vallist01.txt when validation groups are asked for: held out of the
training list), plus HMDB51-style split files in <root>/hmdb_splits/ on request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Track = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]  # (t in [0,1]) -> (T, 2) positions


@dataclass(frozen=True)
class ActionClass:
    name: str
    family: str  # appearance, motion, composition, order
    colour: tuple[int, int, int]
    square: bool
    track: Track


GREY = (200, 200, 200)


@dataclass(frozen=True)
class Difficulty:
    """What makes a video harder to classify, beyond the class itself."""

    distractors: int = 0  # extra objects of random colour and shape, each on a random class's track
    clutter: int = 0  # static blobs of random colour painted into the background
    noise: float = 6.0  # standard deviation of the per-pixel noise of every frame


HARD = Difficulty(distractors=1, clutter=4, noise=12.0)


def _drift(t: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    start = rng.uniform(0.3, 0.7, 2)
    velocity = rng.uniform(-0.15, 0.15, 2)
    wobble = 0.03 * np.sin(2 * np.pi * (t[:, None] * rng.uniform(1, 2) + rng.random(2)))
    return np.clip(start + velocity * t[:, None] + wobble, 0.1, 0.9)


def _vertical(direction: float) -> Track:
    def track(t: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
        x = np.full_like(t, rng.uniform(0.25, 0.75))
        cycles = rng.uniform(2.5, 3.5)  # fast: a pass takes about a third of the video
        y = (rng.random() + direction * cycles * t) % 1.0
        return np.stack([x, 0.1 + 0.8 * y], axis=1)

    return track


def _shake(t: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    centre = rng.uniform(0.3, 0.7, 2)
    x = centre[0] + 0.15 * np.sin(2 * np.pi * t * rng.uniform(10, 14))
    return np.stack([x, np.full_like(t, centre[1])], axis=1)


def _run_then(direction: float) -> Track:
    def track(t: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
        y0 = rng.uniform(0.45, 0.6)
        run = np.clip(t / (2 / 3), 0, 1)
        x = 0.1 + 0.6 * run + rng.uniform(-0.05, 0.05)
        rise = np.clip((t - 2 / 3) / (1 / 3), 0, 1)
        y = y0 - direction * 0.35 * rise
        return np.stack([x, y], axis=1)

    return track


def _then_pause_then(first: float) -> Track:
    def track(t: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
        # Three parts, each starting at a fresh random place (a cut), so that where the object is
        # says nothing about the class: a vertical movement, a still pause, the opposite movement.
        part = np.minimum((t * 3).astype(int), 2)
        local = t * 3 - part
        x = rng.uniform(0.25, 0.75, 3)[part]
        y = rng.uniform(0.35, 0.65, 3)[part]
        direction = np.array([first, 0.0, -first])[part]
        return np.stack([x, y + direction * 0.25 * (local - 0.5)], axis=1)

    return track


CATALOGUE = (
    ActionClass("RedBall", "appearance", (220, 40, 40), False, _drift),
    ActionClass("BlueSquare", "appearance", (40, 80, 230), True, _drift),
    ActionClass("Rise", "motion", GREY, False, _vertical(-1.0)),
    ActionClass("Fall", "motion", GREY, False, _vertical(1.0)),
    ActionClass("HighJump", "composition", GREY, False, _run_then(1.0)),
    ActionClass("LongJump", "composition", GREY, False, _run_then(-1.0)),
    ActionClass("RiseThenFall", "order", GREY, False, _then_pause_then(-1.0)),
    ActionClass("FallThenRise", "order", GREY, False, _then_pause_then(1.0)),
    ActionClass("GreenBall", "appearance", (40, 200, 60), False, _drift),
    ActionClass("Shake", "motion", GREY, False, _shake),
)


def render(
    action: ActionClass, frames: int, size: int, rng: np.random.Generator, difficulty: Difficulty = Difficulty()
) -> np.ndarray:
    """One video, (frames, size, size, 3) uint8."""
    t = np.linspace(0.0, 1.0, frames)
    radius = rng.uniform(0.07, 0.11) * size
    positions = action.track(t, rng, radius / size) * size
    background = rng.uniform(40, 110, 3)
    texture = rng.normal(0, 12, (size, size, 1))
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    colour = np.asarray(action.colour, dtype=np.float32) * rng.uniform(0.85, 1.0)
    # The default difficulty draws nothing more from rng, so the demo's videos stay as they were.
    scenery = np.broadcast_to(background + texture, (size, size, 3)).copy()
    for _ in range(difficulty.clutter):
        centre, blob = rng.uniform(0, size, 2), rng.uniform(0.04, 0.12) * size
        scenery[(grid_x - centre[0]) ** 2 + (grid_y - centre[1]) ** 2 <= blob**2] = rng.uniform(30, 230, 3)
    others = []
    for _ in range(difficulty.distractors):
        track = CATALOGUE[rng.integers(len(CATALOGUE))].track
        other_radius = rng.uniform(0.04, 0.08) * size
        path = track(t, rng, other_radius / size) * size
        others.append((path, other_radius, rng.uniform(30, 255, 3), rng.random() < 0.5))
    for index, (x, y) in enumerate(positions):
        frame = scenery + rng.normal(0, difficulty.noise, (size, size, 3))
        for track_positions, other_radius, other_colour, square in others:
            frame[_shape(grid_x, grid_y, track_positions[index], other_radius, square)] = other_colour
        frame[_shape(grid_x, grid_y, (x, y), radius, action.square)] = colour
        video[index] = np.clip(frame, 0, 255).astype(np.uint8)
    return video


def _shape(grid_x: np.ndarray, grid_y: np.ndarray, centre, radius: float, square: bool) -> np.ndarray:
    x, y = centre
    if square:
        return (np.abs(grid_x - x) <= radius * 0.9) & (np.abs(grid_y - y) <= radius * 0.9)
    return (grid_x - x) ** 2 + (grid_y - y) ** 2 <= radius**2


def write_video(path: Path, video: np.ndarray, fps: int = 25) -> None:
    """Write frames as an MPEG-4 Part 2 .avi (the codec family of UCF101's files) with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate(
    root: str | Path,
    *,
    classes: int = 8,
    videos_per_class: int = 32,
    frames: int = 48,
    size: int = 64,
    test_groups: int = 2,
    clips_per_group: int = 4,
    seed: int = 0,
    validation_groups: int = 0,
    difficulty: Difficulty = Difficulty(),
    hmdb_splits: bool = False,
    progress: bool = False,
) -> Path:
    """Write the data set under `root` and return it. Groups of `clips_per_group` videos share an
    index gXX as in UCF101; the first `test_groups` groups of every class are the test split, the next
    `validation_groups` the validation split (vallist01.txt), the rest the training split."""
    if not 2 <= classes <= len(CATALOGUE):
        raise ValueError(f"classes {classes}: the catalogue has 2 to {len(CATALOGUE)}")
    if validation_groups and (test_groups + validation_groups) * clips_per_group >= videos_per_class:
        raise ValueError(f"{videos_per_class} videos a class leave none for training after the held-out groups")
    root = Path(root)
    chosen = CATALOGUE[:classes]
    splits = root / "ucfTrainTestlist"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {c.name}\n" for i, c in enumerate(chosen)))
    train, validation, test = [], [], []
    jobs = [(label, action, index) for label, action in enumerate(chosen) for index in range(videos_per_class)]
    iterator = jobs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="generating videos", unit="video")
    hmdb: dict[str, list[str]] = {}
    for label, action, index in iterator:
        group, clip = index // clips_per_group + 1, index % clips_per_group + 1
        name = f"v_{action.name}_g{group:02d}_c{clip:02d}.avi"
        rng = np.random.default_rng([seed, label, index])
        write_video(root / "UCF-101" / action.name / name, render(action, frames, size, rng, difficulty))
        relative = f"{action.name}/{name}"
        if group <= test_groups:
            test.append(relative)
        elif group <= test_groups + validation_groups:
            validation.append(f"{relative} {label + 1}")
        else:
            train.append(f"{relative} {label + 1}")
        hmdb.setdefault(action.name, []).append(f"{name} {2 if group <= test_groups else 1}")
    (splits / "trainlist01.txt").write_text("".join(f"{line}\n" for line in train))
    (splits / "testlist01.txt").write_text("".join(f"{line}\n" for line in test))
    if validation:
        (splits / "vallist01.txt").write_text("".join(f"{line}\n" for line in validation))
    if hmdb_splits:
        folder = root / "hmdb_splits"
        folder.mkdir(exist_ok=True)
        for name, lines in hmdb.items():
            (folder / f"{name}_test_split1.txt").write_text("".join(f"{line} \n" for line in lines))
    return root
