"""Uncertainty weighting: each task's loss scaled by a learned homoscedastic variance."""

from __future__ import annotations

import math

import torch
from torch import nn

from taskmask.weighting._weighting import Weighting


def _check_task_vectors(n_tasks: int, losses: torch.Tensor, n_observed: torch.Tensor) -> None:
    """``losses`` and ``n_observed`` must both be ``(n_tasks,)``: no silent broadcasting."""
    for name, value in (("losses", losses), ("n_observed", n_observed)):
        if value.shape != (n_tasks,):
            raise ValueError(
                f"{name} must have shape ({n_tasks},), one entry per task, got {tuple(value.shape)}"
            )


class UncertaintyWeighting(Weighting):
    """Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics", CVPR 2018, https://arxiv.org/abs/1705.07115.

    Each task has a learned log variance ``s_t = log sigma_t^2`` (the parameter
    ``log_variance``, optimised with the model) and

        ``total = sum_t [0.5 * exp(-s_t) * loss_t + 0.5 * s_t]``

    over the tasks with ``n_observed > 0``. This is the paper's Gaussian (regression) term
    ``loss / (2 sigma^2) + log sigma`` used for every task kind, the form most implementations
    use; the paper's classification term ``loss / sigma^2 + log sigma`` (twice the weight) is
    not used, so the weights of all kinds are comparable. At the optimum ``exp(s_t) =
    loss_t``. ``s_t`` is learned rather than ``sigma_t`` because ``exp(-s)`` never divides by
    zero, as the paper recommends.

    A task with nothing observed in the batch contributes exactly 0 (not ``0.5 * s_t``) and its
    ``s_t`` gets zero gradient, so it cannot drift towards ``-inf``. ``current_weights()`` is
    ``0.5 * exp(-s)``, the factor in front of each loss.

    Args:
        n_tasks: number of tasks, at least 1.
        init_log_variance: starting ``s_t`` of every task (default 0.0: weights 0.5); finite.

    Example:
        >>> weighting = UncertaintyWeighting(2)
        >>> weighting(torch.tensor([2.0, 4.0]), torch.tensor([3, 0])).item()
        1.0
        >>> weighting.current_weights().tolist()
        [0.5, 0.5]
    """

    def __init__(self, n_tasks: int, *, init_log_variance: float = 0.0) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        if not math.isfinite(init_log_variance):
            raise ValueError(f"init_log_variance must be finite, got {init_log_variance}")
        self.n_tasks = n_tasks
        self.log_variance = nn.Parameter(torch.full((n_tasks,), float(init_log_variance)))

    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor:
        _check_task_vectors(self.n_tasks, losses, n_observed)
        observed = n_observed > 0
        zero = torch.zeros((), dtype=losses.dtype, device=losses.device)
        # fill first, then select with torch.where: whatever an empty task's loss holds, its
        # s_t gets an exact zero gradient (a product would give 0 * NaN = NaN)
        losses = torch.where(observed, losses, zero)
        s = self.log_variance.to(losses.dtype)
        terms = 0.5 * torch.exp(-s) * losses + 0.5 * s  # (n_tasks,)
        return torch.where(observed, terms, zero).sum()

    def current_weights(self) -> torch.Tensor:
        return 0.5 * torch.exp(-self.log_variance.detach())
