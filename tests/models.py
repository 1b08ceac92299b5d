"""Small models of every shape vidcompress must handle, shared by the tests."""

from __future__ import annotations

import torch
from torch import nn


def mlp(widths: tuple[int, ...] = (64, 32, 16, 10)) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn2d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def cnn3d() -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1)),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


class EmbeddingClassifier(nn.Module):
    def __init__(self, vocabulary: int = 50, width: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.conv = nn.Conv1d(width, width, 3, padding=1)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)
        return self.head(torch.relu(self.conv(x)).mean(-1))


class BasicBlock3d(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class R3D18Like(nn.Module):
    """The R3D-18 layout at a chosen width (one block per stage keeps tests fast)."""

    def __init__(self, width: int = 4, classes: int = 7) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        self.conv1 = nn.Conv3d(3, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        stages, inplanes = [], width
        for i, planes in enumerate(widths):
            stages.append(BasicBlock3d(inplanes, planes, 1 if i == 0 else 2))
            inplanes = planes
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3, 4)))


MODELS = {
    "mlp": (mlp, lambda: torch.randn(4, 64)),
    "cnn2d": (cnn2d, lambda: torch.randn(2, 3, 12, 12)),
    "cnn3d": (cnn3d, lambda: torch.randn(2, 3, 4, 8, 8)),
    "embedding": (EmbeddingClassifier, lambda: torch.randint(0, 50, (2, 9))),
    "r3d18": (R3D18Like, lambda: torch.randn(1, 3, 4, 16, 16)),
}


def any_model_rules(text: str, kind: str = "sparsity"):
    """Rules for tests that run on every model: kinds a model lacks are allowed, as in the defaults."""
    from vidcompress.rules import BITS, SPARSITY, LayerRules

    return LayerRules.parse(text, SPARSITY if kind == "sparsity" else BITS, default=True)
