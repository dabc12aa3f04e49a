"""FAMO: task weights learned from how fast each task's log-loss falls, one backward pass a step
(Liu, Feng, Stone & Liu, NeurIPS 2023, https://arxiv.org/abs/2306.03792)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from taskmask.errors import TaskmaskError
from taskmask.weighting._weighting import Weighting

_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as in the authors' code


class FastAdaptiveMultitaskWeighting(Weighting):
    """``total = c * sum_t z_t * log(loss_t)``, ``z = softmax(logits)``, ``c = 1 / sum_t z_t /
    loss_t`` (held constant): the model moves along ``sum_t (c z_t / loss_t) grad loss_t``, a
    convex combination of the task gradients (the paper's eq. 11).

    After the optimiser step, with the same batch's losses recomputed: ``delta_t =
    log loss_t(before) - log loss_t(after)``, and ``logits <- logits - lr * (d(z . delta)/d
    logits + gamma * logits)`` (the paper's eqs. 10 and 12), so the tasks whose log-loss fell
    fastest lose weight.

    A task with ``n_observed == 0`` adds nothing: the softmax runs over the observed tasks only,
    and the other tasks' logits do not move (nor decay). Losses are floored at ``min_loss``
    before the log. `current_weights` is ``exp(logits)``.

    Args:
        n_tasks: number of tasks (>= 1); logits start at 0.
        lr: the logits' step size, the paper's beta (> 0).
        gamma: decay of the logits (>= 0); 0.001 is the paper's default, 0.01 its CityScapes
            choice.
        optimizer: ``"sgd"``, the plain step of Algorithm 1 / eq. 12; ``"adam"``, as in the
            paper's Appendix C pseudocode and the authors' code (Adam on the logits with
            betas (0.9, 0.999), eps 1e-8 and ``gamma`` as L2 weight decay).
        min_loss: floor on each loss before its log (> 0).
    """

    owns_backward = True

    needs_losses_after_step = True
    logits: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    steps: torch.Tensor
    _before: torch.Tensor
    _observed: torch.Tensor

    def __init__(
        self,
        n_tasks: int,
        *,
        lr: float = 0.025,
        gamma: float = 1e-3,
        optimizer: Literal["sgd", "adam"] = "sgd",
        min_loss: float = 1e-8,
    ) -> None:
        super().__init__()
        if n_tasks < 1:
            raise TaskmaskError(f"n_tasks must be >= 1, got {n_tasks}")
        if not lr > 0:
            raise TaskmaskError(f"lr must be > 0, got {lr}")
        if not gamma >= 0:
            raise TaskmaskError(f"gamma must be >= 0, got {gamma}")
        if optimizer not in ("sgd", "adam"):
            raise TaskmaskError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        if not min_loss > 0:
            raise TaskmaskError(f"min_loss must be > 0, got {min_loss}")
        self.lr, self.gamma, self.optimizer, self.min_loss = lr, gamma, optimizer, min_loss
        self.register_buffer("logits", torch.zeros(n_tasks))
        self.register_buffer("exp_avg", torch.zeros(n_tasks))  # Adam's moments, per task
        self.register_buffer("exp_avg_sq", torch.zeros(n_tasks))
        self.register_buffer("steps", torch.zeros(n_tasks))
        # The batch's losses and observed tasks between `backward` and `after_step`.
        self.register_buffer("_before", torch.ones(n_tasks), persistent=False)
        self.register_buffer("_observed", torch.zeros(n_tasks, dtype=torch.bool), persistent=False)

    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor:
        observed = n_observed > 0  # indexing: the softmax and sums see the observed tasks only
        if not observed.any():
            return torch.where(observed, losses, torch.zeros_like(losses)).sum()  # a 0 with a graph
        floored = losses[observed].clamp(min=self.min_loss)
        z = self.logits[observed].softmax(0).to(losses.dtype)
        c = 1.0 / (z / floored.detach()).sum()
        return c * (z * floored.log()).sum()

    def current_weights(self) -> torch.Tensor:
        """``exp(logits)``: 1 at the start; a batch's ``z`` is these over the tasks it observes,
        normalised to sum 1, so a task that is never observed changes no other task's value."""
        return self.logits.exp()

    def backward(
        self, losses: torch.Tensor, n_observed: torch.Tensor, *, shared: Sequence[torch.Tensor]
    ) -> None:
        self._before.copy_(losses.detach().clamp(min=self.min_loss))
        self._observed.copy_(n_observed > 0)
        self(losses, n_observed).backward()

    @torch.no_grad()
    def after_step(self, losses: torch.Tensor, n_observed: torch.Tensor) -> None:
        observed = self._observed & (n_observed > 0)
        self._observed.fill_(False)
        if not observed.any():
            return
        after = losses[observed].to(self._before).clamp(min=self.min_loss)
        delta = self._before[observed].log() - after.log()
        logits = self.logits[observed]
        z = logits.softmax(0)
        grad = z * (delta - (z * delta).sum()) + self.gamma * logits  # softmax Jacobian^T delta
        if self.optimizer == "adam":
            grad = self._adam_direction(grad, observed)
        self.logits[observed] = logits - self.lr * grad

    def _adam_direction(self, grad: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Adam's normalised step for the observed tasks, each with its own step count."""
        (beta1, beta2) = _BETAS
        steps = self.steps[observed] + 1
        exp_avg = beta1 * self.exp_avg[observed] + (1 - beta1) * grad
        exp_avg_sq = beta2 * self.exp_avg_sq[observed] + (1 - beta2) * grad.square()
        self.steps[observed], self.exp_avg[observed] = steps, exp_avg
        self.exp_avg_sq[observed] = exp_avg_sq
        mean = exp_avg / (1 - beta1**steps)
        return mean / ((exp_avg_sq / (1 - beta2**steps)).sqrt() + _EPS)
