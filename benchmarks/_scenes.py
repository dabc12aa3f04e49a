"""Shared by benchmarks/scenes.py and benchmarks/scenes_missing_rate.py: seed 002's natural
scenes read from their tar, the split, one CNN's training and the test metrics.

The JPEGs are decoded straight from ../shared/data/miml_scene/miml_images.tar with Pillow (a
draft decode, then a bilinear resize of the whole image to size x size, as the seed's public
preprocessing does); nothing is extracted, and decoding 2,000 images takes about 2 s, so nothing
is cached.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

import taskmask
from taskmask import CNN2DConfig, EarlyStopping, Task
from taskmask.data.splits import Split, random_split
from taskmask.errors import TaskmaskError
from taskmask.functional import binary_metrics, metric_as_float, multilabel_metrics
from taskmask.model import build_trunk

LABELS = ("desert", "mountains", "sea", "sunset", "trees")


@dataclass(frozen=True)
class Settings:
    """Images, trunk and optimiser shared by every variant (chosen on validation)."""

    size: int = 100
    channels: tuple[int, ...] = (8, 32, 64)
    pool: int = 4
    norm: Literal["batch", "layer"] | None = "batch"
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 16
    patience: int = 5
    flip: bool = True  # mirror a random half of each training batch (`RandomFlip`)
    seeds: tuple[int, ...] = (0, 1, 2)
    hidden_rate: float = 0.3
    n_rows: int | None = None  # a slice of the data set (smoke runs)


SMOKE = Settings(size=32, channels=(4, 8), pool=2, epochs=2, patience=1, seeds=(0,), n_rows=240)


@dataclass(frozen=True)
class Scenes:
    """The decoded images and their labels, in the label file's row order."""

    names: list[str]
    inputs: torch.Tensor  # (N, 3, size, size) float32 in [0, 1]
    labels: np.ndarray  # (N, 5) float64, 0 / 1


def load_scenes(data_dir: Path, size: int, n_rows: int | None = None) -> Scenes:
    """Decode the images that miml_labels.csv lists from miml_images.tar, resized to
    ``size x size``; every problem is a `TaskmaskError` naming the file."""
    from PIL import Image

    folder = data_dir / "miml_scene"
    frame = pd.read_csv(folder / "miml_labels.csv")
    if n_rows is not None:  # a slice that still holds every label (the file is sorted by class)
        frame = frame.iloc[np.linspace(0, len(frame) - 1, n_rows).round().astype(int)]
    names = frame["Filenames"].astype(str).tolist()
    pixels = np.empty((len(names), 3, size, size), dtype=np.uint8)
    with tarfile.open(folder / "miml_images.tar") as tar:
        for row, name in enumerate(names):
            try:
                member = tar.extractfile(f"images/{name}")
                if member is None:
                    raise KeyError(name)
                with Image.open(io.BytesIO(member.read())) as image:
                    image.draft("RGB", (size, size))
                    image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                    pixels[row] = np.asarray(image).transpose(2, 0, 1)
            except (KeyError, OSError) as error:
                raise TaskmaskError(
                    f"{folder / 'miml_images.tar'}: cannot read images/{name} ({error})"
                ) from None
    inputs = torch.from_numpy(pixels).float().div_(255.0)
    return Scenes(names, inputs, frame[list(LABELS)].to_numpy(np.float64))


def scene_split(n: int) -> Split:
    """400 test / 200 validation / 1,400 train of 2,000 rows (the same proportions of a slice)."""
    return random_split(n, (0.7, 0.1, 0.2), seed=0)


class RandomFlip(nn.Module):
    """A trunk that mirrors each image left-right with probability 1/2 in training mode, then
    applies ``inner``; in eval mode it is ``inner``. A mirrored scene keeps its labels, so
    this is free data augmentation (taskmask's trainer has no augmentation hook). The flips
    draw on torch's global generator, which `taskmask.fit` seeds: runs stay repeatable."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> inner's features
        if self.training:
            flip = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return self.inner(x)


def make_trunk(settings: Settings) -> nn.Module:
    """The `CNN2DConfig` trunk for ``settings.size`` images, inside `RandomFlip` if asked."""
    config = CNN2DConfig(
        channels=settings.channels,
        pool=settings.pool,
        norm=settings.norm,
        dropout=settings.dropout,
    )
    cnn = build_trunk(config, (3, settings.size, settings.size))
    return RandomFlip(cnn) if settings.flip else cnn


def train(
    X: torch.Tensor,
    y_train: np.ndarray,
    y_val: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    task: Task,
    settings: Settings,
    seed: int,
) -> taskmask.FitResult:
    """Fit one CNN on ``X[rows[0]]`` with labels ``y_train`` (NaN: missing), early-stopped on
    the mean validation ROC-AUC of ``X[rows[1]]`` with ``y_val``; the best epoch is restored."""
    train_rows, val_rows = rows
    if settings.norm == "batch" and len(train_rows) % settings.batch_size == 1:
        train_rows, y_train = train_rows[:-1], y_train[:-1]  # BatchNorm: no batch of one
    monitor = f"val/{task.name}/roc_auc" + ("_macro" if task.kind == "multilabel" else "")
    torch.manual_seed(seed)  # fit seeds what it builds; this trunk is built here, before it
    return taskmask.fit(
        X[train_rows],
        {task.name: y_train},
        [task],
        trunk=make_trunk(settings),
        validation=(X[val_rows], {task.name: y_val}),
        standardize="channel",
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=seed,
        early_stopping=EarlyStopping(monitor=monitor, patience=settings.patience),
        train_metrics=False,
        progress=False,
    )


def keras_accuracy(probs: np.ndarray, target: np.ndarray) -> float:
    """Keras' ``categorical_accuracy``: the arg-max of ``probs`` equals the arg-max of the 0/1
    ``target`` (its first positive label), the seed's ``acc`` for 5 sigmoid outputs."""
    return float(np.mean(probs.argmax(axis=1) == target.argmax(axis=1)))


def score(probs: np.ndarray, target: np.ndarray, thresholds: Sequence[float]) -> dict[str, float]:
    """Test metrics of ``(N, 5)`` probabilities on the observed entries of ``target`` (NaN:
    missing): `binary_metrics` per label and macro, `multilabel_metrics`, the Keras ``acc``."""
    observed = ~np.isnan(target)
    filled = np.nan_to_num(target, nan=0.0)
    metrics = {
        **binary_metrics(probs, filled, observed, labels=LABELS, thresholds=thresholds),
        **multilabel_metrics(probs, filled, observed, thresholds=thresholds),
    }
    out = {key: metric_as_float(value) for key, value in metrics.items()}
    complete = observed.all(axis=1)
    out["keras_acc"] = keras_accuracy(probs[complete], filled[complete])
    return out


def evaluate_thresholds(
    probs_test: np.ndarray, y_test: np.ndarray, tuned: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """Test metrics at 0.5 and at the ``tuned`` thresholds (fitted on validation)."""
    return {
        "0.5": score(probs_test, y_test, (0.5,) * len(LABELS)),
        "tuned": {**score(probs_test, y_test, tuned), "thresholds": [float(t) for t in tuned]},
    }
