"""Dynamic Weight Average: each task weighted by how slowly its loss has been falling."""

from __future__ import annotations

import math

import torch

from taskmask.weighting._weighting import Weighting


def _check_task_vector(name: str, value: torch.Tensor, n_tasks: int) -> None:
    if value.shape != (n_tasks,):
        raise ValueError(
            f"{name} must have shape ({n_tasks},), one entry per task, got {tuple(value.shape)}"
        )


class DynamicWeightAverage(Weighting):
    """Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
    https://arxiv.org/abs/1803.10704 (its "Dynamic Weight Average").

    For epoch ``e`` the weights are

        ``w_t(e) = K * exp(r_t / T) / sum_i exp(r_i / T)``, ``r_t = L_t(e-1) / L_t(e-2)``

    with ``L_t`` task ``t``'s mean training loss over an epoch (given by `end_epoch`), ``T`` the
    temperature and ``K`` the number of tasks, so the weights sum to ``K``; ``w_t = 1`` for the
    first two epochs. A task whose loss fell slowly (``r_t`` near or above 1) gets more weight.
    The weights are fixed for a whole epoch: ``forward`` is ``sum_t w_t * loss_t`` over the
    tasks observed in the batch, never renormalised over the tasks a batch happens to hold.

    Missing labels: a ratio that is 0 or not finite is undefined. A NaN epoch loss gives one,
    and so does a task without a single observed label in an epoch, whose epoch loss the
    trainer reports as exactly 0. A task with an undefined ratio keeps the neutral weight 1 of
    the first two epochs and is left out of the softmax: the ``k`` tasks with a defined ratio
    share ``k`` by the formula above (``K`` replaced by ``k``). The weights still sum to ``K``,
    and adding a task that was never observed changes no other task's weight. (Giving the task
    ratio 1 inside the softmax instead would change every other weight.)

    The last two epochs' losses are buffers (``last_epoch_losses``,
    ``previous_epoch_losses``, NaN until seen), as are the weights, so all are saved.

    Args:
        n_tasks: number of tasks ``K``, at least 1.
        temperature: ``T`` > 0 (default 2.0, the paper's); larger is closer to equal weights.

    Example:
        >>> weighting = DynamicWeightAverage(2)
        >>> weighting.end_epoch(torch.tensor([1.0, 1.0]))
        >>> weighting.end_epoch(torch.tensor([0.5, 1.0]))  # ratios 0.5 and 1.0
        >>> [round(w, 4) for w in weighting.current_weights().tolist()]
        [0.8756, 1.1244]
    """

    last_epoch_losses: torch.Tensor
    previous_epoch_losses: torch.Tensor
    weights: torch.Tensor

    def __init__(self, n_tasks: int, *, temperature: float = 2.0) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        self.n_tasks = n_tasks
        self.temperature = float(temperature)
        self.register_buffer("last_epoch_losses", torch.full((n_tasks,), math.nan))
        self.register_buffer("previous_epoch_losses", torch.full((n_tasks,), math.nan))
        self.register_buffer("weights", torch.ones(n_tasks))

    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor:
        _check_task_vector("losses", losses, self.n_tasks)
        _check_task_vector("n_observed", n_observed, self.n_tasks)
        terms = self.weights.to(losses.dtype) * losses  # (n_tasks,)
        return torch.where(n_observed > 0, terms, torch.zeros_like(terms)).sum()

    def current_weights(self) -> torch.Tensor:
        return self.weights.clone()

    @torch.no_grad()
    def end_epoch(self, epoch_losses: torch.Tensor) -> None:
        """Shift in this epoch's per-task mean losses and set the next epoch's weights."""
        _check_task_vector("epoch_losses", epoch_losses, self.n_tasks)
        self.previous_epoch_losses.copy_(self.last_epoch_losses)
        self.last_epoch_losses.copy_(epoch_losses.detach())
        ratio = self.last_epoch_losses.double() / self.previous_epoch_losses.double()
        defined = torch.isfinite(ratio) & (ratio != 0)
        weights = torch.ones_like(ratio)
        k = int(defined.sum())
        if k > 0:
            weights[defined] = k * torch.softmax(ratio[defined] / self.temperature, dim=0)
        self.weights.copy_(weights)
