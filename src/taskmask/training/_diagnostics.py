"""Gradient-conflict diagnostics: how aligned the tasks' gradients are on the shared trunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def task_gradients(
    losses: torch.Tensor, n_observed: torch.Tensor, shared: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Per-task gradients of ``losses`` ``(T,)`` on ``shared``, flattened: ``(T, P)``.

    A task with nothing observed gets a row of NaN (its direction is undefined), never zeros.
    The graph is kept, so the caller can still back-propagate the losses.
    """
    rows: list[torch.Tensor | None] = []
    for loss, count in zip(losses, n_observed, strict=True):
        if count == 0:
            rows.append(None)
            continue
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, shared, strict=True)
                ]
            )
        )
    size = sum(p.numel() for p in shared)
    nan = torch.full((size,), float("nan"), device=losses.device)
    return torch.stack([nan if row is None else row.detach() for row in rows])


def gradient_cosines(gradients: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between every pair of rows of ``(T, P)``: ``(T, T)``; NaN where a
    row is NaN (task not observed) or zero (task's loss does not reach the shared weights)."""
    norms = gradients.norm(dim=1, keepdim=True)
    unit = gradients / torch.where(norms > 0, norms, torch.full_like(norms, float("nan")))
    return unit @ unit.T


def cosine_row(names: Sequence[str], cosines: torch.Tensor) -> dict[str, float]:
    """History entries ``cosine/A/B`` for each pair A < B in task order (mean over batches
    where both were observed: pass a nan-mean of per-batch matrices)."""
    return {
        f"cosine/{a}/{b}": float(cosines[i, j])
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if i < j
    }
