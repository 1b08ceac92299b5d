"""What compression does to I3D on the clips: top-1 where a clip has a Kinetics label, and agreement
and KL divergence with the dense model on every view of every clip."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from examples.i3d.clips import Clip, prepare


@dataclass(frozen=True)
class View:
    clip: str
    crop: str
    label: int | None


def make_views(clips: list[Clip], crops: tuple[str, ...]) -> tuple[list[View], list[torch.Tensor]]:
    """Each clip at each crop (64 centred frames): the views and their input tensors."""
    views, inputs = [], []
    for clip in clips:
        for crop in crops:
            views.append(View(clip.name, crop, clip.label))
            inputs.append(prepare(clip.frames, crop=crop))
    return views, inputs


@torch.no_grad()
def predict(model: nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Logits (views, 400), one view at a time (batch 1 keeps memory at one clip's activations)."""
    model.eval()
    return torch.cat([model(x[None]) for x in inputs])


def compare(dense: torch.Tensor, other: torch.Tensor, views: list[View]) -> dict[str, float]:
    """Top-1 on the labelled views, top-1 agreement with the dense model and mean KL(dense || other)
    in nats, over all views."""
    labelled = [i for i, view in enumerate(views) if view.label is not None]
    labels = torch.tensor([views[i].label for i in labelled])
    kl = F.kl_div(F.log_softmax(other, 1), F.log_softmax(dense, 1), log_target=True, reduction="none").sum(1)
    return {
        "top1_labelled": float((other[labelled].argmax(1) == labels).float().mean()) if labelled else float("nan"),
        "agreement": float((other.argmax(1) == dense.argmax(1)).float().mean()),
        "kl": float(kl.mean()),
        "kl_max": float(kl.max()),
    }
