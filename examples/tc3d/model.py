"""The T-C3D network: R3D-18 as in the authors' released code, and temporal encoding over S clips.

R3D-18: stem conv 3x7x7 stride (1,2,2) with no max-pool; four stages of two BasicBlocks
(64/128/256/512 x width/64) with stride 2 in T, H and W at stages 2-4 and a 1x1x1 projection
shortcut (conv + BN) in the first block of every stage; global average pool, dropout, FC. Convs
have no bias. At 101 classes and full width: 33,222,309 parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class BasicBlock3d(nn.Module):
    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        project: bool = False,
        norm: Callable[[int], nn.Module] = nn.BatchNorm3d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride, bias=False), norm(planes)) if project else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class R3D18(nn.Module):
    """The shared 3D CNN: one clip (N, C, T, H, W) to class logits (N, num_classes).

    As in timm: `forward_features` gives the last feature map, `forward_head` pools and classifies
    (`pre_logits=True` stops at the pooled features).
    """

    def __init__(
        self,
        *,
        num_classes: int = 101,
        width: int = 64,
        in_channels: int = 3,
        dropout: float = 0.8,
        norm: Callable[[int], nn.Module] = nn.BatchNorm3d,
    ) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        self.conv1 = nn.Conv3d(in_channels, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
        self.bn1 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        stages, inplanes = [], width
        for index, planes in enumerate(widths):
            blocks = [
                BasicBlock3d(inplanes, planes, stride=1 if index == 0 else 2, project=True, norm=norm),
                BasicBlock3d(planes, planes, norm=norm),
            ]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.num_features = widths[-1]
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, 512 x width/64, T', H', W')."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Pool a feature map to pool5 features (N, D); then dropout and the classifier unless `pre_logits`."""
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def r3d18(*, num_classes: int = 101, width: int = 64, dropout: float = 0.8) -> R3D18:
    """R3D-18 at a given width (64 is the paper's; 16 trains on a laptop CPU)."""
    return R3D18(num_classes=num_classes, width=width, dropout=dropout)


class Fusion(nn.Module):
    """Fuses per-clip scores (N, S, C) into a video score (N, C). Every fusion is built from the same
    keywords (the number of segments S and of classes C), so `FUSIONS` maps names to classes."""

    def __init__(self, *, segments: int, num_classes: int) -> None:
        super().__init__()


class AverageFusion(Fusion):
    """The mean of the clip scores; any number of clips."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.mean(1)


class MaxFusion(Fusion):
    """The largest score of each class over the clips; any number of clips."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.amax(1)


class WeightedFusion(Fusion):
    """One learned weight per segment plus a bias: the paper's S x 1 convolution, written as 1-D
    parameters so that compression rules never touch it. Defined for exactly S clips."""

    def __init__(self, *, segments: int, num_classes: int) -> None:
        super().__init__(segments=segments, num_classes=num_classes)
        self.segment_weight = nn.Parameter(torch.full((segments,), 1.0 / segments))
        self.segment_bias = nn.Parameter(torch.zeros(1))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[1] != self.segment_weight.numel():
            raise ValueError(
                f"weighted fusion has weights for {self.segment_weight.numel()} segments, got {scores.shape[1]} "
                "clips; fuse a different number of clips explicitly (e.g. average them)"
            )
        return torch.einsum("nsc,s->nc", scores, self.segment_weight) + self.segment_bias


class AttentionFusion(Fusion):
    """Clips weighted by softmax_s(q^T F_s) with a learned query q; any number of clips."""

    def __init__(self, *, segments: int, num_classes: int) -> None:
        super().__init__(segments=segments, num_classes=num_classes)
        self.query = nn.Parameter(torch.zeros(num_classes))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(scores @ self.query, dim=1)  # (N, S)
        return torch.einsum("nsc,ns->nc", scores, attention)


FUSIONS: dict[str, type[Fusion]] = {
    "average": AverageFusion,
    "max": MaxFusion,
    "weighted": WeightedFusion,
    "attention": AttentionFusion,
}


def make_fusion(kind: str, *, segments: int, num_classes: int) -> Fusion:
    if kind not in FUSIONS:
        raise ValueError(f"fusion {kind!r}: expected one of {', '.join(FUSIONS)}")
    return FUSIONS[kind](segments=segments, num_classes=num_classes)


class TC3D(nn.Module):
    """Temporal encoding: S clips per video through one shared 3D CNN, scores fused per video.

    Input (N, S, C, T, H, W); output video-level logits (N, num_classes). A 5-D input is taken as
    one clip per video. `forward_features` gives each clip's feature map (N, S, D, T', H', W');
    `forward_head` pools and classifies each clip and fuses the scores, or with `pre_logits=True`
    returns the pool5 features averaged over the clips (N, D).
    """

    def __init__(self, backbone: R3D18, *, segments: int = 3, fusion: str = "average") -> None:
        super().__init__()
        self.backbone = backbone
        self.segments = segments
        self.fusion = make_fusion(fusion, segments=segments, num_classes=backbone.fc.out_features)

    def forward_features(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.ndim == 5:
            videos = videos.unsqueeze(1)
        batch, segments = videos.shape[:2]
        maps = self.backbone.forward_features(videos.flatten(0, 1))
        return maps.view(batch, segments, *maps.shape[1:])

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        batch, segments = x.shape[:2]
        clips = x.flatten(0, 1)
        if pre_logits:
            return self.backbone.forward_head(clips, pre_logits=True).view(batch, segments, -1).mean(1)
        return self.fusion(self.backbone.forward_head(clips).view(batch, segments, -1))

    def clip_scores(self, videos: torch.Tensor) -> torch.Tensor:
        """Per-clip logits regrouped as (N, S, C)."""
        maps = self.forward_features(videos)
        batch, segments = maps.shape[:2]
        return self.backbone.forward_head(maps.flatten(0, 1)).view(batch, segments, -1)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.fusion(self.clip_scores(videos))


def build_tc3d(
    *,
    num_classes: int = 101,
    width: int = 64,
    segments: int = 3,
    fusion: str = "average",
    dropout: float = 0.8,
) -> TC3D:
    """T-C3D with the paper's defaults (3 segments, full width, dropout 0.8)."""
    return TC3D(r3d18(num_classes=num_classes, width=width, dropout=dropout), segments=segments, fusion=fusion)
