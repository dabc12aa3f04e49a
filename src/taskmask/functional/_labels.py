"""Encoded labels: a target block and its observed mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EncodedLabels:
    """Targets of one task with their observed mask (see the module docstring for shapes)."""

    target: torch.Tensor
    observed: torch.Tensor
