"""GradNorm: task weights that equalise the tasks' gradient norms on the shared layer, scaled by
their relative training rates (Chen et al., ICML 2018, https://arxiv.org/abs/1711.02257)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from taskmask.errors import TaskmaskError
from taskmask.weighting._weighting import Weighting


class GradNormWeighting(Weighting):
    """``total = sum_t w_t * loss_t``; at each step the weights also take one gradient step on
    the paper's ``L_grad`` and are renormalised.

    Per step, over the tasks observed in the batch: ``G_t = ||grad_W (w_t L_t)||``,
    ``L~_t = L_t / L_t(0)`` with ``L_t(0)`` the task's loss at its first step with
    observations, ``r_t = L~_t / mean(L~)``, ``target_t = mean(G) * r_t ** alpha`` (held
    constant), ``L_grad = sum_t |G_t - target_t|``; then ``w <- w - lr * dL_grad/dw`` and the
    observed weights are rescaled to their previous sum, so ``sum(w)`` stays ``n_tasks``. The
    model gets the gradient of ``sum_t w_t L_t`` with the weights from before the update. As
    ``G_t = w_t * ||grad_W L_t||`` is linear in ``w_t``, ``dL_grad/dw_t = sign(G_t -
    target_t) * ||grad_W L_t||`` exactly, so no second-order graph is built.

    A task with ``n_observed == 0`` adds nothing, is left out of ``mean(G)`` and ``mean(L~)``,
    and keeps its weight. Weights are floored at ``1e-8`` (the paper assumes them positive).

    Args:
        n_tasks: number of tasks (>= 1); weights start at 1.
        alpha: strength of the pull towards a common training rate (>= 0; 1.5 is the usual
            default, the paper tunes it per data set).
        lr: step size of the weights' own plain gradient step (> 0); 0.025 as in common
            implementations. The weights are buffers: the trainer's optimiser never sees them.
        layer: ``W`` is ``"last"``, the paper's choice: the last shared weight matrix (a
            parameter with two or more dimensions; any parameter if there is none) on which
            every observed task's gradient is nonzero, so heads attached to earlier trunk layers
            move ``W`` back to the deepest layer they all share (found at the first steps, then
            kept; never moved forward again). ``"all"``: every shared parameter, concatenated
            (costlier: one backward pass through the trunk per task).
        min_loss: floor for the recorded initial losses, which divide (> 0).
    """

    owns_backward = True

    weights: torch.Tensor
    initial_losses: torch.Tensor
    has_initial: torch.Tensor

    def __init__(
        self,
        n_tasks: int,
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        layer: Literal["last", "all"] = "last",
        min_loss: float = 1e-8,
    ) -> None:
        super().__init__()
        if n_tasks < 1:
            raise TaskmaskError(f"n_tasks must be >= 1, got {n_tasks}")
        if alpha < 0:
            raise TaskmaskError(f"alpha must be >= 0, got {alpha}")
        if not lr > 0:
            raise TaskmaskError(f"lr must be > 0, got {lr}")
        if layer not in ("last", "all"):
            raise TaskmaskError(f"layer must be 'last' or 'all', got {layer!r}")
        if not min_loss > 0:
            raise TaskmaskError(f"min_loss must be > 0, got {min_loss}")
        self.alpha, self.lr, self.layer, self.min_loss = alpha, lr, layer, min_loss
        self.register_buffer("weights", torch.ones(n_tasks))
        self.register_buffer("initial_losses", torch.zeros(n_tasks))
        self.register_buffer("has_initial", torch.zeros(n_tasks, dtype=torch.bool))
        # (shared parameters, index of W among them): the search for W starts there and only
        # moves towards the input, as a parameter every task reaches is reached by any subset.
        self._search: tuple[tuple[int, ...], int] | None = None

    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor:
        observed = n_observed > 0  # indexing, so that unobserved tasks are not even summed
        return (self.weights[observed].to(losses.dtype) * losses[observed]).sum()

    def current_weights(self) -> torch.Tensor:
        return self.weights.clone()

    def backward(
        self, losses: torch.Tensor, n_observed: torch.Tensor, *, shared: Sequence[torch.Tensor]
    ) -> None:
        observed = n_observed > 0
        if not observed.any():
            self(losses, n_observed).backward()
            return
        norms = self._gradient_norms(losses, observed, list(shared))  # (n_tasks,)
        self(losses, n_observed).backward()
        self._update(losses.detach(), norms, observed)

    def _gradient_norms(
        self, losses: torch.Tensor, observed: torch.Tensor, shared: list[torch.Tensor]
    ) -> torch.Tensor:
        """``||grad_W L_t||`` for each observed task, 0 for the others."""
        if not shared:
            raise TaskmaskError("GradNorm needs shared (trunk) parameters; none were given")
        tasks = observed.nonzero().flatten().tolist()
        if self.layer == "all":
            return _joint_norms(losses, tasks, shared)
        candidates = [p for p in shared if p.dim() >= 2] or shared
        key = tuple(id(p) for p in candidates)
        start = self._search[1] if self._search and self._search[0] == key else len(key) - 1
        fallback = None
        for index in range(start, -1, -1):
            norms = torch.zeros_like(losses)
            for t in tasks:
                grad = _grad(losses[t], [candidates[index]])[0]
                norms[t] = 0.0 if grad is None else grad.norm()
            if bool((norms[tasks] > 0).all()):
                self._search = (key, index)
                return norms
            fallback = norms if fallback is None else fallback
        assert fallback is not None
        return fallback  # some task has no gradient anywhere: keep the starting layer

    @torch.no_grad()
    def _update(self, losses: torch.Tensor, norms: torch.Tensor, observed: torch.Tensor) -> None:
        first = observed & ~self.has_initial
        self.initial_losses[first] = losses[first].clamp(min=self.min_loss).to(self.weights)
        self.has_initial |= first
        weights = self.weights[observed].to(losses.dtype)
        norms = norms[observed]
        ratios = losses[observed] / self.initial_losses[observed].to(losses.dtype)  # L~
        rates = ratios / ratios.mean()  # r
        grad_norms = weights * norms  # G
        targets = grad_norms.mean() * rates.pow(self.alpha)
        step = torch.sign(grad_norms - targets) * norms  # dL_grad/dw
        updated = (weights - self.lr * step).clamp(min=1e-8)
        updated = updated * (weights.sum() / updated.sum())  # the observed tasks' share kept
        self.weights[observed] = updated.to(self.weights)


def _grad(loss: torch.Tensor, params: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def _joint_norms(
    losses: torch.Tensor, tasks: list[int], params: list[torch.Tensor]
) -> torch.Tensor:
    """The norm of each task's gradient over all of ``params`` at once; 0 for other tasks."""
    norms = torch.zeros_like(losses)
    for t in tasks:
        squares = [g.pow(2).sum() for g in _grad(losses[t], params) if g is not None]
        if squares:
            norms[t] = torch.stack(squares).sum().sqrt()
    return norms
