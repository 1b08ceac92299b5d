"""Training T-C3D: SGD with momentum, step decay, checkpoints every epoch, resume, DDP under torchrun.

Single process: `python -m examples.tc3d train ...`. Several: `torchrun --nproc-per-node 2 -m
examples.tc3d train ...` (gloo on CPU, NCCL on GPU); only rank 0 evaluates and writes files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from examples.tc3d.data import VideoDataset, VideoItem, has_validation, ucf101_split
from examples.tc3d.model import TC3D, build_tc3d
from examples.tc3d.sampling import AllClipsSampler, make_sampler
from vidcompress.io import atomic_path, save_state_dict


@dataclass
class TrainConfig:
    """Everything a training run depends on; written next to its outputs as config.json."""

    data: str = "data/synthetic"
    out: str = "runs/tc3d"
    width: int = 64
    size: int = 112
    frames: int = 8
    stride: int = 2
    segments: int = 3
    fusion: str = "average"
    sampler: str = "consecutive"
    dropout: float = 0.8
    # Epochs during which the fusion's own parameters stay at their start (weighted fusion: the average of
    # the clips; attention: uniform weights), so the backbone first learns as under average fusion.
    fusion_warmup: int = 0
    epochs: int = 30
    batch_size: int = 8
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-5
    lr_steps: list[int] = field(default_factory=lambda: [20, 25])
    lr_gamma: float = 0.1
    workers: int = 2
    cache_frames: bool = False  # keep decoded videos in memory (small data sets, workers=0): decode once
    seed: int = 0
    split: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.fusion_warmup <= self.epochs:
            raise ValueError(
                f"fusion_warmup {self.fusion_warmup}: expected 0 to {self.epochs} (the epochs of training)"
            )

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        return cls(**json.loads(Path(path).read_text()))


def fusion_warmup_for(fusion: str, epochs_held: int) -> int:
    """The warm-up the CPU-sized runs (the tables, the demo) give a fusion: `epochs_held` for weighted
    fusion, whose one weight a clip is shared by every class and, trained from the first epoch, often
    solved the order classes before the backbone had learnt colour (`benchmarks/results/tc3d_tables.md`);
    none for the others (attention fusion missed the appearance pair in 0 of 9 trainings without one)."""
    return epochs_held if fusion == "weighted" else 0


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def setup_distributed() -> torch.device:
    """Join the process group when launched by torchrun; pick the device."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def build_model(config: TrainConfig, num_classes: int) -> TC3D:
    return build_tc3d(
        num_classes=num_classes,
        width=config.width,
        segments=config.segments,
        fusion=config.fusion,
        dropout=config.dropout,
    )


def make_dataset(config: TrainConfig, items: list[VideoItem], *, train: bool, all_clips: bool = False) -> VideoDataset:
    """The videos as the run samples them: S clips (random offsets and augmentation when `train`), or
    every clip of each video (`all_clips`, test time)."""
    if all_clips and train:
        raise ValueError("all-clips sampling is for testing")
    sampler = (
        AllClipsSampler(config.frames, config.stride)
        if all_clips
        else make_sampler(config.sampler, config.frames, config.stride)
    )
    return VideoDataset(
        items, sampler, segments=config.segments, size=config.size, train=train, seed=config.seed,
        cache_frames=config.cache_frames,
    )  # fmt: skip


def loader(
    dataset: VideoDataset, *, batch_size: int, workers: int, shuffle: bool = False, seed: int = 0, epoch: int = 0
) -> DataLoader:
    """Batches of a dataset; shuffled per (seed, epoch), and split over processes under torchrun."""
    sampler: DistributedSampler[Any] | None = None
    if dist.is_initialized() and shuffle:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        drop_last=False,
    )


def evaluation_loader(
    config: TrainConfig, items: list[VideoItem], *, all_clips: bool = False, batch_size: int = 8
) -> DataLoader:
    """The test videos in order: S centred clips each, or every clip (then one video a batch, as
    videos differ in their number of clips)."""
    dataset = make_dataset(config, items, train=False, all_clips=all_clips)
    return loader(dataset, batch_size=1 if all_clips else batch_size, workers=config.workers)


@dataclass
class Predictions:
    """A model's answers on a loader's videos, in order."""

    labels: np.ndarray  # (V,)
    scores: torch.Tensor  # fused video scores (V, C)
    clip_correct: int  # clips whose own score is right
    clips: int

    @property
    def predicted(self) -> np.ndarray:
        return self.scores.argmax(1).numpy()

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predicted == self.labels)) if self.labels.size else 0.0


