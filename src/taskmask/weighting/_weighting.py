"""The contract every task-weighting method meets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn


class Weighting(nn.Module, ABC):
    """Combines per-task losses into the loss that is back-propagated.

    ``forward(losses, n_observed)``: ``losses`` ``(n_tasks,)`` holds each task's mean over its
    observed labels (exactly 0 for a task with nothing observed in the batch); ``n_observed``
    ``(n_tasks,)`` counts them. A task with ``n_observed == 0`` must neither contribute nor
    change the other tasks' weights. Learnable weights are parameters of this module (the
    trainer optimises them with the model); other state lives in buffers so it is saved.

    The trainer calls, per step: ``backward(losses, n_observed, shared=...)`` (which fills the
    ``.grad`` of the model's parameters; ``shared`` are the trunk's parameters, for methods
    that work on shared gradients), the optimiser step, then ``after_step(new_losses,
    n_observed)`` with the same batch's losses recomputed after the step when
    ``needs_losses_after_step`` is True; and ``end_epoch`` once per epoch.
    """

    needs_losses_after_step: bool = False
    owns_backward: bool = False
    """True for a method whose `backward` fills ``.grad`` outside autograd (GradNorm, FAMO,
    the Jacobian aggregators): under torchrun its steps skip DDP's all-reduce and the trainer
    averages the gradients itself."""

    @abstractmethod
    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def current_weights(self) -> torch.Tensor:
        """The weight each task's loss has now, ``(n_tasks,)``, for the history."""

    def backward(
        self, losses: torch.Tensor, n_observed: torch.Tensor, *, shared: Sequence[torch.Tensor]
    ) -> None:
        """Back-propagate the combined loss; default: ``forward(...).backward()``."""
        self(losses, n_observed).backward()

    def after_step(self, losses: torch.Tensor, n_observed: torch.Tensor) -> None:
        """The batch's per-task losses after the optimiser step; default: nothing."""

    def end_epoch(self, epoch_losses: torch.Tensor) -> None:
        """Called once per epoch with the per-task mean training losses; default: nothing."""
