"""`TrainConfig`: the optimisation settings of a `taskmask.training.Trainer`, and the
optimiser they make."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from taskmask.training._early_stopping import EarlyStopping
from taskmask.training._schedule import Schedule

__all__ = ["TrainConfig", "make_optimizer"]


class TrainConfig(BaseModel):
    """Optimisation settings. ``seed`` makes a run repeatable bit for bit on one machine.
    ``conflict_batches`` > 0 records, per epoch, the mean cosine similarity between each pair
    of task gradients on the trunk over that many batches (``cosine/A/B`` in the history).
    ``train_metrics`` needs every output of an epoch in memory: with training data streamed
    from files (`taskmask.data`) only the training losses are reported.

    ``device``: ``auto`` (CUDA when available; under torchrun each process's own GPU) or a
    torch device name. ``precision``: ``fp32``, or ``bf16`` to run the model's forward passes
    under bfloat16 autocast (losses, metrics, weights and optimiser stay float32).
    ``checkpoint_dir``: where to write a checkpoint at the end of every epoch (None: none;
    see `taskmask.training.checkpoint`); ``Trainer.fit(..., resume=True)`` continues from it.
    ``scheduler``: a learning-rate `Schedule` (None: ``lr`` throughout); the history's ``lr``
    is the rate of each epoch. ``progress``: a bar (None: when stderr is a terminal); without
    one, the ``taskmask`` logger gets a line every ``log_every`` epochs.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=256, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    scheduler: Schedule | None = None
    weight_decay: float = Field(default=0.0, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0)
    clip_norm: float | None = Field(default=None, gt=0.0)
    seed: int = 0
    validation_split: float = Field(default=0.0, ge=0.0, lt=1.0)
    early_stopping: EarlyStopping | None = None
    weighting: str = "static"
    weighting_options: dict[str, Any] = Field(default_factory=dict)
    train_metrics: bool = True
    conflict_batches: int = Field(default=0, ge=0)
    progress: bool | None = None
    log_every: int = Field(default=1, ge=1)
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_dir: Path | None = None


def make_optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel (CPU and CUDA) saves ~0.3 ms a step on small models; same maths.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return kind(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
