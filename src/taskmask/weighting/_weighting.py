"""The contract every task-weighting method meets."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Weighting(nn.Module, ABC):
    """Combines per-task losses into the loss that is back-propagated.

    ``forward(losses, n_observed)``: ``losses`` ``(n_tasks,)`` holds each task's mean over its
    observed labels (exactly 0 for a task with nothing observed in the batch); ``n_observed``
    ``(n_tasks,)`` counts them. A task with ``n_observed == 0`` must neither contribute nor
    change the other tasks' weights. Learnable weights are parameters of this module (the
    trainer optimises them with the model); per-epoch state lives in buffers so it is saved.
    """

    @abstractmethod
    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def current_weights(self) -> torch.Tensor:
        """The weight each task's loss has now, ``(n_tasks,)``, for the history."""

    def end_epoch(self, epoch_losses: torch.Tensor) -> None:
        """Called once per epoch with the per-task mean training losses; default: nothing."""
