"""The paper's other uses of T-C3D: video features (similarity) and anomaly detection, with AUC."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from examples.tc3d.data import VideoItem, ucf101_split
from examples.tc3d.evaluate import load_trained
from examples.tc3d.model import TC3D
from examples.tc3d.train import TrainConfig, build_model, evaluation_loader, loader, make_dataset, predict


@torch.no_grad()
def extract_features(model: TC3D, config: TrainConfig, items: list[VideoItem]) -> tuple[np.ndarray, np.ndarray]:
    """pool5 features averaged over the S clips of each video, L2-normalised; and the labels."""
    model.eval()
    features, labels = [], []
    for videos, label in evaluation_loader(config, items):
        pooled = model.forward_head(model.forward_features(videos), pre_logits=True)
        features.append(F.normalize(pooled, dim=1))
        labels.append(label)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def pair_auc(features: np.ndarray, labels: np.ndarray) -> float:
    """AUC of cosine similarity at telling same-action pairs from different-action pairs."""
    pairs = list(itertools.combinations(range(len(labels)), 2))
    first, second = np.array(pairs).T
    similarity = (features[first] * features[second]).sum(1)
    return float(roc_auc_score(labels[first] == labels[second], similarity))


def features_run(run: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Features of the test split of a run, their same/different pair AUC; optionally saved (.npz)."""
    model, config, _ = load_trained(run)
    items, _ = ucf101_split(config.data, config.split, train=False)
    features, labels = extract_features(model, config, items)
    if out is not None:
        np.savez(out, features=features, labels=labels)
    return {"videos": len(labels), "dimensions": int(features.shape[1]), "pair_auc": pair_auc(features, labels)}


def anomaly_run(config: TrainConfig, anomalies: list[str], epochs: int | None = None) -> dict[str, Any]:
    """Train T-C3D with one output, anomaly (the listed classes) against normal; AUC on the test split."""
    train_items, classes = ucf101_split(config.data, config.split, train=True)
    test_items, _ = ucf101_split(config.data, config.split, train=False)
    unknown = sorted(set(anomalies) - set(classes))
    if unknown:
        raise ValueError(f"anomaly classes {unknown} are not in the data set ({', '.join(classes)})")
    positive = {classes.index(name) for name in anomalies}

    def relabel(items: list[VideoItem]) -> list[VideoItem]:
        return [VideoItem(item.path, int(item.label in positive)) for item in items]

    torch.manual_seed(config.seed)
    model = build_model(config, 1)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    train_set = make_dataset(config, relabel(train_items), train=True)
    for epoch in range(epochs or config.epochs):
        model.train()
        train_set.set_epoch(epoch)
        batches = loader(
            train_set, batch_size=config.batch_size, workers=config.workers, shuffle=True, seed=config.seed, epoch=epoch
        )
        for videos, labels in batches:
            loss = F.binary_cross_entropy_with_logits(model(videos)[:, 0], labels.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    result = predict(model, evaluation_loader(config, relabel(test_items)))
    auc = float(roc_auc_score(result.labels, result.scores[:, 0].numpy()))
    return {"anomaly_classes": anomalies, "test_videos": len(result.labels), "auc": auc}