@torch.no_grad()
def predict(
    model: TC3D, data: DataLoader, *, device: torch.device | None = None, average_clips: bool = False
) -> Predictions:
    """Video scores of every video of `data`. `average_clips` fuses by the mean of the clip scores
    instead of the model's fusion: all-clips testing, where a learned fusion has no weights for the
    number of clips."""
    device = device or torch.device("cpu")
    model.eval()
    labels, scores = [], []
    clip_correct = clips = 0
    for videos, target in data:
        videos, target = videos.to(device), target.to(device)
        clip_scores = model.clip_scores(videos)
        fused = clip_scores.mean(1) if average_clips else model.fusion(clip_scores)
        clip_correct += int((clip_scores.argmax(2) == target[:, None]).sum())
        clips += clip_scores.shape[0] * clip_scores.shape[1]
        labels.append(target.cpu())
        scores.append(fused.float().cpu())
    if not labels:
        return Predictions(np.zeros(0, dtype=np.int64), torch.zeros(0, 0), 0, 0)
    return Predictions(torch.cat(labels).numpy(), torch.cat(scores), clip_correct, clips)


def evaluate(
    model: TC3D, data: DataLoader, device: torch.device | None = None, *, average_clips: bool = False
) -> dict[str, float]:
    """Loss, video-level accuracy (fused scores) and clip-level accuracy (each clip alone)."""
    result = predict(model, data, device=device, average_clips=average_clips)
    total = max(result.labels.size, 1)
    labels = torch.from_numpy(result.labels)
    loss = float(F.cross_entropy(result.scores, labels, reduction="sum")) if result.clips else 0.0
    return {
        "loss": loss / total,
        "video_accuracy": result.accuracy,
        "clip_accuracy": result.clip_correct / max(result.clips, 1),
    }


def train_one_epoch(
    model: nn.Module,
    data: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    progress: bool,
    frozen: Sequence[nn.Parameter] = (),
) -> float:
    """One pass over the training data; returns the mean loss (on the video-level score). `frozen`
    parameters get no step: their gradient is dropped before the optimizer runs, so neither momentum nor
    weight decay moves them (this also holds under DDP, whose gradient hooks have run by then)."""
    from tqdm.auto import tqdm

    model.train()
    total, count = 0.0, 0
    for videos, labels in tqdm(data, desc="train", leave=False, disable=not progress or not is_main_process()):
        videos, labels = videos.to(device), labels.to(device)
        loss = F.cross_entropy(model(videos), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for parameter in frozen:
            parameter.grad = None
        optimizer.step()
        total += float(loss.detach()) * labels.numel()
        count += labels.numel()
    return total / max(count, 1)


def run_training(
    config: TrainConfig,
    *,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train and evaluate every epoch; returns the history. `stop_after` ends the run early (tests).

    Each epoch is evaluated on the validation split when the data set has one (the test split is then
    left for the measurements that follow training), else on the test split."""
    device = setup_distributed()
    out = Path(config.out)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    train_items, classes = ucf101_split(config.data, config.split, train=True)
    monitored = "validation" if has_validation(config.data, config.split) else "test"
    monitor_items, _ = ucf101_split(config.data, config.split, subset=monitored)
    torch.manual_seed(config.seed)
    model = build_model(config, len(classes)).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.lr_steps, config.lr_gamma)
    history: list[dict[str, Any]] = []
    start = 0
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = state["history"], int(state["epoch"]) + 1
    network: nn.Module = model
    if dist.is_initialized():
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    train_set = make_dataset(config, train_items, train=True)
    monitor = evaluation_loader(config, monitor_items, batch_size=config.batch_size)
    per_process = max(1, config.batch_size // (dist.get_world_size() if dist.is_initialized() else 1))
    for epoch in range(start, config.epochs):
        torch.manual_seed(config.seed * 1000 + epoch)  # dropout and shuffling depend on the epoch only
        train_set.set_epoch(epoch)
        data = loader(
            train_set, batch_size=per_process, workers=config.workers, shuffle=True, seed=config.seed, epoch=epoch
        )
        frozen = list(model.fusion.parameters()) if epoch < config.fusion_warmup else []
        loss = train_one_epoch(network, data, optimizer, device, config.progress, frozen)
        scheduler.step()
        if is_main_process():
            metrics = evaluate(model, monitor, device)
            lr = optimizer.param_groups[0]["lr"]
            record = {"epoch": epoch, "train_loss": loss, "lr": lr, "split": monitored, **metrics}
            history.append(record)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "history": history,
            }
            with atomic_path(checkpoint) as temporary:
                torch.save(state, temporary)
            if on_epoch is not None:
                on_epoch(record)
        if dist.is_initialized():
            dist.barrier()
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    if is_main_process():
        metadata = {"classes": json.dumps(classes), "config": json.dumps(asdict(config))}
        save_state_dict(model.state_dict(), out / "model.safetensors", metadata)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return {"history": history, "classes": classes}
