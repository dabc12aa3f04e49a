"""Fixed per-task weights: the semantics of Keras ``loss_weights``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from taskmask.weighting._weighting import Weighting


class StaticWeighting(Weighting):
    """``total = sum_t weight_t * loss_t``; no division by the number of tasks present."""

    weights: torch.Tensor

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32))

    def forward(self, losses: torch.Tensor, n_observed: torch.Tensor) -> torch.Tensor:
        return (self.weights.to(losses.dtype) * losses).sum()

    def current_weights(self) -> torch.Tensor:
        return self.weights.clone()
