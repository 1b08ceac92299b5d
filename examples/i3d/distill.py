"""Recovering a compressed I3D without labels: distillation from the dense model on the clips.

No labelled Kinetics data is at hand, but the dense model can label anything: the pruned student is
trained to match the dense teacher's output distribution (KL at temperature T) on augmented windows
of the clips (random 32-frame windows, random crops, flips), with its pruning masks held by
vidcompress's Pruner so that pruned weights stay zero; then it is quantized and its centroids are
distilled the same way. Public API only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from examples.i3d.clips import CROPS, Clip, prepare
from examples.i3d.model import I3D
from vidcompress import PruneConfig, Pruner, QuantizeConfig, finalize_, quantize_

TRAIN_FRAMES = 32  # half the evaluation's 64: a quarter of the cost of a training step


def augmented(clip: Clip, rng: np.random.Generator) -> torch.Tensor:
    start = int(rng.integers(0, max(len(clip.frames) - TRAIN_FRAMES, 0) + 1))
    video = prepare(clip.frames, crop=str(rng.choice(CROPS)), start=start, flip=bool(rng.random() < 0.5))
    return video[:, :TRAIN_FRAMES]


def distill_steps(
    student: I3D, teacher: I3D, clips: list[Clip], steps: int, lr: float, seed: int, temperature: float = 2.0
) -> list[float]:
    """`steps` SGD steps of KL(teacher || student) at `temperature`, one augmented clip a step; the losses."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    student.train()
    for module in student.modules():  # batch statistics stay those of the pretrained model
        if isinstance(module, torch.nn.BatchNorm3d):
            module.eval()
    losses = []
    for _ in range(steps):
        x = augmented(clips[int(rng.integers(len(clips)))], rng)[None]
        with torch.no_grad():
            target = F.log_softmax(teacher(x) / temperature, 1)
        loss = F.kl_div(F.log_softmax(student(x) / temperature, 1), target, log_target=True, reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        (loss * temperature**2).backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    student.eval()
    return losses


def prune_and_distill(
    student: I3D,
    teacher: I3D,
    clips: list[Clip],
    sparsity: str,
    bits: str,
    *,
    steps: int,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Prune to `sparsity` (masks held), distill; quantize to `bits`, distill the centroids; finalize."""
    pruner = Pruner(PruneConfig(sparsity=sparsity)).attach(student)
    pruner.step()
    pruned = distill_steps(student, teacher, clips, steps, lr, seed)
    pruner.finalize()
    quantize_(student, QuantizeConfig(bits=bits))
    shared = distill_steps(student, teacher, clips, max(steps // 3, 1), lr / 10, seed + 1)
    finalize_(student)
    return {"pruned": pruned, "quantized": shared}
