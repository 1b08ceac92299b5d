"""Evaluating T-C3D: video accuracy with S clips and with all clips, FPS, FLOPs, parameters, size.

FPS, as in the paper's real-time claim: frames of video classified per second, batch 1, from decoded
frames to the fused score (sampling, transform and network; decoding the file is excluded). A video
of N frames classified from S clips in t seconds counts N / t.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from examples.tc3d.data import read_frames, ucf101_split
from examples.tc3d.model import TC3D
from examples.tc3d.sampling import all_clips, make_sampler
from examples.tc3d.train import Predictions, TrainConfig, build_model, evaluation_loader, predict
from examples.tc3d.transforms import video_transform
from vidcompress.errors import InputError
from vidcompress.io import load_state_dict
from vidcompress.kernels import SparseReport


def confusion(predictions: Predictions, classes: int) -> np.ndarray:
    """Confusion matrix of video-level predictions: rows are true classes, columns predictions."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (predictions.labels, predictions.predicted), 1)
    return matrix


def clip_flops(model: TC3D, frames: int, size: int) -> int:
    """FLOPs of the backbone on one clip (a multiply-add counts 2; MACs = FLOPs / 2)."""
    model.eval()
    clip = torch.zeros(1, 3, frames, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.backbone(clip)
    return int(counter.get_total_flops())


def measure_fps(
    model: TC3D, config: TrainConfig, paths: list[Path], repeat: int = 1, *, every_clip: bool = False
) -> float:
    """Frames of video classified per second at batch 1 (see the module docstring). `every_clip`:
    all-clips testing (every consecutive clip, scores averaged) instead of the model's S clips."""
    sampler = make_sampler(config.sampler, config.frames, config.stride)
    videos = [read_frames(p) for p in paths]
    model.eval()
    seen, elapsed = 0, 0.0
    with torch.no_grad():
        for _ in range(repeat):
            for frames in videos:
                start = time.perf_counter()
                if every_clip:
                    indices = all_clips(len(frames), config.frames, config.stride).frames
                    model.clip_scores(video_transform(frames[indices], config.size, None)[None]).mean(1)
                else:
                    indices = sampler(len(frames), config.segments, None).frames
                    model(video_transform(frames[indices], config.size, None)[None])
                elapsed += time.perf_counter() - start
                seen += len(frames)
    return seen / elapsed


def load_trained(run: str | Path, weights: str | Path | None = None) -> tuple[TC3D, TrainConfig, list[str]]:
    """The model of a training run (or other weights for its architecture, e.g. a compressed copy)."""
    import json

    run = Path(run)
    config = TrainConfig.from_json(run / "config.json")
    tensors, metadata = load_state_dict(weights or run / "model.safetensors")
    classes = json.loads(metadata["classes"]) if "classes" in metadata else ucf101_split(config.data)[1]
    model = build_model(config, len(classes))
    model.load_state_dict(tensors)
    return model.eval(), config, classes


def load_sparse_run(run: str | Path, container: str | Path) -> tuple[TC3D, TrainConfig, list[str]]:
    """The run's architecture with a compressed container's weights, its layers on the sparse kernels
    where `load_sparse`'s probe (one clip batch of the run's shape) measured them faster."""
    from vidcompress import load_sparse
    from vidcompress.codec import is_container

    if not is_container(container):
        raise InputError(f"{container}: not a vidcompress container (the sparse kernels run on one)")
    model, config, classes = load_trained(run)
    example = torch.randn(1, config.segments, 3, config.frames, config.size, config.size)
    return cast(TC3D, load_sparse(container, model, example_inputs=example)).eval(), config, classes


def evaluate_run(
    run: str | Path,
    weights: str | Path | None = None,
    *,
    data: str | None = None,
    fps_videos: int = 8,
    sparse: bool = False,
) -> dict[str, Any]:
    """All the numbers of one trained model on the test split; `sparse`: `weights` is a container, run
    on the sparse kernels (`load_sparse`), so FPS is the compressed form's."""
    if sparse and weights is None:
        raise InputError("sparse evaluation needs the weights of a compressed container")
    model, config, classes = load_sparse_run(run, cast(Path, weights)) if sparse else load_trained(run, weights)
    if data:
        config.data = data
    items, _ = ucf101_split(config.data, config.split, train=False)
    device = torch.device("cpu")
    s_clips = predict(model, evaluation_loader(config, items), device=device)
    every = predict(model, evaluation_loader(config, items, all_clips=True), device=device, average_clips=True)
    matrix = confusion(s_clips, len(classes))
    flops = clip_flops(model, config.frames, config.size)
    parameters = sum(p.numel() for p in model.parameters())
    lengths = [len(read_frames(item.path)) for item in items[:fps_videos]]
    return {
        "classes": len(classes),
        "test_videos": len(items),
        "video_accuracy": s_clips.accuracy,
        "clip_accuracy": s_clips.clip_correct / max(s_clips.clips, 1),
        "video_accuracy_all_clips": every.accuracy,
        "segments": config.segments,
        "all_clips_per_video": int(all_clips(int(np.mean(lengths)), config.frames, config.stride).frames.shape[0]),
        "parameters": parameters,
        "fp32_megabytes": parameters * 4 / 1e6,
        "clip_gflops": flops / 1e9,
        "clip_gmacs": flops / 2e9,
        "video_gflops": flops * config.segments / 1e9,
        "fps": measure_fps(model, config, [item.path for item in items[:fps_videos]]),
        "fps_all_clips": measure_fps(model, config, [item.path for item in items[:fps_videos]], every_clip=True),
        "fps_threads": torch.get_num_threads(),
        **(
            {"sparse_layers": sum(c.mode == "sparse" for c in cast(SparseReport, model.sparse_report_))}
            if sparse
            else {}
        ),
        "per_class_accuracy": {name: float(matrix[i, i] / max(matrix[i].sum(), 1)) for i, name in enumerate(classes)},
        "confusion": matrix.tolist(),
    }
